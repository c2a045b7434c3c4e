"""A live Anchor for browser tests: daphne and a real RQ worker in subprocesses, on their own database and Redis.

pytest-django's test database lives inside the pytest process (in memory for SQLite, or in a
transaction), so a daphne or worker subprocess could never see it. The `anchor_live` fixture
instead gives the subprocesses a database of their own: a temporary SQLite file (WAL mode, shared
by web, worker and `manage.py` helpers), or ANCHOR_LIVE_DATABASE_URL when set (e.g. a PostgreSQL
database made for the purpose). It migrates it, picks a free Redis database number (10-15) and a
private Channels prefix, and starts

    daphne -b 127.0.0.1 -p <free port> anchor_site.asgi:application
    manage.py rqworker runs healing webhooks --with-scheduler --worker-class tasks_app.worker.AnchorWorker

with the same environment. Tests talk to it the way people and workers do: through the browser,
`anchor_live.enqueue(...)` (a job the worker runs, so state changes come from another process) and
`anchor_live.shell(...)` (a one-off `manage.py shell -c`). Set ANCHOR_LIVE_KEEP=1 to keep the
directory and logs after the session.
"""

from __future__ import annotations

import uuid

import pytest

from tests.browser.live import CHROMIUM, CHROMIUM_ARGS, AnchorLive, anchor_started

REVIEWER = ("rita", "pw-rita-123!")
MEMBER = ("mo", "pw-mo-123!")


@pytest.fixture(scope="session")
def anchor_live() -> AnchorLive:
    """Start Anchor (daphne + worker) once per test session, with a reviewer and a member; see above."""
    with anchor_started() as live:
        live.enqueue("tests.browser.scenario.users_make", [REVIEWER, MEMBER], reviewers=[REVIEWER[0]])
        yield live


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # No browser downloads here: drive the system Chromium, with the flags a container needs.
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def base_url(anchor_live):
    return anchor_live.url


@pytest.fixture
def login(anchor_live):
    """login(page, who=REVIEWER) logs a browser page in through the real login form."""

    def do(page, who: tuple[str, str] = REVIEWER, next_url: str = "/"):
        page.goto(f"{anchor_live.url}/accounts/login/?next={next_url}")
        page.get_by_label("Username").fill(who[0])
        page.get_by_label("Password").fill(who[1])
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{anchor_live.url}{next_url}")
        return page

    return do


@pytest.fixture
def live_task(anchor_live):
    """A fresh task (v1 of the contact-form script) in the live database; returns its id."""
    return anchor_live.enqueue("tests.browser.scenario.task_make_id", f"Contact form {uuid.uuid4().hex[:6]}")


def wait_live(page) -> None:
    """Wait until the page's websocket is open, so a change made next cannot be missed."""
    page.wait_for_selector("body[data-live-ready]", timeout=10_000)

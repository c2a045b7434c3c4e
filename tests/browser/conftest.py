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

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
REDIS_BASE = os.environ.get("ANCHOR_LIVE_REDIS", "redis://127.0.0.1:6379")
LOCK_KEY = "anchor:live-server-lock"

REVIEWER = ("rita", "pw-rita-123!")
MEMBER = ("mo", "pw-mo-123!")


@dataclass
class AnchorLive:
    """A running Anchor: its URL, its environment, and ways to change its data from outside the browser."""

    url: str
    env: dict[str, str]
    redis_url: str
    workdir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def manage(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def shell(self, code: str) -> str:
        """Run Python in a fresh Django process against the live database; returns what it printed."""
        return self.manage("shell", "-c", code)

    def shell_json(self, code: str):
        """Like shell(), for code that ends by printing one JSON value on the last line."""
        return json.loads(self.shell(code).strip().splitlines()[-1])

    def enqueue(self, func: str, *args, queue: str = "healing", timeout: float = 60, **kwargs):
        """Have the live worker run `func(*args, **kwargs)` and return its result."""
        from redis import Redis
        from rq import Queue

        job = Queue(queue, connection=Redis.from_url(self.redis_url)).enqueue(func, *args, **kwargs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = job.get_status(refresh=True)
            if status == "finished":
                return job.return_value()
            if status in ("failed", "stopped", "canceled"):
                raise RuntimeError(f"job {func} {status}: {job.latest_result().exc_string if job.latest_result() else ''}")
            time.sleep(0.05)
        raise TimeoutError(f"job {func} did not finish in {timeout}s; see {self.workdir}/worker.log")

    def enqueue_nowait(self, func: str, *args, queue: str = "healing", **kwargs):
        from redis import Redis
        from rq import Queue

        return Queue(queue, connection=Redis.from_url(self.redis_url)).enqueue(func, *args, **kwargs)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _claim_redis_db(token: str) -> int:
    """Take the first Redis database (10-15) no other live server holds, so concurrent sessions never share queues."""
    from redis import Redis

    for number in range(10, 16):
        redis = Redis.from_url(f"{REDIS_BASE}/{number}")
        if redis.set(LOCK_KEY, token, nx=True, ex=3 * 3600):
            for key in redis.scan_iter(count=1000):  # leftovers of a crashed session; the lock is ours now
                if key != LOCK_KEY.encode():
                    redis.delete(key)
            return number
    raise RuntimeError("no free Redis database in 10-15 for a live server (all locked by other sessions)")


def _release_redis_db(number: int, token: str) -> None:
    from redis import Redis

    redis = Redis.from_url(f"{REDIS_BASE}/{number}")
    if redis.get(LOCK_KEY) == token.encode():
        redis.flushdb()


def _wait_http(url: str, timeout: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def _wait_worker(redis_url: str, timeout: float, process: subprocess.Popen, log: Path) -> None:
    from redis import Redis
    from rq import Worker

    connection = Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if Worker.all(connection=connection):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the worker did not register in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="session")
def anchor_live():
    """Start Anchor (daphne + worker) once per test session; see the module docstring."""
    token = uuid.uuid4().hex
    workdir = Path(tempfile.mkdtemp(prefix="anchor-live-"))
    redis_db = _claim_redis_db(token)
    redis_url = f"{REDIS_BASE}/{redis_db}"
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="anchor_site.settings",
        DATABASE_URL=os.environ.get("ANCHOR_LIVE_DATABASE_URL") or f"sqlite:///{workdir}/anchor.sqlite3",
        REDIS_URL=redis_url,
        CHANNELS_PREFIX=f"anchor-live-{token[:8]}",
        DEBUG="1",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        ANCHOR_VAR_DIR=str(workdir / "var"),
        ANCHOR_SITE_URL=f"http://127.0.0.1:{port}",
        WEBHOOKS_ALLOW_PRIVATE="1",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    env.pop("ANCHOR_TESTING", None)
    live = AnchorLive(url=f"http://127.0.0.1:{port}", env=env, redis_url=redis_url, workdir=workdir)
    try:
        live.manage("migrate", "--no-input", "-v", "0", timeout=300)
        live.shell(
            "from django.contrib.auth.models import Group, User\n"
            f"r = User.objects.create_user({REVIEWER[0]!r}, password={REVIEWER[1]!r})\n"
            "r.groups.add(Group.objects.get(name='reviewers'))\n"
            f"User.objects.create_user({MEMBER[0]!r}, password={MEMBER[1]!r})\n"
        )
        web_log, worker_log = workdir / "daphne.log", workdir / "worker.log"
        live.processes["daphne"] = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "anchor_site.asgi:application"],
            cwd=ROOT, env=env, stdout=web_log.open("wb"), stderr=subprocess.STDOUT,
        )
        live.processes["worker"] = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "runs", "healing", "webhooks", "--with-scheduler",
             "--worker-class", "tasks_app.worker.AnchorWorker"],
            cwd=ROOT, env=env, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT,
        )
        _wait_http(f"{live.url}/accounts/login/", 60, live.processes["daphne"], web_log)
        _wait_worker(redis_url, 60, live.processes["worker"], worker_log)
        yield live
    finally:
        for process in live.processes.values():
            _stop(process)
        _release_redis_db(redis_db, token)
        if not os.environ.get("ANCHOR_LIVE_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)


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

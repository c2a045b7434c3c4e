"""Fixtures of the reliability suite: one cluster of real processes per session, repaired between tests.

The cluster (see cluster.py): its own redis-server on a free port (db 0 of that server), a PostgreSQL
database `anchor_rel_<token>` on the shared server reached through a TCP proxy the tests can cut, two
daphne web processes ("a", "b"), two AnchorWorker processes ("a", "b") and a control process.
RUN_STALE_AFTER_S is 6 s there, RUN_REQUEUE_AFTER_S 8 s, the sandbox wall clock 20 s, the action timeout 3 s.
"""

from __future__ import annotations

import shutil

import httpx
import pytest

from tasks_app.tests.sites import serve
from tests.reliability.cluster import Cluster, cluster_started, pg_available
from tests.reliability.sites import StalledModel

REVIEWER = ("rita", "pw-rita-123!")
TICK_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/tick")
    return {"tick": page.inner_text(".tick")}
'''


def _missing() -> str | None:
    if not shutil.which("redis-server"):
        return "redis-server is not installed"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "Chromium is not installed"
    if not pg_available():
        return "PostgreSQL is not reachable at 127.0.0.1:5432 (user postgres)"
    return None


# Package scope: the processes stop as soon as the last reliability test is done, not at the end of the
# whole test session.
@pytest.fixture(scope="package")
def cluster() -> Cluster:
    missing = _missing()
    if missing:
        pytest.skip(f"reliability suite needs real services: {missing}")
    model = StalledModel()
    # Tasks that ask for the LLM agent reach the stalled model; all others heal with the heuristic agent.
    llm_env = {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-reliability-not-a-real-key",
               "OPENAI_TIMEOUT_S": "100", "LLM_MAX_RETRIES": "0"}
    try:
        with cluster_started(extra_env=llm_env) as started, serve({"/tick": "<p class='tick'>tick</p>"}) as tick_site:
            started.reviewer = started.call("reviewer_make", *REVIEWER)
            started.model = model
            # A task scheduled every minute for as long as the cluster lives: both workers' maintenance
            # ticks fire it through every fault the other scenarios cause (test_scheduled_runs.py).
            started.scheduled_task = started.call("task_make", name="every minute", code=TICK_CODE,
                                                  params={"base_url": tick_site.url}, schedule="* * * * *")
            yield started
    finally:
        model.close()


@pytest.fixture
def c(cluster: Cluster) -> Cluster:
    """The session's cluster with every piece running again (an earlier scenario may have broken one)."""
    cluster.ensure()
    return cluster


@pytest.fixture
def api(c: Cluster):
    """api(web="a") -> an httpx client for that web process, authenticated with the reviewer's key."""
    clients: list[httpx.Client] = []

    def make(web: str = "a") -> httpx.Client:
        client = httpx.Client(base_url=f"{c.url(web)}/api/v1", headers={"Authorization": f"Bearer {c.reviewer['key']}"}, timeout=30)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()

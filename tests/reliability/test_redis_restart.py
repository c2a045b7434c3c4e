"""Redis restarted (without persistence) under load: queued runs are not lost, the workers carry on, and
the live dashboard's websocket works again."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from tests.reliability.cluster import RUN_REQUEUE_AFTER_S
from tests.reliability.helpers import FINISHED
from tests.reliability.sites import CONTACT_CODE, contact_site
from tests.reliability.wsclient import WebSocket, login_cookie

pytestmark = pytest.mark.reliability

RUNS = 16
# Queued rows whose job vanished are re-enqueued by maintenance once they are RUN_REQUEUE_AFTER_S old;
# maintenance passes every 15 s. Runs then take a few seconds each on two workers.
RECOVERY_BOUND_S = RUN_REQUEUE_AFTER_S + 15 + RUNS * 6


def _live(c, web: str) -> WebSocket:
    cookie = login_cookie(c.url(web), "rita", "pw-rita-123!")
    return WebSocket(c.url(web).replace("http", "ws") + "/ws/live/", origin=c.url(web), cookie=cookie)


def test_an_idle_dashboard_websocket_stays_open_and_live(c):
    """Longer than channels-redis' 5 s receive timeout with nothing to say: still open, still delivering."""
    with contact_site() as site:
        task = c.call("task_make", name=f"idle ws {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "Ada"})
        with _live(c, "a") as ws:
            # The cluster's every-minute task may speak meanwhile; a 20 s window still holds a long silence.
            heard, longest_silence = _listen(ws, seconds=20)  # a close frame raises WebSocketClosed
            assert {m.get("task_id") for m in heard} <= {c.scheduled_task}, heard
            assert longest_silence > 6, heard
            [run_id] = c.call("runs_enqueue", task)
            heard = ws.messages_until(lambda m: m.get("kind") == "run.finished" and m["data"].get("run") == run_id, 90)
    assert heard[-1]["data"]["status"] == "succeeded"


def test_queued_runs_survive_a_redis_restart_and_workers_and_websockets_recover(c):
    worker_pids = {name: process.pid for name, process in c.workers.items()}
    names = [f"r{i}-{uuid.uuid4().hex[:4]}" for i in range(RUNS)]
    with contact_site() as site:
        task = c.call("task_make", name=f"redis restart {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "-"})
        before = _live(c, "a")
        run_ids = c.call("runs_enqueue_named", task, names)
        c.wait_for("a few runs to finish", lambda: sum(n != "-" for n in site.posted_names) >= 3 or None, 120)

        # Down long enough for a worker to finish a job meanwhile. Every queued job, the worker registry
        # and the channel groups are gone when it comes back.
        c.redis.restart(down_for=6.0)
        restarted_at = time.monotonic()
        lost_jobs = c.call("status_counts", task).get("queued", 0)

        # A dashboard opened after the restart is live again: it hears the runs the workers finish.
        after = c.wait_for("a websocket connection after the restart", lambda: _try(lambda: _live(c, "a")), 30)
        heard = after.messages_until(lambda m: m.get("kind") in ("run.finished", "run.started", "run.failed"), 120)
        assert heard

        states = c.wait_for(
            "every run to finish",
            lambda: (s := c.call("runs_state", run_ids)) and all(r["status"] in FINISHED for r in s.values()) and s,
            RECOVERY_BOUND_S,
        )
        recovered_in = time.monotonic() - restarted_at
        before.close()
        after.close()

    assert lost_jobs > 0, "the restart should have dropped some queued jobs (the scenario did not test anything)"
    assert {r["status"] for r in states.values()} == {"succeeded"}, Counter(r["status"] for r in states.values())
    # Each run executed exactly once: one form post per run, none twice, none missing.
    posted = Counter(site.posted_names)
    assert {name: posted[name] for name in names} == {name: 1 for name in names}
    assert all(r["attempts"] == 1 for r in states.values())
    assert recovered_in <= RECOVERY_BOUND_S
    # The same worker processes carried on (they reconnected; none crashed or had to be restarted), and
    # they registered again, so monitoring (rq info, the django-rq pages) sees them.
    assert {name: process.pid for name, process in c.workers.items()} == worker_pids
    assert all(process.poll() is None for process in c.workers.values())
    c.wait_for("the workers to be registered again", lambda: set(worker_pids.values()) <= _registered_pids(c) or None, 40)
    assert c.call("stuck", [task]) == {"runs": [], "events": []}


def _listen(ws: WebSocket, *, seconds: float) -> tuple[list[dict], float]:
    """Every message the socket delivers for `seconds`, and the longest silence between them."""
    heard, last = [], time.monotonic()
    end, longest = last + seconds, 0.0
    while (left := end - time.monotonic()) > 0:
        try:
            heard.append(ws.recv_json(timeout=left))
        except TimeoutError:
            break
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return heard, max(longest, time.monotonic() - last)


def _try(fn):
    try:
        return fn()
    except Exception:
        return None


def _registered_pids(c) -> set[int]:
    from redis import Redis
    from rq import Worker

    return {worker.pid for worker in Worker.all(connection=Redis.from_url(c.redis.url()))}

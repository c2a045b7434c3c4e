"""PostgreSQL unreachable for a while: the API answers 503 with a clear JSON message, the dashboard a
plain 503, the workers keep running without spinning, and everything queued or running meanwhile ends
properly once the database is back."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import httpx
import pytest

from tests.reliability.cluster import RUN_REQUEUE_AFTER_S, pg_execute
from tests.reliability.helpers import FINISHED, heal_ready_task
from tests.reliability.sites import CONTACT_CODE, contact_site
from tests.reliability.wsclient import login_cookie

pytestmark = pytest.mark.reliability

OUTAGE_S = 10
RUNS_DURING_OUTAGE = 4
# Jobs that failed to claim their run during the outage are re-enqueued by maintenance once the run is
# RUN_REQUEUE_AFTER_S old; maintenance passes every 15 s.
RECOVERY_BOUND_S = RUN_REQUEUE_AFTER_S + 15 + 60


def test_the_api_says_503_while_the_database_is_away_and_workers_recover(c, api):
    worker_pids = {name: process.pid for name, process in c.workers.items()}
    with contact_site() as site:
        task = c.call("task_make", name=f"pg outage {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "-"})
        assert api("a").get(f"/tasks/{task}").status_code == 200
        cookie = login_cookie(c.url("a"), "rita", "pw-rita-123!")

        # One run is in the middle of its page when the database goes away.
        held = site.hold("GET /contact", 1)
        [inflight] = c.call("runs_enqueue_named", task, ["inflight"])
        c.wait_for("the in-flight run to reach the site", lambda: site.counts["GET /contact"] >= 1 or None, 60)

        c.pg.cut()
        cut_at = time.monotonic()
        logs_before = {name: len(c.log(f"worker-{name}")) for name in c.workers}
        # The control process reaches PostgreSQL directly: runs queued now are in the database and on the
        # queue, and the workers (which cannot reach the database) take their jobs during the outage.
        during = c.call("runs_enqueue_named", task, [f"during-{i}" for i in range(RUNS_DURING_OUTAGE)])
        held.set()  # the in-flight run finishes its page while its result cannot be stored

        responses = {}
        for web in c.webs:
            responses[f"{web} GET"] = api(web).get("/tasks")
            responses[f"{web} POST"] = api(web).post(f"/tasks/{task}/runs", json={})
        page = httpx.get(f"{c.url('a')}/", headers={"Cookie": cookie}, timeout=30)  # the session is in the database
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
        c.pg.restore()
        restored_at = time.monotonic()

        run_ids = [inflight, *during]
        states = c.wait_for(
            "every run to finish after the outage",
            lambda: (s := c.call("runs_state", run_ids)) and all(r["status"] in FINISHED for r in s.values()) and s,
            RECOVERY_BOUND_S,
        )
        recovered_in = time.monotonic() - restored_at
        after = api("b").get(f"/tasks/{task}")

    for name, response in responses.items():
        assert response.status_code == 503, (name, response.status_code, response.text[:300])
        body = response.json()
        assert body["error"]["code"] == "service_unavailable", body
        assert "database is unavailable" in body["error"]["message"], body
        assert response.headers["Retry-After"] == "5"
        assert "Traceback" not in response.text
    assert page.status_code == 503 and "database is unavailable" in page.text
    assert after.status_code == 200

    # Runs queued during the outage all ran, each exactly once.
    for run_id in during:
        assert states[run_id]["status"] == "succeeded", states[run_id]
    posted = Counter(site.posted_names)
    assert all(posted[f"during-{i}"] == 1 for i in range(RUNS_DURING_OUTAGE)), posted
    # The run that finished its page while the database was away keeps its result (the worker retried
    # storing it, heartbeat going), and was not run twice.
    assert states[inflight]["status"] == "succeeded", states[inflight]
    assert states[inflight]["output"] == {"confirmation": "Thanks, inflight!"}
    assert posted["inflight"] == 1
    assert recovered_in <= RECOVERY_BOUND_S

    # The workers rode it out: same processes, and they backed off instead of spinning on errors.
    assert {name: process.pid for name, process in c.workers.items()} == worker_pids
    assert all(process.poll() is None for process in c.workers.values())
    for name in c.workers:
        outage_log = c.log(f"worker-{name}")[logs_before[name]:]
        assert outage_log.count("\n") < 2000, f"worker {name} logged {outage_log.count(chr(10))} lines"
    assert c.call("stuck", [task]) == {"runs": [], "events": []}


def test_connections_the_database_dropped_mid_run_do_not_cost_the_run_its_heal(c):
    """Every connection to the database is terminated (a restart, a failover) while a self-healing run waits for
    its page: the worker's connection is dead when the step fails, and the takeover must still be recorded."""
    with contact_site() as site:
        task = heal_ready_task(c, site, auto_deploy=True)
        site.version = 2
        held = site.hold("GET /contact", 1)
        [broken] = c.call("runs_enqueue", task)
        c.wait_for("the run to reach the site", lambda: site.counts["GET /contact"] >= 1 or None, 60)
        pg_execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{c.database}' "
                   "AND pid <> pg_backend_pid()")
        held.set()
        run = c.wait_for("the run to finish", lambda: (r := c.call("run_get", broken))["status"] in FINISHED and r, 90)
        assert run["status"] == "healed", run
        final = c.wait_for("its heal to end", lambda: (s := c.call("task_state", task))["events"]
                           and s["events"][0]["status"] not in ("triggered", "healing", "validating") and s, 90)

    [event] = final["events"]
    assert event["status"] == "deployed", event
    assert len(final["deploys"]) == 1
    assert c.call("stuck", [task]) == {"runs": [], "events": []}

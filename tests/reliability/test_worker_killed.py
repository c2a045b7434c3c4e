"""A worker SIGKILLed in the middle of a run: the run is failed as worker_lost within the stated bound,
nothing is left running, and the product goes on working."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.reliability.helpers import (
    ABANDONED_JOB_BOUND_S,
    alive,
    cmdline,
    descendants,
    heal_ready_task,
    lost_run_bound,
    worker_running,
)
from tests.reliability.sites import CONTACT_CODE, contact_site

pytestmark = pytest.mark.reliability


def test_a_run_whose_worker_is_killed_fails_as_worker_lost_within_the_bound(c):
    with contact_site() as site:
        held = site.hold("GET /contact", 1)
        task = c.call("task_make", name=f"kill mid-run {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "Ada"})
        [run_id] = c.call("runs_enqueue", task)
        c.wait_for("the run to reach the site", lambda: site.counts["GET /contact"] >= 1, 60)
        victim = worker_running(c, f"run-{run_id}")
        victim_pid = c.workers[victim].pid
        family = descendants(victim_pid)  # Chromium, the sandbox child, RQ's scheduler

        c.kill_worker(victim)
        killed_at = time.monotonic()
        run = c.wait_for("the run to be failed", lambda: (r := c.call("run_get", run_id))["status"] == "failed" and r,
                         lost_run_bound(c) + 20)
        took = time.monotonic() - killed_at
        held.set()

        assert run["error_type"] == "worker_lost", run
        assert "no heartbeat" in run["error_message"]
        assert took <= lost_run_bound(c) + 5, f"the lost run was noticed after {took:.1f}s"
        # Not retried behind the user's back: it may have had side effects before the worker died.
        assert run["attempts"] == 1
        assert site.counts["POST /thanks"] == 0

        # Nothing the dead worker started runs on: the sandbox and its browser die with it. (RQ's own
        # scheduler process outlives a SIGKILLed worker; the systemd units and compose restart the
        # whole process group, see docs/reliability.md.)
        def orphans() -> dict[int, str]:
            return {pid: cmdline(pid) for pid in alive(family) if "rqworker" not in cmdline(pid)}

        c.wait_for("the killed worker's sandbox and browser to exit", lambda: not orphans() or None, 15)

        # The product goes on: the surviving worker runs the task again, successfully.
        [again] = c.call("runs_enqueue", task)
        done = c.wait_for("the next run", lambda: (r := c.call("run_get", again))["status"] in ("succeeded", "failed") and r, 60)
        assert done["status"] == "succeeded", done
    assert c.call("stuck", [task]) == {"runs": [], "events": []}


def test_a_worker_killed_during_the_takeover_leaves_no_heal_open(c):
    """The agent is waiting for the model when the worker dies: the run is lost, and its heal event is
    failed with it instead of staying 'triggered' forever."""
    c.model.reset()
    with contact_site() as site:
        task = c.call("task_make", name=f"kill mid-takeover {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "Ada"}, self_healing=True,
                      config={"auto_deploy": True}, healing_agent="llm")
        site.version = 2  # the button is gone: the takeover starts and asks the model
        [run_id] = c.call("runs_enqueue", task)
        c.wait_for("the takeover to ask the model", lambda: c.model.requests >= 1 or None, 90)
        state = c.call("task_state", task)
        assert [e["status"] for e in state["events"]] in (["triggered"], ["healing"]), state["events"]

        c.kill_worker(worker_running(c, f"run-{run_id}"))
        killed_at = time.monotonic()
        run = c.wait_for("the run to be failed", lambda: (r := c.call("run_get", run_id))["status"] == "failed" and r,
                         lost_run_bound(c) + 20)
        took = time.monotonic() - killed_at
        c.model.release.set()
        state = c.call("task_state", task)

    assert run["error_type"] == "worker_lost", run
    assert took <= lost_run_bound(c) + 5
    [event] = state["events"]
    assert event["status"] == "failed", event
    assert "did not complete" in event["reason"] or "worker" in event["reason"], event
    assert state["deploys"] == [] and state["current_version"] == 1
    assert site.counts["POST /thanks"] == 0
    assert c.call("stuck", [task]) == {"runs": [], "events": []}


def test_a_worker_killed_during_validation_fails_that_heal_and_the_next_heal_deploys_once(c):
    with contact_site() as site:
        task = heal_ready_task(c, site, auto_deploy=True)
        site.version = 2
        # POST 1 is the takeover's click in the healed run; POST 2 is the validation run's.
        validation_post = site.hold("POST /thanks", 2)
        [broken] = c.call("runs_enqueue", task)
        c.wait_for("the validation run to reach the site", lambda: site.counts["POST /thanks"] >= 2 or None, 120)
        state = c.call("task_state", task)
        [event] = state["events"]
        assert event["status"] == "validating", event
        c.kill_worker(worker_running(c, f"run-{event['validation_run_id']}"))

        c.wait_for("the heal to be failed",
                   lambda: c.call("task_state", task)["events"][0]["status"] == "failed" or None, lost_run_bound(c) + 25)
        validation_post.set()
        first = c.call("task_state", task)
        assert c.call("run_get", broken)["status"] == "healed"
        assert c.call("run_get", event["validation_run_id"])["error_type"] == "worker_lost"
        assert first["deploys"] == [] and first["current_version"] == 1

        # The site is still on version 2: the next run heals again, on the surviving worker, and deploys.
        [again] = c.call("runs_enqueue", task)
        c.wait_for("the second heal to be deployed",
                   lambda: any(e["status"] == "deployed" for e in c.call("task_state", task)["events"]) or None, 150)
        final = c.call("task_state", task)

    first_event, second_event = final["events"]
    assert first_event["status"] == "failed" and "validation run" in first_event["reason"], first_event
    assert second_event["status"] == "deployed", second_event
    # Exactly one deploy, of the second heal's version; the failed heal's draft was never deployed.
    assert len(final["deploys"]) == 1, final["deploys"]
    assert final["current_version_id"] == second_event["new_version_id"]
    assert first_event["new_version_id"] != final["current_version_id"]
    assert c.call("run_get", again)["status"] == "healed"
    assert c.call("stuck", [task]) == {"runs": [], "events": []}


def test_a_worker_killed_while_it_writes_the_new_version_resumes_that_heal_within_the_bound(c):
    """The heal's generate job is waiting for the model when its worker dies: another worker sees the job
    abandoned once its RQ heartbeat lapses, and maintenance runs it again; the heal deploys once."""
    c.model.reset()
    with contact_site() as site:
        task = c.call("task_make", name=f"kill mid-generate {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "Ada"}, self_healing=True,
                      config={"auto_deploy": True}, healing_agent="llm")
        [first] = c.call("runs_enqueue", task)
        c.wait_for("the version-1 run", lambda: c.call("run_get", first)["status"] == "succeeded" or None, 90)
        site.version = 2
        [broken] = c.call("runs_enqueue", task)
        c.wait_for("the takeover to ask the model", lambda: c.model.requests >= 1 or None, 90)
        c.model.reset()  # the takeover's request gets a 503 (the heuristic agent finishes it); the patch's waits
        c.wait_for("the new version's writing to ask the model", lambda: c.model.requests >= 1 or None, 90)
        [event] = c.call("task_state", task)["events"]
        assert event["status"] == "healing" and event["new_version_id"] is None, event
        assert c.call("run_get", broken)["status"] == "healed"
        posts_before = site.counts["POST /thanks"]

        c.kill_worker(worker_running(c, f"heal-generate-{event['id']}"))
        killed_at = time.monotonic()
        c.model.release.set()  # the model answers the resumed job (503: the mechanical patch is used)
        c.wait_for("the heal to be resumed", lambda: c.call("task_state", task)["events"][0]["new_version_id"] or None,
                   ABANDONED_JOB_BOUND_S + 25)
        took = time.monotonic() - killed_at
        final = c.wait_for("the heal to end", lambda: (s := c.call("task_state", task))["events"][0]["status"]
                           not in ("healing", "validating") and s, 90)

    assert took <= ABANDONED_JOB_BOUND_S + 10, f"the abandoned heal was resumed after {took:.1f}s"
    [event] = final["events"]
    assert event["status"] == "deployed", event
    assert len(final["deploys"]) == 1 and final["current_version_id"] == event["new_version_id"]
    assert [v["source"] for v in final["versions"]].count("healed") == 1, final["versions"]
    assert site.counts["POST /thanks"] == posts_before + 1  # the validation run's, once
    assert c.call("stuck", [task]) == {"runs": [], "events": []}

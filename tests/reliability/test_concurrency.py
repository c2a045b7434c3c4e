"""Races, fought with real processes and threads: concurrent approvals, concurrent runs of one task (with
duplicated jobs), and a heal racing a manual deploy. Each ends in one consistent outcome."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest

from tests.reliability.helpers import FINISHED
from tests.reliability.sites import CONTACT_CODE, CONTACT_CODE_MANUAL, contact_site

pytestmark = pytest.mark.reliability


def _together(calls):
    """Run the callables in threads released at the same instant; returns their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def _pending_heal(c, site, **config) -> tuple[str, dict]:
    """A contact-form task whose button moved, healed and waiting for a reviewer."""
    task = c.call("task_make", name=f"race {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                  params={"base_url": site.url, "name": "Ada"}, self_healing=True,
                  config={"auto_deploy": False, "validation_required": False, **config})
    [first] = c.call("runs_enqueue", task)
    c.wait_for("the version-1 run", lambda: c.call("run_get", first)["status"] in FINISHED or None, 90)
    site.version = 2
    c.call("runs_enqueue", task)
    def decided():
        state = c.call("task_state", task)
        return state["events"] and state["events"][0]["status"] in ("pending_review", "failed") and state

    state = c.wait_for("a heal waiting for review", decided, 150)
    event = state["events"][0]
    assert event["status"] == "pending_review", event
    return task, event


def test_concurrent_approvals_deploy_exactly_once(c, api):
    with contact_site() as site:
        task, event = _pending_heal(c, site)
        clients = [api("a" if i % 2 else "b") for i in range(8)]
        responses = _together([lambda cl=cl: cl.post(f"/healing-events/{event['id']}/approve", json={"comment": "ok"})
                               for cl in clients])
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: 7}, [(r.status_code, r.text[:200]) for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "already_decided"
    state = c.call("task_state", task)
    assert state["events"][0]["status"] == "deployed"
    assert len(state["deploys"]) == 1 and len(state["reviews"]) == 1
    assert state["current_version_id"] == event["new_version_id"]


def test_concurrent_runs_of_one_task_each_execute_exactly_once(c):
    names = [f"n{i}-{uuid.uuid4().hex[:4]}" for i in range(10)]
    with contact_site() as site:
        task = c.call("task_make", name=f"many runs {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "-"})
        run_ids = c.call("runs_enqueue_named", task, names)
        # Every run's job is delivered twice more, as a retried or duplicated enqueue would.
        _together([lambda: c.call("run_jobs_push", run_ids), lambda: c.call("run_jobs_push", run_ids)])
        states = c.wait_for(
            "every run to finish",
            lambda: (s := c.call("runs_state", run_ids)) and all(r["status"] in FINISHED for r in s.values()) and s,
            180,
        )
    assert {r["status"] for r in states.values()} == {"succeeded"}, states
    assert all(r["attempts"] == 1 for r in states.values())
    posted = Counter(site.posted_names)
    assert {name: posted[name] for name in names} == {name: 1 for name in names}
    assert sum(posted.values()) == len(names)
    assert c.call("stuck", [task]) == {"runs": [], "events": []}


def test_a_heal_validating_while_someone_deploys_by_hand_is_superseded(c, api):
    with contact_site() as site:
        task = c.call("task_make", name=f"heal vs deploy {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "Ada"}, self_healing=True,
                      config={"auto_deploy": True, "validation_required": True})
        [first] = c.call("runs_enqueue", task)
        c.wait_for("the version-1 run", lambda: c.call("run_get", first)["status"] in FINISHED or None, 90)
        site.version = 2
        validation_post = site.hold("POST /thanks", 2)  # 1: the takeover's click, 2: the validation run
        c.call("runs_enqueue", task)
        c.wait_for("the validation run to reach the site", lambda: site.counts["POST /thanks"] >= 2 or None, 150)
        assert c.call("task_state", task)["events"][0]["status"] == "validating"

        # Meanwhile a person fixes the code by hand, through the API of the other web process.
        response = api("b").patch(f"/tasks/{task}", json={"code": CONTACT_CODE_MANUAL})
        assert response.status_code == 200, response.text
        manual = response.json()["current_version"]
        validation_post.set()
        state = c.wait_for("the heal to end", lambda: (s := c.call("task_state", task))["events"][0]["status"] in
                           ("deployed", "failed", "pending_review") and s, 90)

    event = state["events"][0]
    assert event["status"] == "failed" and event["reason"].startswith("superseded"), event
    # The person's version stands; the healed draft was never made current.
    assert state["current_version"] == manual
    assert state["deploys"] == []
    assert c.call("stuck", [task]) == {"runs": [], "events": []}


def test_an_approval_racing_a_manual_deploy_ends_consistently(c, api):
    with contact_site() as site:
        task, event = _pending_heal(c, site)
        draft = c.call("version_draft", task, CONTACT_CODE_MANUAL)
        approve, deploy = _together([
            lambda: api("a").post(f"/healing-events/{event['id']}/approve", json={"comment": "ship it"}),
            lambda: api("b").post(f"/tasks/{task}/versions/{draft}/deploy"),
        ])
    assert deploy.status_code == 200, deploy.text
    assert approve.status_code in (200, 409), approve.text
    state = c.call("task_state", task)
    event_now = state["events"][0]
    deployed_versions = [entry["data"]["version"] for entry in state["deploys"]]
    # The last deploy is the current version, whoever won.
    assert state["current_version"] == deployed_versions[-1]
    if approve.status_code == 200:
        # The approval came first; the manual deploy then replaced it. Both are in the log, in that order.
        assert event_now["status"] == "deployed"
        healed_number = next(v["number"] for v in state["versions"] if v["id"] == event["new_version_id"])
        assert deployed_versions == [healed_number, draft]
    else:
        # The manual deploy came first; the approval was refused as superseded and changed nothing.
        assert approve.json()["error"]["code"] == "superseded"
        assert event_now["status"] == "pending_review"
        assert deployed_versions == [draft] and state["reviews"] == []
    assert state["current_version"] == draft

"""Two web processes and two workers behave as one product: a dashboard connected to web process A sees,
live, the heal that a worker does for a run started through the API of web process B."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.reliability.helpers import FINISHED
from tests.reliability.sites import CONTACT_CODE, contact_site
from tests.reliability.wsclient import WebSocket, login_cookie

pytestmark = pytest.mark.reliability


def test_a_dashboard_on_web_a_sees_a_heal_started_through_web_b(c, api):
    cookie = login_cookie(c.url("a"), "rita", "pw-rita-123!")
    with contact_site() as site:
        task = c.call("task_make", name=f"two webs {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "Ada"}, self_healing=True,
                      config={"auto_deploy": True, "validation_required": True})
        [first] = c.call("runs_enqueue", task)
        c.wait_for("the version-1 run", lambda: c.call("run_get", first)["status"] in FINISHED or None, 90)
        site.version = 2

        ws_url = c.url("a").replace("http", "ws")
        with WebSocket(f"{ws_url}/ws/live/", origin=c.url("a"), cookie=cookie) as queue_page, \
                WebSocket(f"{ws_url}/ws/live/?task={task}", origin=c.url("a"), cookie=cookie) as task_page:
            started = api("b").post(f"/tasks/{task}/runs", json={})
            assert started.status_code == 202, started.text
            run_id = started.json()["id"]
            heard = queue_page.messages_until(
                lambda m: m["kind"] == "healing.deployed" and m["task_id"] == task, 180)
            on_task_page = task_page.messages_until(lambda m: m["kind"] == "healing.deployed", 30)

    kinds = [m["kind"] for m in heard if m["task_id"] == task]
    # The run was queued by web B, run and healed by a worker, and web A's pages heard it all; its steps go
    # to the task's page only (the queue shows no steps).
    assert "run.queued" in kinds and "run.started" in kinds and "run.step" not in kinds
    assert "run.step" in [m["kind"] for m in on_task_page]
    healing = [k for k in kinds if k.startswith("healing.")]
    assert healing[0] == "healing.triggered" and healing[-1] == "healing.deployed", healing
    assert "healing.validating" in healing
    run_messages = [m for m in heard if m["kind"] == "run.healed"]
    assert any(m["data"]["run"] == run_id for m in run_messages), kinds
    # The task page gets the same story, and nothing of other tasks.
    assert {m["task_id"] for m in on_task_page} == {task}
    assert [m["kind"] for m in on_task_page if m["kind"].startswith("healing.")][-1] == "healing.deployed"

    # Both web processes serve the same state.
    event_id = heard[-1]["data"]["event"]
    for web in c.webs:
        assert api(web).get(f"/healing-events/{event_id}").json()["status"] == "deployed"
    page = httpx.get(f"{c.url('b')}/events/{event_id}/", headers={"Cookie": login_cookie(c.url("b"), "rita", "pw-rita-123!")})
    assert page.status_code == 200 and "deployed" in page.text.lower()

"""The runs API: starting a run answers 202 with its id and queues it; a run can be read back."""

from __future__ import annotations

import json
import uuid

import django_rq
import pytest
from rq import Queue

from tasks_app import execution, services
from tasks_app.api_keys import api_key_create
from tasks_app.audit import Actor
from tasks_app.models import AuditLog, Run

pytestmark = pytest.mark.django_db

CODE = 'def run(page, params):\n    page.goto(params["base_url"])\n    return {"title": page.title()}\n'


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("mo")


@pytest.fixture
def headers(owner):
    _, raw = api_key_create(user=owner, name="tests")
    return {"anchor-api-key": raw}


@pytest.fixture
def task(owner):
    task = services.task_create(name="t", code=CODE, params={"base_url": "http://127.0.0.1:9"})
    return services.task_update(task=task, code=CODE.replace("title", "heading"))


@pytest.fixture
def runs_queue(monkeypatch):
    """A real RQ queue in Redis, named for this test alone, so no shared worker picks its jobs up."""
    queues: dict[str, Queue] = {}
    prefix = f"test-{uuid.uuid4().hex}"

    def get_queue(name: str = "default", **_):
        if name not in queues:
            queues[name] = Queue(f"{prefix}-{name}", connection=django_rq.get_connection("runs"))
        return queues[name]

    monkeypatch.setattr(django_rq, "get_queue", get_queue)
    yield get_queue("runs")
    for queue in queues.values():
        queue.empty()
        queue.delete(delete_jobs=True)


def _post(client, headers, path, body=None):
    data = json.dumps(body) if body is not None else ""
    return client.post(f"/api/v1{path}", data=data, content_type="application/json", headers=headers)


def test_starting_a_run_answers_202_with_its_id_and_queues_it(client, headers, task, owner, runs_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, headers, f"/tasks/{task.pk}/runs")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"].startswith("run_") and body["status"] == "queued"
    run = Run.objects.get(pk=body["id"])
    assert (run.version.number, run.requested_by, run.params) == (2, owner, {})
    assert [job.args for job in runs_queue.get_jobs()] == [(run.pk,)]
    assert AuditLog.objects.filter(action="run.enqueue", object_id=run.pk, actor=owner).exists()


def test_a_run_can_pin_a_version_and_add_params(client, headers, task):
    response = _post(client, headers, f"/tasks/{task.pk}/runs", {"params": {"name": "Ada"}, "version": 1})
    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["id"])
    assert (run.version.number, run.params) == (1, {"name": "Ada"})


@pytest.mark.parametrize(
    "body, field",
    [
        ({"version": 7}, "version"),
        ({"version": 0}, "version"),
        ({"version": "1"}, "version"),
        ({"params": ["a"]}, "params"),
        ({"params": {"secrets": {}}}, "params.secrets"),
        ({"priority": "high"}, "priority"),
    ],
)
def test_bad_run_input_is_a_400_naming_the_field(client, headers, task, body, field):
    response = _post(client, headers, f"/tasks/{task.pk}/runs", body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    assert not Run.objects.exists()


def test_run_params_over_64_kb_are_a_400_naming_params_and_the_limit(client, headers, task):
    response = _post(client, headers, f"/tasks/{task.pk}/runs", {"params": {"k": "x" * 2_400_000}})
    assert response.status_code == 400, response.content
    assert response.json()["error"] == {
        "code": "invalid_input", "message": "must be at most 64 KB as JSON (these are 2344 KB)", "field": "params",
    }
    assert not Run.objects.exists()


def test_a_task_without_code_cannot_run(client, headers):
    bare = services.task_create(name="no code yet", prompt="Fill out the contact form")
    response = _post(client, headers, f"/tasks/{bare.pk}/runs")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "code"


def test_running_an_unknown_task_is_a_404(client, headers):
    assert _post(client, headers, "/tasks/task_nope/runs").status_code == 404


def test_a_run_reads_back_with_status_output_error_trace_and_healing_event(client, headers, task):
    from healing_app.models import HealingEvent

    run = services.run_enqueue(task=task)
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.HEALED,
        output={"heading": "Contact"},
        error_type="",  # the run succeeded in the end, as the runner stores it; its heal knows what failed
        error_message="#submit matched nothing",
        trace=[{"index": 0, "action": "goto", "outcome": "ok"}],
    )
    event = HealingEvent.objects.create(task=task, run=run, error_type="element_not_found", original_version=run.version)

    response = client.get(f"/api/v1/runs/{run.pk}", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("id", "task", "status", "version", "output", "error_type", "healing_event")} == {
        "id": run.pk,
        "task": task.pk,
        "status": "healed",
        "version": 2,
        "output": {"heading": "Contact"},
        "error_type": "element_not_found",
        "healing_event": event.pk,
    }
    assert body["trace"] == [{"index": 0, "action": "goto", "outcome": "ok"}]
    assert body["error_message"] == "#submit matched nothing"


def test_a_queued_run_has_no_output_yet(client, headers, task):
    run = services.run_enqueue(task=task)
    body = client.get(f"/api/v1/runs/{run.pk}", headers=headers).json()
    assert (body["status"], body["output"], body["error_type"], body["healing_event"]) == ("queued", None, None, None)


def test_unknown_runs_are_a_json_404(client, headers):
    response = client.get("/api/v1/runs/run_nope", headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_tasks_runs_are_listed_newest_first(client, headers, task):
    first = services.run_enqueue(task=task)
    second = services.run_enqueue(task=task)
    page = client.get(f"/api/v1/tasks/{task.pk}/runs?limit=1", headers=headers).json()
    assert [run["id"] for run in page["data"]] == [second.pk]
    rest = client.get(f"/api/v1/tasks/{task.pk}/runs?cursor={page['next_cursor']}", headers=headers).json()
    assert [run["id"] for run in rest["data"]] == [first.pk]
    assert rest["next_cursor"] is None


def test_cancelling_a_queued_run_answers_202_with_the_run_ended_cancelled(client, headers, task, owner):
    run = services.run_enqueue(task=task, actor=Actor(user=owner))
    response = _post(client, headers, f"/runs/{run.pk}/cancel")
    assert response.status_code == 202
    body = response.json()
    assert (body["id"], body["status"], body["error_type"]) == (run.pk, "failed", "cancelled")
    assert body["error_message"] == "cancelled by mo before it started"


def test_cancelling_a_running_run_answers_202_with_when_it_was_asked(client, headers, task, owner):
    run = execution.run_claim(services.run_enqueue(task=task, actor=Actor(user=owner)).pk)
    body = _post(client, headers, f"/runs/{run.pk}/cancel").json()
    assert body["status"] == "running" and body["cancel_requested_at"] is not None
    assert client.get(f"/api/v1/runs/{run.pk}", headers=headers).json()["cancel_requested_at"] == body["cancel_requested_at"]


def test_cancelling_a_finished_run_is_a_409_that_says_so(client, headers, task, owner):
    run = services.run_enqueue(task=task, actor=Actor(user=owner))
    _post(client, headers, f"/runs/{run.pk}/cancel")
    response = _post(client, headers, f"/runs/{run.pk}/cancel")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "run_finished", "message": f"{run.pk} has already finished (failed)", "field": None,
    }


def test_cancelling_someone_elses_run_of_someone_elses_task_is_a_403(client, headers, django_user_model):
    olga = django_user_model.objects.create_user("olga")
    task = services.task_create(name="hers", code=CODE, actor=Actor(user=olga))
    run = services.run_enqueue(task=task, actor=Actor(user=olga))
    response = _post(client, headers, f"/runs/{run.pk}/cancel")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    assert Run.objects.get(pk=run.pk).status == Run.Status.QUEUED


def test_cancel_takes_no_fields_and_names_one_sent_anyway(client, headers, task, owner):
    run = services.run_enqueue(task=task, actor=Actor(user=owner))
    response = _post(client, headers, f"/runs/{run.pk}/cancel", {"force": True})
    assert response.status_code == 400 and response.json()["error"]["field"] == "force"
    assert Run.objects.get(pk=run.pk).status == Run.Status.QUEUED


def test_cancelling_an_unknown_run_is_a_404(client, headers):
    response = _post(client, headers, "/runs/run_nope/cancel")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_running_a_rejected_heals_draft_is_a_400_naming_the_version(client, headers):
    from healing_app.models import HealingEvent
    from healing_app.tests.factories import pending_event

    event = pending_event()
    HealingEvent.objects.filter(pk=event.pk).update(status=HealingEvent.Status.REJECTED)
    response = _post(client, headers, f"/tasks/{event.task_id}/runs", {"version": event.new_version.number})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "version"
    assert error["message"] == f"version 2 is a healed draft a reviewer rejected in {event.pk}; it is kept for inspection only"

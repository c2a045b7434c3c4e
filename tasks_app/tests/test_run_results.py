"""Storing a run's result: whatever the page or the task code hands back, the run ends and nothing is lost."""

from __future__ import annotations

import pytest

from healing_app.tests.factories import CODE_V1
from tasks_app import execution, services
from tasks_app.models import Run
from tasks_app.runner.protocol import Failure, RunResult, Step
from tasks_app.storable import storable, unstorable

pytestmark = pytest.mark.django_db


def _running_run() -> Run:
    task = services.task_create(name="t", code=CODE_V1)
    return execution.run_claim(services.run_create(task=task).pk)


@pytest.mark.parametrize("output, path", [
    ({"price": float("nan")}, "output.price"),
    ({"items": ["ok", "a\x00b"]}, "output.items.1"),
    ("lone \udc80 surrogate", "output"),
])
def test_output_the_database_cannot_store_fails_the_run_with_a_clear_reason(output, path):
    run = execution.run_finish(_running_run(), RunResult(status=Run.Status.SUCCEEDED, output=output))
    run.refresh_from_db()
    assert (run.status, run.error_type, run.output) == (Run.Status.FAILED, "script_error", None)
    assert run.error_message.startswith(f"run() returned output the database cannot store: {path} ")


def test_page_text_with_a_nul_is_kept_readable_in_the_trace_and_failure():
    step = Step(index=0, line=3, action="click", selector="text=a\x00b", args={"text": "x\ud800"}, url="http://x/",
                started_ms=0.0, duration_ms=float("inf"))
    failure = Failure(type="element_not_found", message="no a\x00b", step_key="3:click:a")
    result = RunResult(status=Run.Status.FAILED, error_type="element_not_found", error_message="no a\x00b",
                       steps=[step], failure=failure)
    run = execution.run_finish(_running_run(), result)
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.error_message == "no a\ufffdb"
    assert run.trace[0]["selector"] == "text=a\ufffdb" and run.trace[0]["duration_ms"] is None
    assert run.trace[0]["args"] == {"text": "x\ufffd"}
    assert run.failure["message"] == "no a\ufffdb"


def test_storable_leaves_storable_values_as_they_are():
    value = {"a": [1, 2.5, "text", None, True], "b": {"c": "ü"}}
    assert storable(value) == value
    assert unstorable(storable({"x\x00": ["\ud800", float("nan")]})) is None


def test_a_run_whose_task_was_deleted_while_it_ran_ends_quietly(caplog):
    run = _running_run()
    run.task.delete()  # a moment after the busy check, say

    finished = execution.run_finish(run, RunResult(status=Run.Status.SUCCEEDED, output={"ok": True}))

    assert finished.pk == run.pk
    assert not Run.objects.filter(pk=run.pk).exists()
    assert f"run {run.pk} finished after its task was deleted; result dropped" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_running_runs_steps_so_far_are_kept_and_shown_to_a_page_opened_mid_run(client, member):
    """Steps are stored as they happen, not only at the end: the run page, the API and a run whose worker
    dies all have the steps done so far."""
    import threading
    import time

    from django.db import OperationalError, connection
    from django.urls import reverse

    from tasks_app.jobs import run_task
    from tasks_app.tests.sites import serve

    code = (
        'def run(page, params):\n    page.goto(params["base_url"] + "/form")\n    page.fill("#name", "Ada")\n'
        "    page.wait_for_timeout(4000)\n    return {}\n"
    )
    seen: dict = {}
    with serve({"/form": '<input id="name">'}) as site:
        task = services.task_create(name="t", code=code, params={"base_url": site.url})
        run = services.run_create(task=task)
        client.force_login(member)

        def open_the_page_mid_run() -> None:
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        stored = Run.objects.filter(pk=run.pk).values("status", "trace").get()
                    except OperationalError:  # SQLite's shared-cache test database: "table is locked" by a write
                        time.sleep(0.05)
                        continue
                    if len(stored["trace"]) >= 2:
                        seen["stored"] = stored
                        seen["page"] = client.get(reverse("run-detail", args=[run.pk])).content.decode()
                        return
                    time.sleep(0.05)
            finally:
                connection.close()

        watcher = threading.Thread(target=open_the_page_mid_run)
        watcher.start()
        try:
            run_task(run.pk)  # the worker's side, in this thread (the browser pool belongs to it)
        finally:
            watcher.join()

    stored = seen["stored"]
    assert stored["status"] == Run.Status.RUNNING
    assert [step["action"] for step in stored["trace"][:2]] == ["goto", "fill"]
    assert 'data-step-count="' + run.pk + '">2<' in seen["page"] and "#name" in seen["page"]
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and [s["action"] for s in run.trace][:2] == ["goto", "fill"]


def test_only_a_runs_first_steps_are_stored_as_they_happen_the_rest_when_it_ends():
    """Each stored step rewrites the trace: a run of thousands of steps must not write it thousands of times."""
    run = _running_run()
    steps = [{"index": i, "line": 2, "action": "click", "selector": f"#b{i}"} for i in range(execution.LIVE_TRACE_STEPS + 2)]
    for step in steps:
        execution.run_step_record(run, step)
    run.refresh_from_db()
    assert [s["index"] for s in run.trace] == list(range(execution.LIVE_TRACE_STEPS))
    assert run.heartbeat_at is not None

    finished = execution.run_finish(run, RunResult(
        status=Run.Status.SUCCEEDED, output={},
        steps=[Step(index=s["index"], line=2, action="click", selector=s["selector"], args={}, url="http://x/",
                    started_ms=0.0, duration_ms=1.0) for s in steps],
    ))
    assert len(finished.trace) == execution.LIVE_TRACE_STEPS + 2


def test_a_claim_whose_read_fails_leaves_the_run_queued_not_running_with_nothing_running_it(monkeypatch):
    from django.db import OperationalError
    from django.db.models.query import QuerySet

    run = services.run_create(task=services.task_create(name="t", code=CODE_V1))
    real_get = QuerySet.get

    def database_gone(self, *args, **kwargs):
        if self.model is Run:
            raise OperationalError("server closed the connection unexpectedly")
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(QuerySet, "get", database_gone)
    with pytest.raises(OperationalError):
        execution.run_claim(run.pk)
    monkeypatch.setattr(QuerySet, "get", real_get)
    run.refresh_from_db()
    assert (run.status, run.attempts) == (Run.Status.QUEUED, 0)
    assert execution.run_claim(run.pk).status == Run.Status.RUNNING  # the job's retry runs it


def test_a_heal_begun_after_its_run_was_declared_lost_is_closed_when_the_run_ends():
    """A database outage outlasts the heartbeat: maintenance fails the run as lost while it still runs, and a
    takeover then opens a heal for it. The run's late end must close that heal, not leave it healing for good."""
    from healing_app.models import HealingEvent

    run = _running_run()
    execution.run_fail(run, "the worker was lost", error_type="worker_lost")
    event = HealingEvent.objects.create(
        task=run.task, run=run, original_version=run.version, error_type="element_not_found",
        status=HealingEvent.Status.HEALING,
    )
    stored = execution.run_finish(run, RunResult(status=Run.Status.HEALED, output={"sent": True}))
    assert (stored.status, stored.error_type) == (Run.Status.FAILED, "worker_lost")  # the verdict stands
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.FAILED and "did not complete" in event.reason

"""run_cancel: a queued run ends at once, a running one is stopped by its worker, a finished one stays as it was."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import PermissionDenied
from django.db import connection

from healing_app import broadcast
from tasks_app import services
from tasks_app.audit import Actor
from tasks_app.execution import browser_pool, run_claim, run_execute
from tasks_app.jobs import run_task
from tasks_app.models import AuditLog, Run

from .sites import serve

HANGING_CODE = 'def run(page, params):\n    page.wait_for_timeout(120_000)\n    return {"done": True}\n'
QUICK_CODE = 'def run(page, params):\n    return {"done": True}\n'


def _task(owner=None, code=QUICK_CODE):
    task = services.task_create(name="t", code=code)
    if owner is not None:
        task.owner = owner
        task.save(update_fields=["owner"])
    return task


@pytest.mark.django_db
def test_a_queued_run_ends_at_once_cancelled_and_its_job_does_nothing(member):
    run = services.run_create(task=_task(), actor=Actor(user=member, via="api"))

    cancelled = services.run_cancel(run=run, actor=Actor(user=member, via="api"))

    assert (cancelled.status, cancelled.error_type) == (Run.Status.FAILED, "cancelled")
    assert cancelled.error_message == "cancelled by mo before it started"
    assert cancelled.finished_at is not None
    assert run_task(run.pk).startswith("skipped")
    entry = AuditLog.objects.get(action="run.cancel")
    assert (entry.actor_label, entry.data) == ("mo via api", {"status": "queued"})


@pytest.mark.django_db
def test_a_running_run_is_marked_for_its_worker_once_and_open_pages_are_told(member, django_capture_on_commit_callbacks):
    run = run_claim(services.run_create(task=_task(), actor=Actor(user=member)).pk)

    layer = get_channel_layer()
    page = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(broadcast.task_group(run.task_id), page)  # the task's open pages

    with django_capture_on_commit_callbacks(execute=True):
        first = services.run_cancel(run=run, actor=Actor(user=member))
    again = services.run_cancel(run=run, actor=Actor(user=member))

    async def heard():
        return await asyncio.wait_for(layer.receive(page), timeout=5)

    told = async_to_sync(heard)()
    assert (told["kind"], told["data"]) == ("run.cancel_requested", {"run": run.pk, "status": "running"})

    assert first.status == Run.Status.RUNNING and first.cancel_requested_at is not None
    assert first.cancel_requested_by == member
    assert again.cancel_requested_at == first.cancel_requested_at
    assert AuditLog.objects.filter(action="run.cancel").count() == 1


@pytest.mark.django_db
def test_a_finished_run_cannot_be_cancelled_and_is_left_as_it_was(member):
    run = services.run_create(task=_task(), actor=Actor(user=member))
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED, output={"done": True})

    with pytest.raises(services.RunNotCancellable) as caught:
        services.run_cancel(run=run, actor=Actor(user=member))

    assert caught.value.code == "run_finished" and str(caught.value) == f"{run.pk} has already finished (succeeded)"
    run.refresh_from_db()
    assert (run.status, run.output, run.cancel_requested_at) == (Run.Status.SUCCEEDED, {"done": True}, None)


@pytest.mark.django_db
def test_a_heals_validation_run_is_not_cancelled_by_hand(reviewer):
    run = services.run_create(task=_task(), purpose=Run.Purpose.VALIDATION)
    with pytest.raises(services.RunNotCancellable) as caught:
        services.run_cancel(run=run, actor=Actor(user=reviewer))
    assert caught.value.code == "validation_run"
    assert Run.objects.get(pk=run.pk).status == Run.Status.QUEUED


@pytest.mark.django_db
def test_only_who_started_it_the_owner_a_reviewer_or_staff_may_cancel(django_user_model, member, reviewer):
    owner = django_user_model.objects.create_user("olga")
    stranger = django_user_model.objects.create_user("sam")
    task = _task(owner=owner)

    with pytest.raises(PermissionDenied):
        services.run_cancel(run=services.run_create(task=task, actor=Actor(user=member)), actor=Actor(user=stranger))
    for who in (member, owner, reviewer):
        run = services.run_create(task=task, actor=Actor(user=member))
        assert services.run_cancel(run=run, actor=Actor(user=who)).error_type == "cancelled"
    assert not AuditLog.objects.filter(action="run.cancel", actor_label="sam").exists()


@pytest.mark.django_db(transaction=True)
def test_a_hanging_run_is_stopped_by_its_worker_within_seconds_and_ends_cancelled(member):
    """The whole way: the worker's heartbeat sees the request and the sandbox's watchdog kills the run."""
    run = services.run_create(task=_task(code=HANGING_CODE), actor=Actor(user=member))
    asked: list[float] = []

    def person_cancels() -> None:
        try:
            deadline = time.monotonic() + 60
            while Run.objects.get(pk=run.pk).status == Run.Status.QUEUED and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # well inside wait_for_timeout
            asked.append(time.monotonic())
            services.run_cancel(run=Run.objects.get(pk=run.pk), actor=Actor(user=member))
        finally:
            connection.close()  # this thread's own connection, or the test database cannot be dropped

    person = threading.Thread(target=person_cancels)
    person.start()
    try:
        # The worker's side runs here, in the main thread: the process's browser pool belongs to it.
        run_task(run.pk)
        stopped_after = time.monotonic() - asked[0]
    finally:
        person.join()

    run.refresh_from_db()
    assert (run.status, run.error_type) == (Run.Status.FAILED, "cancelled")
    assert run.error_message == "cancelled by mo while it ran"
    assert run.failure["details"]["reason"] == "cancelled"
    assert run.output is None and not run.healing_events.exists()
    assert stopped_after < 15, f"the run stopped {stopped_after:.1f} s after the cancel"


@pytest.mark.django_db(transaction=True)
def test_a_run_cancelled_between_its_claim_and_its_start_never_runs_its_code(member):
    code = 'def run(page, params):\n    page.goto(params["base_url"] + "/form")\n    page.wait_for_timeout(120_000)\n'
    with serve({"/form": "<h1>Form</h1>"}) as site:
        task = services.task_create(name="t", code=code, params={"base_url": site.url})
        run = run_claim(services.run_create(task=task, actor=Actor(user=member)).pk)
        services.run_cancel(run=run, actor=Actor(user=member))

        result = run_execute(run, browser=browser_pool())

    assert (result.error_type, result.steps) == ("cancelled", [])
    assert site.hits["GET /form"] == 0  # its first line would have opened it within a second

"""Maintenance, the repairs every worker runs every 15 s: lost runs, lost jobs, stalled heals.

The reliability suite (tests/reliability) breaks real processes; these tests pin each repair's rules.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone
from rq.job import Job, JobStatus

from healing_app import pipeline
from healing_app.models import HealingEvent
from healing_app.tests.factories import CODE_V1, CODE_V2
from tasks_app import maintenance, services
from tasks_app.execution import RESULT_STORE_RETRY_S
from tasks_app.models import CodeVersion, Run
from tasks_app.runner import HANDOVER_BUDGET_S

pytestmark = pytest.mark.django_db
LONG_AGO = timedelta(minutes=10)


def _task(**config):
    return services.task_create(name="contact", code=CODE_V1, self_healing=True, self_healing_config=config)


def _running(task, *, heartbeat_age: timedelta) -> Run:
    run = services.run_create(task=task)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, heartbeat_at=timezone.now() - heartbeat_age)
    return run


def test_only_runs_whose_heartbeat_stopped_are_failed_as_worker_lost(settings):
    task = _task()
    lost = _running(task, heartbeat_age=timedelta(seconds=settings.RUN_STALE_AFTER_S + 5))
    alive = _running(task, heartbeat_age=timedelta(seconds=1))
    assert maintenance.runs_fail_lost() == 1
    lost.refresh_from_db(), alive.refresh_from_db()
    assert (lost.status, lost.error_type) == (Run.Status.FAILED, "worker_lost")
    assert alive.status == Run.Status.RUNNING


def test_a_run_whose_worker_died_keeps_the_steps_it_took(settings):
    from tasks_app.execution import run_step_record

    run = _running(_task(), heartbeat_age=timedelta(0))
    for index, action in enumerate(["goto", "fill"]):
        run_step_record(run, {"index": index, "line": 2 + index, "action": action})
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_S + 5))

    assert maintenance.runs_fail_lost() == 1
    run.refresh_from_db()
    assert (run.status, run.error_type) == (Run.Status.FAILED, "worker_lost")
    assert [step["action"] for step in run.trace] == ["goto", "fill"]  # how far it got, for whoever looks into it


def test_a_run_that_beat_again_after_maintenance_looked_is_not_failed(settings, monkeypatch):
    """After a database outage every run looks stale at once; one whose worker beats before the reaper
    writes is alive, and keeps running (and its result)."""
    task = _task()
    run = _running(task, heartbeat_age=timedelta(seconds=settings.RUN_STALE_AFTER_S + 5))
    real_fail = maintenance.run_fail

    def beat_first(run, *args, **kwargs):
        Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())  # the worker got there first
        real_fail(run, *args, **kwargs)

    monkeypatch.setattr(maintenance, "run_fail", beat_first)
    maintenance.runs_fail_lost()
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING


def test_one_failing_repair_does_not_hold_up_the_others(monkeypatch, caplog, queues):
    def broken():
        raise ConnectionError("redis went away")

    monkeypatch.setattr(maintenance, "runs_requeue_missing", broken)
    monkeypatch.setattr(maintenance, "schedules_tick", lambda: 3)
    with caplog.at_level(logging.ERROR, logger="tasks_app.maintenance"):
        done = maintenance.maintenance_tick()
    assert done["scheduled_runs"] == 3 and done["lost_runs_failed"] == 0
    assert "queued_runs_requeued" not in done
    assert "maintenance step queued_runs_requeued failed" in caplog.text


def _healing_event(**config) -> HealingEvent:
    task = _task(**config)
    run = Run.objects.create(task=task, version=task.current_version, status=Run.Status.HEALED, output={"ok": True})
    event = HealingEvent.objects.create(
        task=task, run=run, error_type="element_not_found", original_version=task.current_version,
        status=HealingEvent.Status.HEALING,
    )
    HealingEvent.objects.filter(pk=event.pk).update(updated_at=timezone.now() - LONG_AGO)
    return event


# django-rq enqueues when the database transaction commits: these tests commit.
@pytest.mark.django_db(transaction=True)
def test_a_stalled_heal_is_enqueued_once_while_its_job_waits(queues):
    event = _healing_event()
    assert maintenance.heals_resume_stalled() == 1
    assert maintenance.heals_resume_stalled() == 0  # its job is queued: a slow model is not asked twice
    queue = django_rq.get_queue("healing")
    assert queue.job_ids == [pipeline.heal_generate_job_id(event.pk)]


# django-rq enqueues when the database transaction commits: these tests commit.
@pytest.mark.django_db(transaction=True)
def test_a_heal_whose_generate_job_crashed_is_failed_with_the_error(queues):
    event = _healing_event()
    pipeline.heal_generate_enqueue(event.pk)
    job = Job.fetch(pipeline.heal_generate_job_id(event.pk), connection=queues)
    from rq.worker import SimpleWorker

    def crash(event_id):
        raise RuntimeError("the model server answered 502")

    import healing_app.jobs

    original = healing_app.jobs.heal_generate
    healing_app.jobs.heal_generate = crash
    try:
        SimpleWorker([django_rq.get_queue("healing")], connection=queues).work(burst=True)
    finally:
        healing_app.jobs.heal_generate = original
    assert job.get_status(refresh=True) == "failed"
    assert maintenance.heals_resume_stalled() == 1
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.FAILED
    assert "generating the new version failed: RuntimeError: the model server answered 502" in event.reason


def _worker_dies_running(job: Job) -> None:
    """What RQ sees when the worker running `job` is killed: the job stays STARTED, its execution expires,
    and the started registry's cleanup fails it as abandoned (AbandonedJobError)."""
    from rq.executions import Execution
    from rq.registry import StartedJobRegistry

    queue = django_rq.get_queue("healing")
    queue.remove(job)  # the worker took it off the queue
    with job.connection.pipeline() as pipe:
        job.set_status(JobStatus.STARTED, pipeline=pipe)
        Execution.create(job, ttl=1, pipeline=pipe)
        pipe.execute()
    StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 60)
    assert job.get_status(refresh=True) == JobStatus.FAILED


@pytest.mark.django_db(transaction=True)
def test_a_heal_whose_worker_died_mid_generate_is_resumed_and_fails_only_if_it_dies_again(queues):
    event = _healing_event()
    pipeline.heal_generate_enqueue(event.pk)
    job_id = pipeline.heal_generate_job_id(event.pk)
    _worker_dies_running(Job.fetch(job_id, connection=queues))

    assert maintenance.heals_resume_stalled() == 1
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.HEALING
    assert django_rq.get_queue("healing").job_ids == [job_id]  # enqueued again: generating is idempotent

    _worker_dies_running(Job.fetch(job_id, connection=queues))
    assert maintenance.heals_resume_stalled() == 1
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.FAILED
    assert event.reason == "generating the new version failed: the worker running it died, twice"


def test_a_heal_that_stopped_after_storing_its_version_goes_on_to_validation(queues):
    event = _healing_event()
    version = services.version_create(task=event.task, code=CODE_V2, source=CodeVersion.Source.HEALED,
                                      parent=event.original_version)
    HealingEvent.objects.filter(pk=event.pk).update(new_version=version)
    pipeline.heal_generate(event.pk)
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.VALIDATING
    assert event.validation_run.version == version


def test_the_run_job_timeout_outlasts_the_longest_legitimate_run(settings, queues, django_capture_on_commit_callbacks):
    task = _task()
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_enqueue(task=task)
    job = Job.fetch(services.run_job_id(run.pk), connection=queues)
    assert job.timeout >= settings.RUN_WALL_TIMEOUT_S + HANDOVER_BUDGET_S + RESULT_STORE_RETRY_S


@pytest.mark.django_db(transaction=True)
def test_a_committed_change_is_not_undone_by_a_failure_to_announce_it(monkeypatch, caplog):
    """With Redis away, the live update fails after the commit; the caller must not see an error for a
    change that happened (run_finish would retry it, and find the run already finished)."""
    from django.db import transaction

    from healing_app import broadcast
    from healing_app.notify import notify

    def redis_away(**kwargs):
        raise ConnectionError("Redis is restarting")

    monkeypatch.setattr(broadcast, "publish", redis_away)
    task = _task()
    with caplog.at_level(logging.ERROR):
        with transaction.atomic():
            Run.objects.create(task=task, version=task.current_version, status=Run.Status.SUCCEEDED)
            notify(event_type="run.finished", task_id=task.pk, data={"task": task.pk})
    assert Run.objects.filter(task=task, status=Run.Status.SUCCEEDED).count() == 1
    assert "Redis is restarting" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_run_started_while_redis_is_away_is_accepted_and_enqueued_once_it_is_back(
    client, member, monkeypatch, queues, caplog
):
    """Answering 500 for a run that was created would have the caller retry, and the run happen twice."""
    from redis import Redis
    from rq import Queue

    from tasks_app.api_keys import api_key_create

    _, key = api_key_create(user=member, name="tests")
    task = _task()
    real_get_queue = django_rq.get_queue
    monkeypatch.setattr(django_rq, "get_queue", lambda name="default", **kw: Queue(name, connection=Redis(port=1)))
    with caplog.at_level(logging.ERROR):
        response = client.post(f"/api/v1/tasks/{task.pk}/runs", content_type="application/json",
                               headers={"anchor-api-key": key})
    assert response.status_code == 202, response.content
    run = Run.objects.get(task=task)
    assert (response.json()["id"], run.status) == (run.pk, Run.Status.QUEUED)
    assert "Connection refused" in caplog.text or "Error 111" in caplog.text

    monkeypatch.setattr(django_rq, "get_queue", real_get_queue)  # Redis is back
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - LONG_AGO)
    assert maintenance.runs_requeue_missing() == 1
    assert django_rq.get_queue("runs").job_ids == [services.run_job_id(run.pk)]


def _generating_task(settings):
    from tasks_app.models import Task

    settings.OPENAI_API_KEY = "sk-test"  # an LLM is configured: a task without code is written from its prompt
    task = services.task_create(name="shop", prompt="Find the price", params={"base_url": "http://127.0.0.1:9"})
    assert task.code_status == Task.CodeStatus.GENERATING
    Task.objects.filter(pk=task.pk).update(updated_at=timezone.now() - LONG_AGO)
    return task


@pytest.mark.django_db(transaction=True)
def test_a_generation_whose_job_was_lost_is_enqueued_again_once(settings, queues):
    from healing_app import task_generation

    task = _generating_task(settings)
    job_id = task_generation.task_generate_job_id(task.pk)
    queue = django_rq.get_queue("healing")
    assert queue.job_ids == [job_id]
    queue.empty()  # Redis restarted without persistence

    assert maintenance.generations_resume_stalled() == 1
    assert maintenance.generations_resume_stalled() == 0  # queued again: a slow model is not asked twice
    assert queue.job_ids == [job_id]


@pytest.mark.django_db(transaction=True)
def test_a_generation_whose_job_crashed_leaves_the_task_needing_code_with_the_error(settings, queues, monkeypatch):
    from rq.worker import SimpleWorker

    from healing_app import task_generation
    from tasks_app.models import AuditLog, Task

    task = _generating_task(settings)

    def crash(task_id):
        raise RuntimeError("the model server answered 502")

    monkeypatch.setattr(task_generation, "task_generate", crash)
    SimpleWorker([django_rq.get_queue("healing")], connection=queues).work(burst=True)

    assert maintenance.generations_resume_stalled() == 1
    task.refresh_from_db()
    assert task.code_status == Task.CodeStatus.NEEDS_CODE
    entry = AuditLog.objects.get(action="task.generate", object_id=task.pk)
    assert entry.data["reason"] == "writing version 1 from the prompt failed: RuntimeError: the model server answered 502"
    assert maintenance.generations_resume_stalled() == 0


@pytest.mark.django_db(transaction=True)
def test_a_runs_heartbeat_leaves_no_database_connection_behind():
    """Connections are persistent (CONN_MAX_AGE); the heartbeat thread's own must end with it, or a worker holds
    one more PostgreSQL session per run it ever did."""
    import threading

    from django.db import connection

    from tasks_app.execution import CANCEL_POLL_S, _Heartbeat

    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL's sessions")

    def sessions() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            return cursor.fetchone()[0]

    run = _running(_task(), heartbeat_age=timedelta(seconds=0))
    before = sessions()
    for _ in range(3):
        with _Heartbeat(run.pk, threading.Event()):
            time.sleep(CANCEL_POLL_S * 1.5)  # it has looked for a cancel in the database at least once

    deadline = time.monotonic() + 5  # a closed session's server process may linger for a moment
    while sessions() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sessions() == before

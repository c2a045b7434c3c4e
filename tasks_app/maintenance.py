"""Recovery from faults: runs whose worker died, runs whose queue entry was lost, heals and code
generations that stalled.

Every worker calls `maintenance_tick()` every few seconds (see worker.py). Each step uses conditional
updates, so several workers running it at once do each repair exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import django_rq
from django.conf import settings
from django.utils import timezone
from rq.exceptions import AbandonedJobError
from rq.job import JobStatus

from tasks_app.execution import run_fail
from tasks_app.models import Run
from tasks_app.rq_jobs import LIVE_JOB_STATES, job_and_status, job_is_live
from tasks_app.scheduling import schedules_tick
from tasks_app.services import run_job_enqueue, run_job_id

logger = logging.getLogger(__name__)


def maintenance_tick() -> dict[str, int]:
    """Every repair, each on its own: one that fails (Redis away, a row that cannot be written) is logged
    and tried again next tick, and does not hold up the others."""
    from healing_app.webhooks import webhooks_recover

    done: dict[str, int] = {}
    steps = {
        "lost_runs_failed": runs_fail_lost,
        "queued_runs_requeued": runs_requeue_missing,
        "stalled_heals_resumed": heals_resume_stalled,
        "stalled_generations_resumed": generations_resume_stalled,
        "scheduled_runs": schedules_tick,
        "webhooks": webhooks_recover,
    }
    for name, step in steps.items():
        try:
            result = step()
        except Exception:
            logger.exception("maintenance step %s failed; it runs again next tick", name)
            continue
        done.update(result if isinstance(result, dict) else {name: result})
    return done


def runs_fail_lost() -> int:
    """A running run without a heartbeat for RUN_STALE_AFTER_S lost its worker: fail it, with the reason.

    It is not retried: it may have submitted a form before the worker died, and doing that twice is worse
    than a clear failure that a person (or the next scheduled run) can repeat.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_S)
    count = 0
    for run in Run.objects.filter(status=Run.Status.RUNNING, heartbeat_at__lt=cutoff).select_related("task"):
        run_fail(
            run, f"the worker running it stopped (no heartbeat for {settings.RUN_STALE_AFTER_S} s)",
            error_type="worker_lost", stale_before=cutoff,
        )
        count += 1
    if count:
        logger.warning("failed %d run(s) whose worker was lost", count)
    return count


def runs_requeue_missing() -> int:
    """A queued run whose RQ job no longer exists (Redis restarted without persistence) is enqueued again."""
    cutoff = timezone.now() - timedelta(seconds=settings.RUN_REQUEUE_AFTER_S)
    connection = django_rq.get_connection("runs")
    count = 0
    for run_id in Run.objects.filter(status=Run.Status.QUEUED, created_at__lt=cutoff).values_list("pk", flat=True)[:500]:
        if not job_is_live(run_job_id(run_id), connection):
            run_job_enqueue(run_id)
            count += 1
    if count:
        logger.warning("re-enqueued %d queued run(s) whose job was lost", count)
    return count


def heals_resume_stalled() -> int:
    """A heal still `healing` a while after its run healed has lost its generate job (Redis restarted) or
    its worker died mid-job (RQ marks that job failed, "abandoned"): enqueue the job again; it picks up
    where it stopped. A job that is still queued or running is left alone, so a slow model is not asked
    twice; one that raised, or whose worker died on it twice, fails the heal with its error, rather than
    being retried for ever."""
    from healing_app import pipeline
    from healing_app.models import HealingEvent

    cutoff = timezone.now() - timedelta(seconds=settings.RUN_REQUEUE_AFTER_S)
    stalled = HealingEvent.objects.filter(
        status=HealingEvent.Status.HEALING, run__status=Run.Status.HEALED, updated_at__lt=cutoff
    ).values_list("pk", flat=True)[:100]
    connection = django_rq.get_connection("healing")
    count = 0
    for event_id in stalled:
        count += _resume_or_close(
            pipeline.heal_generate_job_id(event_id), connection, what="generating the new version",
            enqueue=lambda after_worker_died, event_id=event_id: pipeline.heal_generate_enqueue(
                event_id, after_worker_died=after_worker_died),
            close=lambda reason, event_id=event_id: pipeline.heal_fail(event_id, reason),
        )
    if count:
        logger.warning("resumed or closed %d stalled heal(s)", count)
    return count


def generations_resume_stalled() -> int:
    """A task still "generating" its version 1 a while after it was created has lost its job (Redis
    restarted, or was away when the task was created) or its worker died mid-job: as for heals, enqueue
    the job again, or close the generation (the task needs code, and the audit log says why)."""
    from healing_app import task_generation
    from tasks_app.models import Task

    cutoff = timezone.now() - timedelta(seconds=settings.RUN_REQUEUE_AFTER_S)
    stalled = Task.objects.filter(code_status=Task.CodeStatus.GENERATING, updated_at__lt=cutoff)
    connection = django_rq.get_connection("healing")
    count = 0
    for task in stalled[:100]:
        count += _resume_or_close(
            task_generation.task_generate_job_id(task.pk), connection, what="writing version 1 from the prompt",
            enqueue=lambda after_worker_died, task=task: task_generation.task_generate_enqueue(
                task=task, after_worker_died=after_worker_died),
            close=lambda reason, task=task: task_generation.task_generate_fail(task.pk, reason),
        )
    if count:
        logger.warning("resumed or closed %d stalled code generation(s)", count)
    return count


def _resume_or_close(job_id: str, connection, *, what: str, enqueue: Callable[[bool], None],
                     close: Callable[[str], None]) -> bool:
    """Move on stalled work by the state of its job. A job still queued or running is left alone, so a slow
    model is not asked twice (False). A lost job is enqueued again; one whose worker died on it is enqueued
    once more; one that raised, or whose worker died on it twice, closes the work with its error rather
    than being retried for ever."""
    from healing_app.pipeline import RESUMED_AFTER_WORKER_DIED

    job, status = job_and_status(job_id, connection)
    if status in LIVE_JOB_STATES:
        return False
    if status == JobStatus.FAILED:
        result = job.latest_result()
        error = (result.exc_string if result else "") or "unknown error"
        if AbandonedJobError.__name__ not in error:
            close(f"{what} failed: " + error.strip().splitlines()[-1][:300])
        elif job.meta.get(RESUMED_AFTER_WORKER_DIED):
            close(f"{what} failed: the worker running it died, twice")
        else:
            enqueue(True)
    else:
        enqueue(False)
    return True

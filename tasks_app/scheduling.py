"""Scheduled runs: a task whose cron `schedule` matches a minute gets exactly one run for that minute,
however many workers tick.

Every worker's maintenance pass (every 15 s, see worker.py) calls `schedules_tick()`. A tick looks at each
minute since the previous tick of any worker (at most CATCH_UP_MINUTES back, so a minute is not skipped
while every worker is busy with a long run) and fires each task whose schedule matches one of them.
Schedules are read in UTC (the project's TIME_ZONE).

Firing claims the (task, minute) pair twice:
1. in Redis with SET NX: cheap, shared by every worker, and it settles almost every race;
2. in the database, under a lock on the task row: the "run.scheduled" audit entry of that minute is looked
   up and written in the same transaction as the run, so even a Redis restart (which forgets the claims)
   cannot make a minute fire twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import django_rq
from django.db import transaction
from django.utils import timezone

from tasks_app.audit import Actor, audit_log
from tasks_app.cron import CronError, cron_matches, next_fire, parse_cron
from tasks_app.models import AuditLog, Run, Task
from tasks_app.services import run_enqueue

logger = logging.getLogger(__name__)
CATCH_UP_MINUTES = 5
CLAIM_TTL_S = 2 * 24 * 3600
# A claim whose worker died before committing the run expires this soon, so a later tick fires the minute: the
# ticks keep looking at a minute whose claim is pending (they do not move the last tick past it).
CLAIM_PENDING_TTL_S = 60
KEY_PREFIX = "anchor:schedule"
CLAIM_PENDING, CLAIM_DONE = b"pending", b"done"
SCHEDULER = Actor(via="schedule")


def schedules_tick(*, now: datetime | None = None) -> int:
    """Enqueue the runs of every scheduled task due in the minutes since the last tick; returns how many."""
    connection = django_rq.get_connection("runs")
    current = _minute(now or timezone.now())
    minutes = _minutes_to_check(connection, current)
    fired = 0
    pending: list[datetime] = []
    tasks = Task.objects.exclude(schedule="").filter(current_version__isnull=False).only(
        "id", "schedule", "created_at", "schedule_changed_at"
    )
    for task in tasks.iterator():
        try:
            parse_cron(task.schedule)
        except CronError as exc:  # refused on input; only a hand-edited row gets here
            logger.warning("task %s has an invalid schedule %r: %s", task.pk, task.schedule, exc)
            continue
        # As cron does: a minute that began before the schedule was saved is not its to fire (a daily "37 17"
        # saved at 17:37:34 first runs tomorrow, not at once).
        scheduled_since = task.schedule_changed_at or task.created_at
        for minute in minutes:
            if minute < scheduled_since or not cron_matches(task.schedule, minute):
                continue
            if schedule_fire(task=task, minute=minute):
                fired += 1
            elif connection.get(_claim_key(task, minute)) == CLAIM_PENDING:
                pending.append(minute)  # being fired by another worker, or its worker died doing so
    connection.set(f"{KEY_PREFIX}:last-tick", min([*pending, current]).isoformat(), ex=CLAIM_TTL_S)
    return fired


def schedule_next_run(task: Task, *, now: datetime | None = None) -> datetime | None:
    """When the schedule will next start `task`: None without a schedule, without code to run (the tick skips
    such tasks), or for a schedule that never fires."""
    if not task.schedule or task.current_version_id is None:
        return None
    try:
        return next_fire(task.schedule, (now or timezone.now()).astimezone(UTC))
    except CronError:
        return None


def schedule_fire(*, task: Task, minute: datetime) -> Run | None:
    """Enqueue the run of `task` for `minute`, unless another worker (or an earlier tick) already did."""
    minute = _minute(minute)
    stamp = minute.isoformat()
    connection = django_rq.get_connection("runs")
    claim = _claim_key(task, minute)
    if not connection.set(claim, CLAIM_PENDING, nx=True, ex=CLAIM_PENDING_TTL_S):
        return None
    try:
        with transaction.atomic():
            task = Task.objects.select_for_update().get(pk=task.pk)
            already = AuditLog.objects.filter(
                action="run.scheduled", object_type="task", object_id=task.pk, data__minute=stamp
            ).exists()
            run = None
            if not already and task.current_version_id is not None:
                run = run_enqueue(task=task, actor=SCHEDULER)
                audit_log(
                    actor=SCHEDULER, action="run.scheduled", obj=task,
                    data={"minute": stamp, "run": run.pk, "schedule": task.schedule},
                )
    except Task.DoesNotExist:
        return None
    except Exception:
        connection.delete(claim)  # not fired after all: let the next tick try this minute again
        raise
    # Decided in the database: from now on the claim keeps this minute's later ticks away from it.
    connection.set(claim, CLAIM_DONE, ex=CLAIM_TTL_S)
    if run is not None:
        logger.info("scheduled run %s of task %s for %s", run.pk, task.pk, stamp)
    return run


def _claim_key(task: Task, minute: datetime) -> str:
    return f"{KEY_PREFIX}:{task.pk}:{minute:%Y%m%d%H%M}"


def _minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _minutes_to_check(connection, current: datetime) -> list[datetime]:
    """The minutes since the previous tick (that one's own minute included: it may have run early in it),
    at most CATCH_UP_MINUTES back; just the current minute on a new installation's first tick."""
    raw = connection.get(f"{KEY_PREFIX}:last-tick")
    if raw is None:
        # Redis lost the last tick (it restarted): the minute of the last scheduled run is the next best
        # lower bound, so the minutes of the outage are still caught up. None at all: a new installation.
        raw = (
            AuditLog.objects.filter(action="run.scheduled").order_by("-created_at")
            .values_list("data__minute", flat=True).first()
        )
    start = current
    if raw:
        try:
            previous = datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)
            start = max(min(previous, current), current - timedelta(minutes=CATCH_UP_MINUTES))
        except ValueError:
            pass
    count = int((current - start).total_seconds() // 60) + 1
    return [start + timedelta(minutes=i) for i in range(count)]


__all__ = ["CATCH_UP_MINUTES", "schedule_fire", "schedule_next_run", "schedules_tick"]

"""Scheduled runs: one run per task and matching minute, however many workers tick, even across a Redis
restart; missed minutes caught up (a bounded number of them)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import django_rq
import pytest

from tasks_app import scheduling, services
from tasks_app.models import AuditLog, Run, Task

CODE = '''def run(page, params):
    return {"ok": True}
'''
T0 = datetime(2031, 5, 6, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def own_claims(monkeypatch):
    """Our own Redis key prefix: runs of the test suite never share schedule claims."""
    monkeypatch.setattr(scheduling, "KEY_PREFIX", f"test:schedule:{uuid.uuid4().hex}")


@pytest.fixture
def no_leftover_jobs():
    """Jobs the scheduled runs pushed to the tests' Redis are removed afterwards (other runs share it)."""
    yield
    queue = django_rq.get_queue("runs")
    for run_id in Run.objects.values_list("pk", flat=True):
        job_id = services.run_job_id(run_id)
        queue.remove(job_id)
        queue.connection.delete(f"rq:job:{job_id}")


def scheduled_task(schedule: str, *, born: datetime = T0 - timedelta(days=1), code: str | None = CODE) -> Task:
    task = services.task_create(name=f"scheduled {schedule}", prompt="Open the report", code=code, schedule=schedule)
    Task.objects.filter(pk=task.pk).update(created_at=born)
    return Task.objects.get(pk=task.pk)


def scheduled_minutes(task: Task) -> list[str]:
    return sorted(
        AuditLog.objects.filter(action="run.scheduled", object_id=task.pk).values_list("data__minute", flat=True)
    )


@pytest.mark.django_db
def test_a_task_due_this_minute_gets_one_run_from_the_scheduler():
    task = scheduled_task("*/15 * * * *")
    assert scheduling.schedules_tick(now=T0 + timedelta(seconds=7)) == 1
    run = Run.objects.get(task=task)
    assert run.status == Run.Status.QUEUED and run.version == task.current_version
    assert scheduled_minutes(task) == [T0.isoformat()]
    assert AuditLog.objects.get(action="run.scheduled").actor_label == "system via schedule"


@pytest.mark.django_db
def test_a_task_that_is_not_due_gets_no_run():
    scheduled_task("5 * * * *")
    assert scheduling.schedules_tick(now=T0) == 0
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_more_ticks_in_the_same_minute_fire_nothing_more():
    task = scheduled_task("* * * * *")
    fired = [scheduling.schedules_tick(now=T0 + timedelta(seconds=s)) for s in (0, 15, 30, 45)]
    assert fired == [1, 0, 0, 0]
    assert Run.objects.filter(task=task).count() == 1


@pytest.mark.django_db
def test_the_database_prevents_a_second_run_after_redis_forgot_the_claims():
    task = scheduled_task("* * * * *")
    assert scheduling.schedules_tick(now=T0) == 1
    connection = django_rq.get_connection("runs")
    for key in connection.scan_iter(f"{scheduling.KEY_PREFIX}:*"):  # what a Redis restart does
        connection.delete(key)
    assert scheduling.schedules_tick(now=T0 + timedelta(seconds=30)) == 0
    assert Run.objects.filter(task=task).count() == 1
    # The Redis claim is taken again, so later ticks of this minute stop before the database.
    assert connection.exists(f"{scheduling.KEY_PREFIX}:{task.pk}:{T0:%Y%m%d%H%M}")


@pytest.mark.django_db(transaction=True)
def test_workers_ticking_at_once_fire_each_task_minute_once(no_leftover_jobs):
    from django.db import connection

    if connection.vendor == "sqlite":
        # The in-memory test database of SQLite refuses concurrent writers outright ("table is locked");
        # CI runs this on PostgreSQL, as production does. tests/reliability/test_scheduled_runs.py covers
        # real worker processes.
        pytest.skip("needs a database that takes concurrent writers (PostgreSQL)")
    tasks = [scheduled_task("* * * * *") for _ in range(3)]
    barrier = threading.Barrier(6)
    errors: list[Exception] = []

    def worker() -> None:
        from django.db import connection

        try:
            barrier.wait()
            scheduling.schedules_tick(now=T0 + timedelta(seconds=20))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    for task in tasks:
        assert Run.objects.filter(task=task).count() == 1
        assert scheduled_minutes(task) == [T0.isoformat()]
    # The runs are on the queue for the workers, one job each.
    queued = set(django_rq.get_queue("runs").job_ids)
    assert {services.run_job_id(run.pk) for run in Run.objects.all()} <= queued


@pytest.mark.django_db
def test_minutes_missed_while_every_worker_was_busy_are_caught_up_at_most_five_back():
    task = scheduled_task("* * * * *")
    assert scheduling.schedules_tick(now=T0) == 1
    # No worker ticked for ten minutes (all busy with long runs, or all stopped).
    assert scheduling.schedules_tick(now=T0 + timedelta(minutes=10, seconds=3)) == scheduling.CATCH_UP_MINUTES + 1
    assert scheduled_minutes(task) == [T0.isoformat()] + [
        (T0 + timedelta(minutes=m)).isoformat() for m in range(10 - scheduling.CATCH_UP_MINUTES, 11)
    ]


@pytest.mark.django_db
def test_a_late_tick_catches_up_the_minute_it_missed():
    task = scheduled_task("1 10 * * *")  # 10:01 only
    scheduling.schedules_tick(now=T0 + timedelta(seconds=50))  # 10:00
    assert scheduling.schedules_tick(now=T0 + timedelta(minutes=2, seconds=5)) == 1  # 10:02, 10:01 was missed
    assert scheduled_minutes(task) == [(T0 + timedelta(minutes=1)).isoformat()]


@pytest.mark.django_db
def test_minutes_before_the_task_existed_are_not_fired():
    scheduling.schedules_tick(now=T0)  # an earlier tick, so the next one looks back
    task = scheduled_task("* * * * *", born=T0 + timedelta(minutes=3, seconds=30))
    scheduling.schedules_tick(now=T0 + timedelta(minutes=4, seconds=1))
    # 10:03 began before the task was saved at 10:03:30: its first minute is 10:04, as with cron.
    assert scheduled_minutes(task) == [(T0 + timedelta(minutes=4)).isoformat()]


@pytest.mark.django_db
def test_tasks_without_code_or_without_a_schedule_are_left_alone():
    scheduled_task("", code=CODE)
    scheduled_task("* * * * *", code=None)
    broken = scheduled_task("* * * * *")
    Task.objects.filter(pk=broken.pk).update(schedule="not a cron")  # refused by the services; a hand edit
    assert scheduling.schedules_tick(now=T0) == 0
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_the_workers_maintenance_tick_runs_the_scheduler(monkeypatch):
    from tasks_app import maintenance

    monkeypatch.setattr(scheduling, "timezone", _FixedNow(T0))
    task = scheduled_task("0 10 * * *")
    assert maintenance.maintenance_tick()["scheduled_runs"] == 1
    assert Run.objects.filter(task=task).count() == 1


class _FixedNow:
    def __init__(self, moment: datetime):
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


@pytest.mark.parametrize(
    ("expression", "day", "fires"),
    [
        ("0 9 1 * 1", 1, True),  # the 1st (a Thursday): either day field is enough when both are set
        ("0 9 1 * 1", 5, True),  # a Monday
        ("0 9 1 * 1", 6, False),
        ("0 9 * * 1", 5, True),  # "*" for the day of the month: the weekday decides
        ("0 9 * * 1", 1, False),
        ("0 9 1 * *", 1, True),  # "*" for the weekday: the day of the month decides
        ("0 9 1 * *", 5, False),
        ("0 9 */2 * 1", 7, False),  # "*/2" starts with "*", as in cron: both must match (7th: odd, Wednesday)
        ("0 9 */2 * 1", 5, True),
    ],
)
def test_day_of_month_and_day_of_week_combine_as_in_cron(expression, day, fires):
    from tasks_app.cron import cron_matches

    assert cron_matches(expression, datetime(2031, 5, day, 9, 0, tzinfo=UTC)) is fires


@pytest.mark.parametrize(
    ("expression", "after", "first"),
    [
        ("*/15 * * * *", datetime(2031, 5, 1, 9, 7), datetime(2031, 5, 1, 9, 15)),
        ("30 8 * * *", datetime(2031, 5, 1, 9, 0), datetime(2031, 5, 2, 8, 30)),
        ("0 9 29 2 *", datetime(2031, 3, 1), datetime(2032, 2, 29, 9, 0)),  # the next leap day
        ("0 0 1 1 *", datetime(2031, 12, 31, 23, 59), datetime(2032, 1, 1, 0, 0)),
    ],
)
def test_next_fire_is_the_first_matching_minute_after(expression, after, first):
    from tasks_app.cron import next_fire

    assert next_fire(expression, after) == first


@pytest.mark.parametrize("expression", ["0 9 30 2 *", "0 9 31 4,6,9,11 *"])
def test_a_schedule_on_a_date_that_does_not_exist_never_fires(expression):
    from tasks_app.cron import CronError, next_fire

    with pytest.raises(CronError, match="never fires"):
        next_fire(expression, datetime(2031, 1, 1))


@pytest.mark.django_db
def test_a_redis_restart_between_ticks_skips_no_minute():
    task = scheduled_task("* * * * *")
    assert scheduling.schedules_tick(now=T0 + timedelta(seconds=5)) == 1
    connection = django_rq.get_connection("runs")
    for key in connection.scan_iter(f"{scheduling.KEY_PREFIX}:*"):  # Redis restarted, 10:01 had no tick
        connection.delete(key)
    assert scheduling.schedules_tick(now=T0 + timedelta(minutes=2, seconds=5)) == 2
    assert scheduled_minutes(task) == [(T0 + timedelta(minutes=m)).isoformat() for m in range(3)]


@pytest.mark.django_db
def test_the_ticks_of_other_workers_keep_looking_at_a_minute_whose_firing_worker_died(monkeypatch):
    """Worker A dies between its Redis claim and its commit; worker B ticks on. B must not move its window past
    that minute while the claim waits to expire, or the minute is never fired."""
    task = scheduled_task("* * * * *")
    monkeypatch.setattr(scheduling, "CLAIM_PENDING_TTL_S", 2)
    scheduling.schedules_tick(now=T0 - timedelta(seconds=10))  # 09:59

    def killed(**kwargs):
        raise KeyboardInterrupt  # like SIGKILL: nothing of schedule_fire's own clean-up runs

    real_enqueue = scheduling.run_enqueue
    monkeypatch.setattr(scheduling, "run_enqueue", killed)
    with pytest.raises(KeyboardInterrupt):
        scheduling.schedules_tick(now=T0 + timedelta(seconds=5))  # A, firing 10:00
    monkeypatch.setattr(scheduling, "run_enqueue", real_enqueue)
    for second in (20, 35, 50, 62):  # B, while A's claim holds: into 10:01
        scheduling.schedules_tick(now=T0 + timedelta(seconds=second))
    time.sleep(2.2)  # A's claim has expired
    for second in (77, 92, 122):
        scheduling.schedules_tick(now=T0 + timedelta(seconds=second))
    minutes = [(T0 + timedelta(minutes=m)).isoformat() for m in (-1, 0, 1, 2)]
    assert scheduled_minutes(task) == minutes


@pytest.mark.django_db
def test_a_claim_left_by_a_worker_killed_while_firing_expires_and_the_minute_fires(monkeypatch):
    task = scheduled_task("* * * * *")
    monkeypatch.setattr(scheduling, "CLAIM_PENDING_TTL_S", 1)

    def killed(**kwargs):
        raise KeyboardInterrupt  # like SIGKILL, nothing of schedule_fire's own clean-up runs

    real_enqueue = scheduling.run_enqueue
    monkeypatch.setattr(scheduling, "run_enqueue", killed)
    with pytest.raises(KeyboardInterrupt):
        scheduling.schedule_fire(task=task, minute=T0)
    monkeypatch.setattr(scheduling, "run_enqueue", real_enqueue)
    assert scheduling.schedule_fire(task=task, minute=T0) is None  # the claim still holds
    time.sleep(1.2)
    assert scheduling.schedule_fire(task=task, minute=T0) is not None
    assert scheduled_minutes(task) == [T0.isoformat()]


@pytest.mark.django_db
def test_a_scheduled_runs_page_says_the_schedule_started_it_and_for_which_minute(client, django_user_model, no_leftover_jobs):
    task = scheduled_task("1 10 * * *")
    scheduling.schedules_tick(now=T0 + timedelta(minutes=1, seconds=3))
    scheduled = Run.objects.get(task=task)
    asked = services.run_create(task=task)
    client.force_login(django_user_model.objects.create_user("sam"))

    page = client.get(f"/runs/{scheduled.pk}/").content.decode()
    other = client.get(f"/runs/{asked.pk}/").content.decode()

    assert "the task's schedule (<span class=\"mono\">1 10 * * *</span>), for" in page
    assert "2031-05-06 10:01</time>" in page
    assert "the task's schedule" not in other
    # The schedule as it was when it fired, not as it is now.
    services.task_update(task=task, schedule="30 12 * * 1")
    assert "(<span class=\"mono\">1 10 * * *</span>)" in client.get(f"/runs/{scheduled.pk}/").content.decode()


@pytest.mark.django_db
def test_a_minute_begun_before_a_schedule_was_changed_is_not_fired(no_leftover_jobs, monkeypatch):
    task = scheduled_task("")  # made a day ago, without a schedule
    scheduling.schedules_tick(now=T0)  # an earlier tick, so the next ones look back
    monkeypatch.setattr(services.timezone, "now", lambda: T0 + timedelta(seconds=34))
    services.task_update(task=task, schedule="0 10 * * *")  # 10:00 began 34 s ago
    monkeypatch.undo()
    assert scheduling.schedules_tick(now=T0 + timedelta(seconds=45)) == 0
    # Its first minute is the next day's 10:00.
    assert scheduling.schedules_tick(now=T0 + timedelta(days=1, seconds=5)) == 1
    assert scheduled_minutes(task) == [(T0 + timedelta(days=1)).isoformat()]


@pytest.mark.django_db
def test_the_task_page_says_when_the_schedule_runs_the_task_next(client, django_user_model):
    assert scheduling.schedule_next_run(scheduled_task("30 12 * * *"), now=T0) == T0.replace(hour=12, minute=30)
    assert scheduling.schedule_next_run(scheduled_task(""), now=T0) is None
    client.force_login(django_user_model.objects.create_user("sam"))

    task = scheduled_task("*/15 * * * *")
    before = scheduling.schedule_next_run(task)
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    after = scheduling.schedule_next_run(task)  # the same, unless a quarter of an hour struck meanwhile
    assert before.minute % 15 == 0
    assert any(
        'Runs on its schedule <code>*/15 * * * *</code> (cron, UTC): next at '
        f'<time datetime="{upcoming.isoformat()}">{upcoming:%Y-%m-%d %H:%M}</time> UTC' in page
        for upcoming in (before, after)
    )

    waiting = scheduled_task("*/15 * * * *", code=None)
    assert "Runs on its schedule <code>*/15 * * * *</code> (cron, UTC), once it has code" in (
        client.get(f"/tasks/{waiting.pk}/").content.decode()
    )
    assert 'id="schedule"' not in client.get(f"/tasks/{scheduled_task('').pk}/").content.decode()

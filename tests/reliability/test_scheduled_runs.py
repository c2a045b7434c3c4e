"""Scheduled runs on two workers, through whatever faults the other scenarios caused meanwhile (killed
workers, a Redis restart, a database outage): a task scheduled every minute fired exactly once for each
minute since it was created, with no gap and no duplicate."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.reliability

MIN_MINUTES = 2  # run alone, the test waits for this many fires


def _minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def test_a_task_scheduled_every_minute_fires_once_per_minute_across_workers_and_faults(c):
    task = c.scheduled_task
    c.wait_for(f"{MIN_MINUTES} scheduled fires", lambda: len(c.call("schedule_report", task)["minutes"]) >= MIN_MINUTES or None,
               MIN_MINUTES * 60 + 45)
    # Every minute that ended more than 20 s ago has fired (maintenance passes every 15 s).
    due = _minute(datetime.now(UTC) - timedelta(seconds=20))

    def caught_up():
        report = c.call("schedule_report", task)
        fired = {datetime.fromisoformat(m) for m in report["minutes"]}
        return max(fired) >= due and report

    report = c.wait_for("the schedule to be caught up", caught_up, 90)
    fired = [datetime.fromisoformat(m) for m in report["minutes"]]
    # The first minute to fire is the first to begin once the task exists (a minute begun before is not its own).
    created = datetime.fromisoformat(report["created_at"])
    born = _minute(created) if created == _minute(created) else _minute(created) + timedelta(minutes=1)

    duplicates = {minute: n for minute, n in Counter(fired).items() if n > 1}
    assert not duplicates, f"minutes fired more than once: {duplicates}"
    expected = [born + timedelta(minutes=i) for i in range(int((max(fired) - born).total_seconds() // 60) + 1)]
    assert sorted(fired) == expected, f"gaps: {sorted(set(expected) - set(fired))}"
    # One run per fired minute, nothing else.
    assert len(report["runs"]) == len(fired)
    # Runs fired before the last minute have all finished (runs never stay queued, whatever happened).
    deadline = time.monotonic() + 120
    while True:
        report = c.call("schedule_report", task)
        open_runs = [r for r in report["runs"] if r["status"] in ("queued", "running")
                     and datetime.fromisoformat(r["created_at"]) < datetime.now(UTC) - timedelta(seconds=90)]
        if not open_runs or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not open_runs, open_runs

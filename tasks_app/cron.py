"""Cron-style schedules (minute hour day-of-month month day-of-week). Pure; no Django."""

from __future__ import annotations

from datetime import datetime, timedelta

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))


class CronError(ValueError):
    pass


def parse_cron(expression: str) -> list[frozenset[int]]:
    parts = expression.split()
    if len(parts) != 5:
        raise CronError("needs five fields: minute hour day-of-month month day-of-week")
    return [_parse_field(part, name, low, high) for part, (name, low, high) in zip(parts, _FIELDS)]


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                start, end = (int(x) for x in base.split("-", 1))
            else:
                start = end = int(base)
        except ValueError:
            raise CronError(f"{name}: {item!r} is not a number, range or */step") from None
        if step < 1 or start < low or end > high or start > end:
            raise CronError(f"{name}: {item!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def cron_matches(expression: str, moment: datetime) -> bool:
    return _matches(parse_cron(expression), _either_day_field(expression), moment)


def _either_day_field(expression: str) -> bool:
    # As in cron: when both day fields are restricted, either one is enough ("0 9 1 * 1" is the 1st
    # and every Monday); when one of them is "*", the other decides.
    _, _, day_field, _, weekday_field = expression.split()
    return not (day_field.startswith("*") or weekday_field.startswith("*"))


def _matches(fields: list[frozenset[int]], either_day_field: bool, moment: datetime) -> bool:
    minute, hour, day, month, weekday = fields
    # cron counts Sunday as 0; Python's weekday() counts Monday as 0.
    day_matches = moment.day in day
    weekday_matches = (moment.weekday() + 1) % 7 in weekday
    days_match = (day_matches or weekday_matches) if either_day_field else (day_matches and weekday_matches)
    return moment.minute in minute and moment.hour in hour and moment.month in month and days_match


def next_fire(expression: str, after: datetime) -> datetime:
    """The first minute after `after` the schedule fires; CronError if it never does ("0 0 30 2 *")."""
    fields, either = parse_cron(expression), _either_day_field(expression)
    minutes, hours = sorted(fields[0]), sorted(fields[1])
    start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    for _ in range(8 * 366):  # every day of eight years: past any leap day, even across a skipped 2100
        if _matches(fields, either, day.replace(hour=hours[0], minute=minutes[0])):
            for hour in hours:
                for minute in minutes:
                    moment = day.replace(hour=hour, minute=minute)
                    if moment >= start:
                        return moment
        day += timedelta(days=1)
    raise CronError("never fires (no such date)")

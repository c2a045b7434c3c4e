"""Reading healing events for the dashboard: the filtered, keyset-paginated review queue, and one event.

The queue must stay fast with 100k+ events, so it never counts the filtered rows, never loads the
big columns (screenshot, traces), and pages with a (created_at, id) cursor instead of OFFSET: page
200 costs what page 1 costs, and rows inserted live do not shift the next page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass

from django import forms
from django.core.cache import cache
from django.db.models import (
    BooleanField,
    DateField,
    ExpressionWrapper,
    FloatField,
    Func,
    Q,
    QuerySet,
)
from django.utils import timezone

from healing_app.models import HealingEvent
from tasks_app.keyset import newer_than, older_than
from tasks_app.runner.protocol import ERROR_TYPES

PAGE_SIZE = 50
OVERVIEW_CACHE_S = 60

# The columns a queue row shows; everything else (screenshots, traces, diffs) stays in the database.
_ROW_FIELDS = (
    "id",
    "created_at",
    "status",
    "error_type",
    "agent_kind",
    "root_cause",
    "reason",  # a heal that ended without a root cause says why instead
    "attempt",
    "task__id",
    "task__name",
    "task__current_version",  # a heal of another version can no longer be approved: its row says so
    "original_version",
    "new_version__number",
    "original_version__number",
)


class QueueFilterForm(forms.Form):
    """The queue's filters, read from the query string. Bad values are reported, never a 500."""

    q = forms.CharField(required=False, max_length=200, label="Search", help_text="Event id, task name or root cause")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *HealingEvent.Status.choices])
    error_type = forms.ChoiceField(
        required=False, label="Error type", choices=[("", "Any error type")] + [(t, t.replace("_", " ")) for t in ERROR_TYPES]
    )
    task = forms.CharField(required=False, max_length=200, label="Task", help_text="Task id or part of its name")
    agent = forms.ChoiceField(
        required=False, choices=[("", "Any agent"), ("heuristic", "Heuristic"), ("llm", "LLM")]
    )
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean_until(self) -> dt.date | None:
        until = self.cleaned_data.get("until")
        # The filter ends where the next day starts, and the calendar's last day has no next day.
        if until == dt.date.max:
            raise forms.ValidationError(self.fields["until"].error_messages["invalid"], code="invalid")
        return until

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "must be on or after the From date")
        return data


@dataclass(frozen=True)
class QueuePage:
    rows: list[HealingEvent]
    next_cursor: str | None  # older rows
    prev_cursor: str | None  # newer rows; None on the first page
    is_first: bool


def queue_filter(filters: dict) -> QuerySet[HealingEvent]:
    """Events matching the cleaned filters, newest first, with only the columns a row needs."""
    qs = HealingEvent.objects.all()
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("error_type"):
        qs = qs.filter(error_type=filters["error_type"])
    if filters.get("agent"):
        qs = qs.filter(agent_kind=filters["agent"])
    if task := (filters.get("task") or "").strip():
        # Rows link to ?task=<id>; people type names. An id is exact and uses the (task, -created_at) index.
        qs = qs.filter(task_id=task) if task.startswith("task_") else qs.filter(task__name__icontains=task)
    if since := filters.get("since"):
        qs = qs.filter(created_at__gte=_day_start(since))
    if until := filters.get("until"):
        qs = qs.filter(created_at__lt=_day_start(until + dt.timedelta(days=1)))
    if q := (filters.get("q") or "").strip():
        match = Q(task__name__icontains=q) | Q(root_cause__icontains=q)
        # An id as people paste it: any case, with or without its prefix.
        ident = q.lower().removeprefix("heal_")
        qs = qs.filter(Q(pk=f"heal_{ident}") | match) if ident.isalnum() and ident.isascii() else qs.filter(match)
    return qs.select_related("task", "new_version", "original_version").only(*_ROW_FIELDS)


def queue_page(filters: dict, *, after: str = "", before: str = "", size: int = PAGE_SIZE) -> QueuePage:
    """One page of the queue. `after` pages to older rows, `before` back to newer ones."""
    qs = queue_filter(filters)
    if before and (key := _decode(before)):
        newer = newer_than(qs, field="created_at", value=key[0], pk=key[1])
        rows = list(newer.order_by("created_at", "id")[: size + 1])
        has_newer = len(rows) > size
        rows = _with_cursors(rows[:size][::-1])
        return QueuePage(
            rows=rows,
            next_cursor=cursor_of(rows[-1]) if rows else None,
            prev_cursor=cursor_of(rows[0]) if rows and has_newer else None,
            is_first=not has_newer,
        )
    key = _decode(after) if after else None
    if key:
        qs = older_than(qs, field="created_at", value=key[0], pk=key[1])
    rows = list(qs.order_by("-created_at", "-id")[: size + 1])
    has_older = len(rows) > size
    rows = _with_cursors(rows[:size])
    return QueuePage(
        rows=rows,
        next_cursor=cursor_of(rows[-1]) if rows and has_older else None,
        prev_cursor=cursor_of(rows[0]) if key and rows else None,
        is_first=key is None,
    )


def queue_rows_changed(filters: dict, *, only: str = "", newer: str = "") -> tuple[list[HealingEvent], bool]:
    """What a live queue needs after one event changed: that row (if it still matches), or the rows newer
    than the page's top row. The flag says there were more newer rows than a page holds (reload instead)."""
    if only:
        return _with_cursors(list(queue_filter(filters).filter(pk=only)[:1])), False
    page = queue_page(filters, before=newer)
    return page.rows, page.prev_cursor is not None


def _with_cursors(rows: list[HealingEvent]) -> list[HealingEvent]:
    for row in rows:
        row.cursor = cursor_of(row)
    return rows


def pending_review_count() -> int:
    # Served by the (status, -created_at) index; cheap even with many events.
    return HealingEvent.objects.filter(status=HealingEvent.Status.PENDING_REVIEW).count()


def event_detail(event_id: str) -> HealingEvent:
    """One event with everything its page shows, in one query. The screenshot itself is served separately."""
    return (
        HealingEvent.objects.select_related("task", "run", "original_version", "new_version", "validation_run", "reviewer")
        .defer("screenshot", "run__screenshots", "run__trace", "validation_run__trace")
        .annotate(has_screenshot=ExpressionWrapper(~Q(screenshot=""), output_field=BooleanField()))
        .get(pk=event_id)
    )


def event_screenshot(event_id: str) -> bytes | None:
    value = HealingEvent.objects.filter(pk=event_id).values_list("screenshot", flat=True).first()
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        return None


# -- cursors -------------------------------------------------------------------------------------


def cursor_of(event: HealingEvent) -> str:
    """The keyset position of a row; pages and live updates continue from it."""
    raw = f"{event.created_at.isoformat()}|{event.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[dt.datetime, str] | None:
    """A cursor someone edited by hand is ignored (first page) rather than an error page."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = raw.split("|", 1)
        when = dt.datetime.fromisoformat(stamp)
        if timezone.is_naive(when):
            when = when.replace(tzinfo=dt.UTC)
        # In UTC here, not in the database driver: "0001-01-01T00:00+14:00" is year 0 in UTC.
        when = when.astimezone(dt.UTC)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        return None
    return when, pk


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_current_timezone())


# -- overview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    days: list[str]
    runs_ok: list[int]
    runs_failed: list[int]
    heals_by_status: list[tuple[str, int]]
    heals_by_type: list[tuple[str, int]]
    heal_minutes: list[float | None]  # average trigger → deploy per day
    cost_usd: list[float]
    tokens: int
    total_cost: float


def overview_stats_cached(*, days: int = 30) -> Overview:
    """The overview is a summary people glance at: a minute's staleness saves re-aggregating on every view."""
    return cache.get_or_set(f"anchor:overview:{days}", lambda: overview_stats(days=days), OVERVIEW_CACHE_S)


def overview_stats(*, days: int = 30) -> Overview:
    """Per-day aggregates over the last `days` days: five GROUP BY queries whatever the row count."""
    from django.db.models import Avg, Count, Sum

    from tasks_app.models import Run

    today = timezone.localdate()
    first = today - dt.timedelta(days=days - 1)
    start = _day_start(first)
    labels = [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]
    index = {label: i for i, label in enumerate(labels)}

    runs_ok, runs_failed = [0] * days, [0] * days
    for row in (
        Run.objects.filter(created_at__gte=start, purpose=Run.Purpose.NORMAL)
        .annotate(day=_Day("created_at"))
        .values("day", "status")
        .annotate(n=Count("id"))
    ):
        i = index.get(str(row["day"]))
        if i is None:
            continue
        if row["status"] == Run.Status.FAILED:
            runs_failed[i] += row["n"]
        elif row["status"] in (Run.Status.SUCCEEDED, Run.Status.HEALED):
            runs_ok[i] += row["n"]

    events = HealingEvent.objects.filter(created_at__gte=start)
    by_status = dict(events.values_list("status").annotate(n=Count("id")).order_by())
    by_type = sorted(events.values_list("error_type").annotate(n=Count("id")).order_by(), key=lambda kv: -kv[1])

    cost = [0.0] * days
    tokens = 0
    for row in (
        events.annotate(day=_Day("created_at"))
        .values("day")
        .annotate(usd=Sum("cost_usd"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
        .order_by()
    ):
        i = index.get(str(row["day"]))
        if i is not None:
            cost[i] = float(row["usd"] or 0)
        tokens += (row["prompt"] or 0) + (row["completion"] or 0)

    minutes: list[float | None] = [None] * days
    for row in (
        events.filter(status=HealingEvent.Status.DEPLOYED, decided_at__isnull=False)
        .annotate(day=_Day("created_at"))
        .values("day")
        .annotate(took=Avg(_MinutesBetween("decided_at", "created_at")))
        .order_by()
    ):
        i = index.get(str(row["day"]))
        if i is not None and row["took"] is not None:
            minutes[i] = round(row["took"], 1)
    return Overview(
        days=labels,
        runs_ok=runs_ok,
        runs_failed=runs_failed,
        heals_by_status=[(s.label, by_status.get(s.value, 0)) for s in HealingEvent.Status],
        heals_by_type=[(t or "unknown", n) for t, n in by_type],
        heal_minutes=minutes,
        cost_usd=cost,
        tokens=tokens,
        total_cost=sum(cost),
    )


class _Day(Func):
    """The UTC calendar day of a timestamp with the database's own DATE() (SQLite and PostgreSQL both have it).

    TruncDate would do per-row time-zone work, which SQLite runs as a Python function: seconds on 100k
    rows. The project runs in UTC (settings.TIME_ZONE), so the database's DATE() is the same day.
    """

    function = "DATE"
    output_field = DateField()


class _MinutesBetween(Func):
    """Minutes from the second timestamp to the first, in the database's own arithmetic.

    Django's datetime subtraction runs as a Python function per row on SQLite; julianday() and
    EXTRACT(EPOCH ...) are native.
    """

    arity = 2
    output_field = FloatField()

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="((julianday(%(expressions)s)) * 1440.0)", arg_joiner=") - julianday(", **extra
        )

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="(EXTRACT(EPOCH FROM (%(expressions)s)) / 60.0)", arg_joiner=" - ", **extra)

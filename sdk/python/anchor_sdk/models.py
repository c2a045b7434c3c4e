"""Typed results. Each has attribute access to the API's fields; `raw` keeps the response as sent.

Fields the client does not know yet (a newer server) stay available in `raw`; fields an older server
does not send are None.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

T = TypeVar("T")


def parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    # fromisoformat() before Python 3.11 does not read a trailing Z.
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class _Model:
    # Per model: which fields are timestamps, and which hold nested models.
    _datetimes: ClassVar[tuple[str, ...]] = ()
    _nested: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name == "raw":
                continue
            value = data.get(f.name)
            if f.name in cls._datetimes:
                value = parse_datetime(value)
            elif f.name in cls._nested and value is not None:
                nested = cls._nested[f.name]
                value = [nested.from_dict(v) for v in value] if isinstance(value, list) else nested.from_dict(value)
            values[f.name] = value
        return cls(**values, raw=data)  # type: ignore[call-arg]


@dataclass
class SelfHealingConfig(_Model):
    auto_deploy: bool | None = None
    trigger_on: list[str] | None = None
    max_attempts: int | None = None
    validation_required: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.raw.items()}


@dataclass
class Task(_Model):
    id: str
    name: str | None = None
    prompt: str | None = None
    self_healing: bool | None = None
    self_healing_config: SelfHealingConfig | None = None
    current_version: int | None = None
    code_status: str | None = None
    params: dict[str, Any] | None = None
    secret_keys: list[str] | None = None
    healing_agent: str | None = None
    schedule: str | None = None
    monthly_budget_usd: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes: ClassVar[tuple[str, ...]] = ("created_at", "updated_at")
    _nested: ClassVar[dict[str, Any]] = {"self_healing_config": SelfHealingConfig}


@dataclass
class Version(_Model):
    number: int
    source: str | None = None
    parent_version: int | None = None
    author: str | None = None
    note: str | None = None
    is_current: bool | None = None
    created_at: datetime | None = None
    code: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes: ClassVar[tuple[str, ...]] = ("created_at",)


@dataclass
class Diff(_Model):
    from_version: int | None  # None for a first version, diffed against no code
    to_version: int
    added: int | None = None
    removed: int | None = None
    unified: str | None = None
    side_by_side_html: str | None = None
    inline_html: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Run(_Model):
    id: str
    status: str | None = None
    task: str | None = None
    purpose: str | None = None
    version: int | None = None
    params: dict[str, Any] | None = None
    output: Any = None
    error_type: str | None = None
    error_message: str | None = None
    trace: list[Any] | None = None
    healing_event: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    cancel_requested_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes: ClassVar[tuple[str, ...]] = ("created_at", "started_at", "finished_at", "cancel_requested_at")

    FINISHED: ClassVar[tuple[str, ...]] = ("succeeded", "healed", "failed")

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED


@dataclass
class HealingEvent(_Model):
    """A heal, as the seed reads it: `timestamp`, `error_type`, `status`, `new_version`.

    Events from a task's list carry the summary fields; `anchor.healing_events.get(id)` adds the rest
    (root cause, agent trace, candidate scores, cost, timeline, diff, reviews).
    """

    id: str
    timestamp: datetime | None = None
    error_type: str | None = None
    status: str | None = None
    new_version: int | None = None
    original_version: int | None = None
    task: str | None = None
    run: str | None = None
    root_cause: str | None = None
    agent: str | None = None
    error_message: str | None = None
    reason: str | None = None
    failing_step: dict[str, Any] | None = None
    attempt: int | None = None
    agent_trace: list[Any] | None = None
    candidate_scores: list[Any] | None = None
    chosen_element: dict[str, Any] | None = None
    validation_run: str | None = None
    cost: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    timeline: list[Any] | None = None
    reviewer: str | None = None
    review_comment: str | None = None
    decided_at: datetime | None = None
    updated_at: datetime | None = None
    screenshot_png_b64: str | None = field(default=None, repr=False)
    diff: Diff | None = field(default=None, repr=False)
    reviews: list[Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes: ClassVar[tuple[str, ...]] = ("timestamp", "decided_at", "updated_at")
    _nested: ClassVar[dict[str, Any]] = {"diff": Diff}


@dataclass
class WebhookEndpoint(_Model):
    """A URL that receives signed webhook messages. `secret` is set only on the endpoint `webhooks.create` returns:
    the API shows a secret once, when it is made (`webhooks.rotate_secret` makes a new one)."""

    id: str
    url: str | None = None
    description: str | None = None
    event_types: list[str] | None = None
    task: str | None = None
    enabled: bool | None = None
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    consecutive_failures: int | None = None
    previous_secret_expires_at: datetime | None = None
    created_at: datetime | None = None
    secret: str | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes: ClassVar[tuple[str, ...]] = ("disabled_at", "previous_secret_expires_at", "created_at")


@dataclass
class WebhookSecret(_Model):
    """A rotated endpoint's new secret (shown this once). Until `previous_secret_expires_at` messages carry
    a signature made with the old secret too."""

    secret: str = field(repr=False)
    previous_secret_expires_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes: ClassVar[tuple[str, ...]] = ("previous_secret_expires_at",)


@dataclass
class WebhookDelivery(_Model):
    """One attempt to deliver a message. `message_id` is the webhook-id header, the same for every attempt of a
    message; `payload` is the message body exactly as sent."""

    id: int
    endpoint: str | None = None
    message_id: str | None = None
    event_type: str | None = None
    attempt: int | None = None
    trigger: str | None = None
    status: str | None = None
    response_code: int | None = None
    response_excerpt: str | None = None
    duration_ms: int | None = None
    error: str | None = None
    payload: dict[str, Any] | None = field(default=None, repr=False)
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes: ClassVar[tuple[str, ...]] = ("next_attempt_at", "sent_at", "created_at")


class Page(Generic[T]):
    """One page of a list. Iterate it for its items; `next_cursor` fetches the next one (None at the end)."""

    def __init__(self, data: list[T], next_cursor: str | None, fetch_next=None):
        self.data = data
        self.next_cursor = next_cursor
        self._fetch_next = fetch_next

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> T:
        return self.data[index]

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None

    def next_page(self) -> Page[T] | None:
        if self.next_cursor is None or self._fetch_next is None:
            return None
        return self._fetch_next(self.next_cursor)

    def auto_paging_iter(self) -> Iterator[T]:
        """Every item of this page and all the pages after it."""
        page: Page[T] | None = self
        while page is not None:
            yield from page.data
            page = page.next_page()

    def __repr__(self) -> str:
        return f"Page({len(self.data)} items, next_cursor={self.next_cursor!r})"

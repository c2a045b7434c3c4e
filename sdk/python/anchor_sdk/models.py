"""Typed results. Each has attribute access to the API's fields; `raw` keeps the response as sent.

Fields the client does not know yet (a newer server) stay available in `raw`; fields an older server
does not send are None.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Dict, Generic, Iterator, List, Optional, TypeVar

T = TypeVar("T")


def parse_datetime(value: Any) -> Optional[datetime]:
    if not isinstance(value, str) or not value:
        return None
    # fromisoformat() before Python 3.11 does not read a trailing Z.
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class _Model:
    _datetimes: tuple = ()
    _nested: Dict[str, Any] = {}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]):
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
    auto_deploy: Optional[bool] = None
    trigger_on: Optional[List[str]] = None
    max_attempts: Optional[int] = None
    validation_required: Optional[bool] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in self.raw.items()}


@dataclass
class Task(_Model):
    id: str
    name: Optional[str] = None
    prompt: Optional[str] = None
    self_healing: Optional[bool] = None
    self_healing_config: Optional[SelfHealingConfig] = None
    current_version: Optional[int] = None
    code_status: Optional[str] = None
    params: Optional[Dict[str, Any]] = None
    secret_keys: Optional[List[str]] = None
    healing_agent: Optional[str] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes = ("created_at", "updated_at")
    _nested = {"self_healing_config": SelfHealingConfig}


@dataclass
class Version(_Model):
    number: int
    source: Optional[str] = None
    parent_version: Optional[int] = None
    author: Optional[str] = None
    note: Optional[str] = None
    is_current: Optional[bool] = None
    created_at: Optional[datetime] = None
    code: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes = ("created_at",)


@dataclass
class Diff(_Model):
    from_version: int
    to_version: int
    added: Optional[int] = None
    removed: Optional[int] = None
    unified: Optional[str] = None
    side_by_side_html: Optional[str] = None
    inline_html: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Run(_Model):
    id: str
    status: Optional[str] = None
    task: Optional[str] = None
    purpose: Optional[str] = None
    version: Optional[int] = None
    params: Optional[Dict[str, Any]] = None
    output: Any = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    trace: Optional[List[Any]] = None
    healing_event: Optional[str] = None
    created_at: Optional[datetime] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    duration_ms: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes = ("created_at", "started_at", "finished_at")

    FINISHED = ("succeeded", "healed", "failed")

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
    timestamp: Optional[datetime] = None
    error_type: Optional[str] = None
    status: Optional[str] = None
    new_version: Optional[int] = None
    original_version: Optional[int] = None
    task: Optional[str] = None
    run: Optional[str] = None
    root_cause: Optional[str] = None
    agent: Optional[str] = None
    error_message: Optional[str] = None
    reason: Optional[str] = None
    failing_step: Optional[Dict[str, Any]] = None
    attempt: Optional[int] = None
    agent_trace: Optional[List[Any]] = None
    candidate_scores: Optional[List[Any]] = None
    chosen_element: Optional[Dict[str, Any]] = None
    validation_run: Optional[str] = None
    cost: Optional[Dict[str, Any]] = None
    timings: Optional[Dict[str, Any]] = None
    timeline: Optional[List[Any]] = None
    reviewer: Optional[str] = None
    review_comment: Optional[str] = None
    decided_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None
    screenshot_png_b64: Optional[str] = field(default=None, repr=False)
    diff: Optional[Diff] = field(default=None, repr=False)
    reviews: Optional[List[Any]] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes = ("timestamp", "decided_at", "updated_at")
    _nested = {"diff": Diff}


class Page(Generic[T]):
    """One page of a list. Iterate it for its items; `next_cursor` fetches the next one (None at the end)."""

    def __init__(self, data: List[T], next_cursor: Optional[str], fetch_next=None):
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

    def next_page(self) -> Optional["Page[T]"]:
        if self.next_cursor is None or self._fetch_next is None:
            return None
        return self._fetch_next(self.next_cursor)

    def auto_paging_iter(self) -> Iterator[T]:
        """Every item of this page and all the pages after it."""
        page: Optional[Page[T]] = self
        while page is not None:
            yield from page.data
            page = page.next_page()

    def __repr__(self) -> str:
        return f"Page({len(self.data)} items, next_cursor={self.next_cursor!r})"

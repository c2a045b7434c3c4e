"""The shapes of the REST API: request and response schemas, the error envelope and cursor pages.

Input schemas are strict (no coercion of "true" into true) and refuse unknown fields, so a typo in a
field name is a 400 that names it instead of a silent no-op. Optional input fields are left out of the
request rather than sent as null; the services still validate every value they receive.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from django.core.exceptions import ValidationError
from django.db.models import DateTimeField, Model, QuerySet
from django.http import HttpRequest
from ninja import Schema
from pydantic import ConfigDict, Field

from healing_app.diffing import render_diff
from tasks_app.config import FAILURE_TYPES, MAX_ATTEMPTS_RANGE, InputError
from tasks_app.keyset import older_than
from tasks_app.models import MAX_INT
from tasks_app.services import NAME_MAX
from tasks_app.storable import unstorable

FailureType = Literal[FAILURE_TYPES]  # type: ignore[valid-type]


def _drop_null_defaults(schema: dict[str, Any]) -> None:
    # Optional input fields default to "not given", which is not the same as null; say so in OpenAPI.
    for prop in schema.get("properties", {}).values():
        if prop.get("default", 0) is None:
            prop.pop("default")


class InputSchema(Schema):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_drop_null_defaults)


class NoBodyIn(InputSchema):
    """For actions that take no fields: a field sent anyway is refused by name, as everywhere else."""


class DeployIn(InputSchema):
    reason: str = Field(None, max_length=500, description="why, for the audit log (default: deployed through the API)")


# -- errors --------------------------------------------------------------------------------------------


class ErrorDetail(Schema):
    field: str | None = None
    message: str


class ErrorBody(Schema):
    code: str = Field(description="machine-readable: invalid_input, unauthenticated, permission_denied, not_found, "
                                  "already_decided, superseded, rate_limited, too_many_auth_failures, internal_error")
    message: str
    field: str | None = Field(None, description="the request field at fault, dotted (self_healing_config.max_attempts)")
    details: list[ErrorDetail] | None = None


class ErrorOut(Schema):
    error: ErrorBody


ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 429: ErrorOut}
# What a change may also meet: a caller not allowed to make it (403), or an object whose state refuses it now (409).
REFUSABLE_ERRORS = {**ERRORS, 403: ErrorOut}
CONFLICTING_ERRORS = {**REFUSABLE_ERRORS, 409: ErrorOut}


# -- tasks ---------------------------------------------------------------------------------------------


class SelfHealingConfigIn(InputSchema):
    """Only the keys given change; keys left out keep their current values (or the defaults)."""

    auto_deploy: bool = Field(None, description="deploy a validated fix without review")
    trigger_on: list[FailureType] = Field(None, description="failure types that start a heal")
    max_attempts: int = Field(None, ge=MAX_ATTEMPTS_RANGE[0], le=MAX_ATTEMPTS_RANGE[1],
                              description="heal attempts per failing step and code version")
    validation_required: bool = Field(None, description="run the healed version once before deploying it")


class SelfHealingConfigOut(Schema):
    auto_deploy: bool
    trigger_on: list[str]
    max_attempts: int
    validation_required: bool


HealingAgent = Literal["", "auto", "heuristic", "llm"]
SCHEDULE_HELP = "cron (minute hour day month weekday, UTC): the scheduler runs the task then"
BUDGET_HELP = "USD per calendar month for the task's LLM use, on top of the deployment's budget"


class TaskCreateIn(InputSchema):
    name: str = Field(..., max_length=NAME_MAX)
    prompt: str = Field(None, max_length=20_000)
    self_healing: bool = None
    self_healing_config: SelfHealingConfigIn = None
    code: str = Field(None, description="Python module with `def run(page, params)`; becomes version 1")
    params: dict[str, Any] = None
    secrets: dict[str, str] = Field(None, description="write-only; only their names are ever returned")
    healing_agent: HealingAgent = Field(None, description="empty for the deployment's default")
    schedule: str = Field(None, max_length=100, description=SCHEDULE_HELP)
    monthly_budget_usd: float | None = Field(None, description=BUDGET_HELP)


class TaskUpdateIn(InputSchema):
    name: str = Field(None, max_length=NAME_MAX)
    prompt: str = Field(None, max_length=20_000)
    self_healing: bool = None
    self_healing_config: SelfHealingConfigIn = None
    code: str = Field(None, description="becomes a new version (source manual) and is deployed")
    params: dict[str, Any] = None
    secrets: dict[str, str] = Field(None, description="replaces all secrets; write-only")
    healing_agent: HealingAgent = None
    schedule: str = Field(None, max_length=100, description=SCHEDULE_HELP + "; \"\" removes it")
    monthly_budget_usd: float | None = Field(None, description=BUDGET_HELP + "; null removes it")


class TaskOut(Schema):
    id: str
    name: str
    prompt: str
    self_healing: bool
    self_healing_config: SelfHealingConfigOut
    current_version: int | None
    code_status: str
    params: dict[str, Any]
    secret_keys: list[str]
    healing_agent: str
    schedule: str
    monthly_budget_usd: float | None
    created_at: datetime
    updated_at: datetime


class TaskPage(Schema):
    data: list[TaskOut]
    next_cursor: str | None


def task_out(task) -> dict[str, Any]:
    return {
        "id": task.pk,
        "name": task.name,
        "prompt": task.prompt,
        "self_healing": task.self_healing,
        "self_healing_config": task.config,
        "current_version": task.current_version.number if task.current_version_id else None,
        "code_status": task.code_status,
        "params": task.params,
        "secret_keys": task.secret_keys,
        "healing_agent": task.healing_agent,
        "schedule": task.schedule,
        "monthly_budget_usd": float(task.monthly_budget_usd) if task.monthly_budget_usd is not None else None,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    }


# -- versions ------------------------------------------------------------------------------------------


class VersionSummaryOut(Schema):
    number: int
    source: str
    parent_version: int | None
    author: str | None
    note: str
    is_current: bool
    created_at: datetime


class VersionOut(VersionSummaryOut):
    code: str


class VersionPage(Schema):
    data: list[VersionSummaryOut]
    next_cursor: str | None


class DiffOut(Schema):
    from_version: int | None = Field(description="null for a first version, diffed against no code at all")
    to_version: int
    added: int
    removed: int
    unified: str = Field(description="unified diff text")
    side_by_side_html: str = Field(description="escaped HTML table, styled by the dashboard's CSS classes")
    inline_html: str


def diff_out(old, new) -> dict[str, Any]:
    """Two code versions compared (`old` None: `new` against no code): counts, a unified diff for programs, HTML
    for people."""
    old_code = old.code if old is not None else ""
    rendered = render_diff(old_code, new.code, context=3)
    unified = difflib.unified_diff(
        old_code.splitlines(keepends=True),
        new.code.splitlines(keepends=True),
        f"v{old.number}" if old is not None else "/dev/null",
        f"v{new.number}",
    )
    return {
        "from_version": old.number if old is not None else None,
        "to_version": new.number,
        "added": rendered.added,
        "removed": rendered.removed,
        "unified": "".join(unified),
        "side_by_side_html": rendered.side_by_side_html,
        "inline_html": rendered.inline_html,
    }


def version_out(version, *, current_version_id: int | None, with_code: bool) -> dict[str, Any]:
    data = {
        "number": version.number,
        "source": version.source,
        "parent_version": version.parent.number if version.parent_id else None,
        "author": version.author.get_username() if version.author_id else None,
        "note": version.note,
        "is_current": current_version_id == version.pk,
        "created_at": version.created_at,
    }
    if with_code:
        data["code"] = version.code
    return data


# -- runs ----------------------------------------------------------------------------------------------


class RunCreateIn(InputSchema):
    params: dict[str, Any] = Field(None, description="merged over the task's params for this run")
    version: int = Field(None, ge=1, le=MAX_INT, description="code version number; the current one if left out")


class RunStartedOut(Schema):
    id: str
    status: str


class RunOut(Schema):
    id: str
    task: str
    status: str
    purpose: str
    version: int | None
    params: dict[str, Any]
    output: Any = None
    error_type: str | None
    error_message: str | None
    trace: list[Any]
    healing_event: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    cancel_requested_at: datetime | None = None


class RunPage(Schema):
    data: list[RunOut]
    next_cursor: str | None


# -- cursor pages --------------------------------------------------------------------------------------
#
# Keyset pagination: a cursor is the last row's (ordering value, primary key), so pages stay correct
# while rows are added, and no page costs an OFFSET scan.
#
# A cursor also carries short digests of the list it pages (the path: the endpoint and any task in it) and of
# the filters it was made under. A position means nothing in another list, so a cursor passed to another
# endpoint, task or filter is refused rather than quietly paging from there. The digests are not signed: a
# forged cursor can only choose where a list the caller may read anyway starts.

_PAGING_PARAMS = {"cursor", "limit"}  # a page size may change from page to page; nothing else may


def paginate(
    request: HttpRequest, queryset: QuerySet, *, order_field: str, cursor: str | None, limit: int
) -> tuple[list[Model], str | None]:
    """Rows newest (highest `order_field`) first, and the cursor of the next page or None."""
    queryset = queryset.order_by(f"-{order_field}", "-pk")
    scope = _cursor_scope(request)
    if cursor:
        value, pk = _decode_cursor(cursor, queryset.model, order_field, scope)
        queryset = older_than(queryset, field=order_field, value=value, pk=pk)
    rows = list(queryset[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, _encode_cursor(getattr(last, order_field), last.pk, scope)


def _cursor_scope(request: HttpRequest) -> tuple[str, str]:
    """Digests of the list a page belongs to and of its filters. An empty filter is left out: the lists
    read `?status=` as no filter, so a client may send it on one page and not on the next."""
    filters = sorted((name, value) for name, value in request.GET.items() if name not in _PAGING_PARAMS and value)
    return _digest(request.path), _digest(json.dumps(filters))


def _digest(text: str) -> str:
    # 6 bytes: telling lists apart by mistake needs no more, and the cursor stays short.
    return base64.urlsafe_b64encode(hashlib.blake2b(text.encode(), digest_size=6).digest()).decode()


def _encode_cursor(value: Any, pk: Any, scope: tuple[str, str]) -> str:
    raw = json.dumps([value.isoformat() if isinstance(value, datetime) else value, pk, *scope])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, model: type[Model], order_field: str, scope: tuple[str, str]) -> tuple[Any, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, pk, list_digest, filters_digest = json.loads(raw)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InputError("cursor", "is not a cursor this API returned") from None
    if list_digest != scope[0]:
        raise InputError("cursor", "belongs to another list; pass back the next_cursor of this list's previous page")
    if filters_digest != scope[1]:
        raise InputError("cursor", "was made with other filters; send the same filters with every page of a list")
    try:
        if isinstance(model._meta.get_field(order_field), DateTimeField):
            # In UTC here, not in the database driver: "0001-01-01T00:00+14:00" is year 0 in UTC.
            value = datetime.fromisoformat(value).astimezone(UTC)
        elif not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("not an integer")
        if not isinstance(pk, (str, int)) or isinstance(pk, bool) or unstorable(pk) is not None:
            raise TypeError("not a key")  # a NUL or a lone surrogate would fail in the database driver
        pk = model._meta.pk.to_python(pk)  # "abc" is no integer id: a 400 here, not a 500 in the query
    except (ValueError, TypeError, OverflowError, ValidationError):
        raise InputError("cursor", "is not a cursor this API returned") from None
    return value, pk


def clean_body(payload: InputSchema | None) -> dict[str, Any]:
    """The fields the caller actually sent, refusing values the database cannot store."""
    data = payload.model_dump(exclude_unset=True) if payload is not None else {}
    problem = unstorable(data)
    if problem is not None:
        path, message = problem
        raise InputError(path or "body", message)
    return data

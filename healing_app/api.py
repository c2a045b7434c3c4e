"""REST endpoints for healing events: a task's history, one event in full, approve and reject.

Approve and reject call the same review services as the dashboard and the admin; the reviewer
permission is checked on the API key's owner there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import Field

from healing_app import services
from healing_app.models import HealingEvent, Review
from tasks_app.api import Cursor, Limit, get_task
from tasks_app.api_schemas import (
    CONFLICTING_ERRORS,
    ERRORS,
    DiffOut,
    InputSchema,
    clean_body,
    diff_out,
    paginate,
)
from tasks_app.config import InputError
from tasks_app.ids import object_or_404
from tasks_app.models import Task
from tasks_app.runner.protocol import ERROR_TYPES

router = Router(tags=["healing events"])
task_events_router = Router(tags=["healing events"])

EventStatus = Literal[tuple(HealingEvent.Status.values)]  # type: ignore[valid-type]
ErrorType = Literal[ERROR_TYPES]  # type: ignore[valid-type]
StatusFilter = Query(None, description="e.g. pending_review: the review queue")
TaskFilter = Query(None, max_length=40, description="a task id")
ErrorTypeFilter = Query(None, description="the failure type that started the heal")


class HealingEventOut(Schema):
    id: str
    task: str
    run: str | None
    timestamp: datetime = Field(description="when the failure triggered the heal")
    error_type: str
    status: str = Field(description="triggered, healing, validating, pending_review, deployed, rejected or failed")
    new_version: int | None = Field(description="the healed code version's number, once generated")
    original_version: int | None
    root_cause: str
    agent: str


class HealingEventPage(Schema):
    data: list[HealingEventOut]
    next_cursor: str | None


class CostOut(Schema):
    prompt_tokens: int
    completion_tokens: int
    usd: float


class ReviewOut(Schema):
    decision: str
    reviewer: str | None
    comment: str
    superseded: bool = Field(description="rejected because the task's code had changed since the heal: no verdict on its fix")
    created_at: datetime


class HealingEventDetailOut(HealingEventOut):
    error_message: str
    reason: str = Field(description="why the heal failed or was refused")
    failing_step: dict[str, Any]
    attempt: int
    agent_trace: list[Any]
    candidate_scores: list[Any]
    chosen_element: dict[str, Any] | None
    validation_run: str | None
    cost: CostOut
    timings: dict[str, Any]
    timeline: list[Any]
    reviewer: str | None
    review_comment: str
    decided_at: datetime | None
    updated_at: datetime
    screenshot_png_b64: str | None = Field(description="the page at the failure")
    diff: DiffOut | None = Field(description="original_version → new_version")
    reviews: list[ReviewOut]


class ApproveIn(InputSchema):
    comment: str = Field(None, max_length=Review.COMMENT_MAX)


class RejectIn(InputSchema):
    comment: str = Field(..., max_length=Review.COMMENT_MAX, description="required: why the fix is wrong")


def event_out(event: HealingEvent) -> dict[str, Any]:
    return event.to_dict()


def event_detail_out(event: HealingEvent) -> dict[str, Any]:
    has_diff = event.original_version_id and event.new_version_id
    return {
        **event_out(event),
        "error_message": event.error_message,
        "reason": event.reason,
        "failing_step": event.failing_step or {},
        "attempt": event.attempt,
        "agent_trace": event.agent_trace or [],
        "candidate_scores": event.candidate_scores or [],
        "chosen_element": event.chosen_element,
        "validation_run": event.validation_run_id,
        "cost": {
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
            "usd": float(event.cost_usd),
        },
        "timings": event.timings or {},
        "timeline": event.timeline or [],
        "reviewer": event.reviewer.get_username() if event.reviewer_id else None,
        "review_comment": event.review_comment,
        "decided_at": event.decided_at,
        "updated_at": event.updated_at,
        "screenshot_png_b64": event.screenshot or None,
        "diff": diff_out(event.original_version, event.new_version) if has_diff else None,
        "reviews": [
            {
                "decision": review.decision,
                "reviewer": review.reviewer.get_username() if review.reviewer_id else None,
                "comment": review.comment,
                "superseded": review.superseded,
                "created_at": review.created_at,
            }
            for review in event.reviews.select_related("reviewer")
        ],
    }


def _get_event(event_id: str) -> HealingEvent:
    queryset = HealingEvent.objects.select_related("original_version", "new_version", "reviewer")
    return object_or_404(queryset, event_id, what="healing event")


@task_events_router.get(
    "/{task_id}/healing-events",
    response={200: HealingEventPage, **ERRORS},
    summary="A task's healing events, newest first",
)
def task_healing_events(request: HttpRequest, task_id: str, cursor: str | None = Cursor, limit: int = Limit):
    return _event_page(request, get_task(task_id).healing_events.all(), cursor=cursor, limit=limit)


@router.get("", response={200: HealingEventPage, **ERRORS}, summary="Healing events of every task, newest first")
def healing_event_list(
    request: HttpRequest,
    status: EventStatus | None = StatusFilter,
    error_type: ErrorType | None = ErrorTypeFilter,
    task: str | None = TaskFilter,
    cursor: str | None = Cursor,
    limit: int = Limit,
):
    events = HealingEvent.objects.all()
    if status:
        events = events.filter(status=status)
    if error_type:
        events = events.filter(error_type=error_type)
    if task:
        if not Task.objects.filter(pk=task).exists():
            raise InputError("task", f"no task {task}")
        events = events.filter(task_id=task)
    return _event_page(request, events, cursor=cursor, limit=limit)


def _event_page(request: HttpRequest, events, *, cursor: str | None, limit: int) -> dict[str, Any]:
    # A row is the seed's summary: not the screenshot, the traces or the versions' code.
    events = events.select_related("original_version", "new_version").defer(
        "screenshot", "agent_trace", "candidate_scores", "recovery", "timeline", "original_version__code", "new_version__code"
    )
    rows, next_cursor = paginate(request, events, order_field="created_at", cursor=cursor, limit=limit)
    return {"data": [event_out(event) for event in rows], "next_cursor": next_cursor}


@router.get("/{event_id}", response={200: HealingEventDetailOut, **ERRORS}, summary="One healing event, in full")
def healing_event_get(request: HttpRequest, event_id: str):
    return event_detail_out(_get_event(event_id))


@router.post(
    "/{event_id}/approve",
    response={200: HealingEventDetailOut, **CONFLICTING_ERRORS},
    summary="Approve and deploy the healed version (reviewers)",
)
def healing_event_approve(request: HttpRequest, event_id: str, payload: ApproveIn | None = None):
    comment = clean_body(payload).get("comment", "")
    event = services.healing_approve(event=_get_event(event_id), reviewer=request.auth.actor, comment=comment)
    return event_detail_out(_get_event(event.pk))


@router.post(
    "/{event_id}/reject",
    response={200: HealingEventDetailOut, **CONFLICTING_ERRORS},
    summary="Reject the healed version (reviewers; a comment is required)",
)
def healing_event_reject(request: HttpRequest, event_id: str, payload: RejectIn | None = None):
    # An empty body is read as no comment, so the caller hears "comment is required", not "body".
    comment = clean_body(payload).get("comment", "")
    event = services.healing_reject(event=_get_event(event_id), reviewer=request.auth.actor, comment=comment)
    return event_detail_out(_get_event(event.pk))

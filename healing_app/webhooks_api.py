"""REST endpoints for webhook endpoints and their delivery log, mounted at /api/v1/webhooks/. Thin: each calls a service.

`request.auth` is the caller (see anchor_site/api.py); errors (InputError, Http404, PermissionDenied) are turned
into the API's `{"error": {...}}` envelope there. Callers see and change only their own endpoints unless staff.
A secret is returned only when it is made: on creation and on rotation.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from django.http import Http404, HttpRequest
from ninja import Path, Query, Router, Schema, Status
from pydantic import Field

from healing_app import webhook_services as services
from healing_app import webhooks
from healing_app.models import WebhookDelivery, WebhookEndpoint
from tasks_app.api import Cursor, Limit
from tasks_app.api_schemas import (
    ERRORS,
    ErrorOut,
    InputSchema,
    NoBodyIn,
    clean_body,
    paginate,
)
from tasks_app.config import InputError
from tasks_app.ids import object_or_404
from tasks_app.models import MAX_INT, Task

router = Router(tags=["webhooks"])

EventType = Literal[WebhookEndpoint.EVENT_TYPES]  # type: ignore[valid-type]
DeliveryStatus = Literal[tuple(WebhookDelivery.Status.values)]  # type: ignore[valid-type]
RESPONSES = {**ERRORS, 403: ErrorOut}
DeliveryStatusFilter = Query(None, description="a delivery status")


# -- schemas -------------------------------------------------------------------------------------------


class WebhookEndpointCreateIn(InputSchema):
    url: str = Field(..., max_length=services.URL_MAX, description="http(s) URL on a public address")
    description: str = Field(None, max_length=services.DESCRIPTION_MAX)
    event_types: list[EventType] = Field(None, description="the event types to receive; empty or left out: all")
    task: str = Field(None, max_length=40, description="only events of this task (id); left out: every task")


class WebhookEndpointUpdateIn(InputSchema):
    url: str = Field(None, max_length=services.URL_MAX)
    description: str = Field(None, max_length=services.DESCRIPTION_MAX)
    event_types: list[EventType] = None
    task: str | None = Field(None, max_length=40, description="a task id, or null for every task")
    enabled: bool = Field(None, description="true re-enables a disabled endpoint and resets its failure count")


class SecretRotateIn(InputSchema):
    grace_seconds: int = Field(
        None, ge=0, le=int(services.MAX_GRACE.total_seconds()),
        description="how long messages also carry the old secret's signature (default one day; 0: drop it now)",
    )


class WebhookEndpointOut(Schema):
    id: str
    url: str
    description: str
    event_types: list[str]
    task: str | None
    enabled: bool
    disabled_reason: str
    disabled_at: datetime | None
    consecutive_failures: int
    previous_secret_expires_at: datetime | None
    created_at: datetime


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret: str = Field(description="whsec_…; shown this once only")


class WebhookEndpointPage(Schema):
    data: list[WebhookEndpointOut]
    next_cursor: str | None


class SecretOut(Schema):
    secret: str = Field(description="the new whsec_… secret; shown this once only")
    previous_secret_expires_at: datetime | None = Field(description="until then messages carry both signatures")


class WebhookDeliveryOut(Schema):
    id: int
    endpoint: str
    message_id: str = Field(description="the webhook-id header; the same for every attempt of a message")
    event_type: str
    attempt: int
    trigger: str
    status: str
    response_code: int | None
    response_excerpt: str
    duration_ms: int | None
    error: str
    payload: dict[str, Any]
    next_attempt_at: datetime | None
    sent_at: datetime | None
    created_at: datetime


class WebhookDeliveryPage(Schema):
    data: list[WebhookDeliveryOut]
    next_cursor: str | None


def endpoint_out(endpoint: WebhookEndpoint, *, secret: str | None = None) -> dict[str, Any]:
    data = {
        "id": endpoint.pk,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "task": endpoint.task_id,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "disabled_at": endpoint.disabled_at,
        "consecutive_failures": endpoint.consecutive_failures,
        "previous_secret_expires_at": endpoint.previous_secret_expires_at,
        "created_at": endpoint.created_at,
    }
    if secret is not None:
        data["secret"] = secret
    return data


def delivery_out(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.pk,
        "endpoint": delivery.endpoint_id,
        "message_id": delivery.message_id,
        "event_type": delivery.event_type,
        "attempt": delivery.attempt,
        "trigger": delivery.trigger,
        "status": delivery.status,
        "response_code": delivery.response_code,
        "response_excerpt": delivery.response_excerpt,
        "duration_ms": delivery.duration_ms,
        "error": delivery.error,
        "payload": delivery.payload,
        "next_attempt_at": delivery.next_attempt_at,
        "sent_at": delivery.sent_at,
        "created_at": delivery.created_at,
    }


# -- lookups -------------------------------------------------------------------------------------------


def get_endpoint(request: HttpRequest, endpoint_id: str) -> WebhookEndpoint:
    # Someone else's endpoint is a 404, not a 403: its id says nothing about whether it exists.
    return object_or_404(services.webhook_endpoints_for(user=request.auth.user), endpoint_id, what="webhook endpoint")


def _task(task_id: str | None) -> Task | None:
    if task_id is None:
        return None
    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        raise InputError("task", f"no task {task_id!r}")
    return task


# -- endpoints -----------------------------------------------------------------------------------------


@router.post("", response={201: WebhookEndpointCreatedOut, **RESPONSES}, summary="Create a webhook endpoint")
def webhook_create(request: HttpRequest, payload: WebhookEndpointCreateIn):
    body = clean_body(payload)
    if "task" in body:
        body["task"] = _task(body["task"])
    endpoint, secret = services.webhook_endpoint_create(actor=request.auth.actor, **body)
    return Status(201, endpoint_out(endpoint, secret=secret))


@router.get("", response={200: WebhookEndpointPage, **RESPONSES}, summary="List your webhook endpoints")
def webhook_list(request: HttpRequest, cursor: str | None = Cursor, limit: int = Limit):
    rows, next_cursor = paginate(
        request, services.webhook_endpoints_for(user=request.auth.user), order_field="created_at", cursor=cursor, limit=limit
    )
    return {"data": [endpoint_out(e) for e in rows], "next_cursor": next_cursor}


@router.get("/{endpoint_id}", response={200: WebhookEndpointOut, **RESPONSES}, summary="Get a webhook endpoint")
def webhook_get(request: HttpRequest, endpoint_id: str):
    return endpoint_out(get_endpoint(request, endpoint_id))


@router.patch("/{endpoint_id}", response={200: WebhookEndpointOut, **RESPONSES}, summary="Update a webhook endpoint (partial)")
def webhook_update(request: HttpRequest, endpoint_id: str, payload: WebhookEndpointUpdateIn):
    endpoint = get_endpoint(request, endpoint_id)
    body = clean_body(payload)
    if "task" in body:
        body["task"] = _task(body["task"])
    return endpoint_out(services.webhook_endpoint_update(endpoint=endpoint, actor=request.auth.actor, **body))


@router.delete("/{endpoint_id}", response={204: None, **RESPONSES}, summary="Delete a webhook endpoint")
def webhook_delete(request: HttpRequest, endpoint_id: str):
    services.webhook_endpoint_delete(endpoint=get_endpoint(request, endpoint_id), actor=request.auth.actor)
    return Status(204, None)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response={200: SecretOut, **RESPONSES},
    summary="Rotate the signing secret; both signatures are sent during the grace period",
)
def webhook_rotate_secret(request: HttpRequest, endpoint_id: str, payload: SecretRotateIn | None = None):
    endpoint = get_endpoint(request, endpoint_id)
    body = clean_body(payload)
    grace = timedelta(seconds=body["grace_seconds"]) if "grace_seconds" in body else webhooks.SECRET_GRACE
    secret = services.webhook_secret_rotate(endpoint=endpoint, actor=request.auth.actor, grace=grace)
    endpoint.refresh_from_db()
    return {"secret": secret, "previous_secret_expires_at": endpoint.previous_secret_expires_at}


@router.post(
    "/{endpoint_id}/test",
    response={202: WebhookDeliveryOut, **RESPONSES},
    summary="Queue a webhook.test event to this endpoint (also when it is disabled)",
)
def webhook_send_test(request: HttpRequest, endpoint_id: str, payload: NoBodyIn | None = None):
    clean_body(payload)
    delivery = services.webhook_send_test(endpoint=get_endpoint(request, endpoint_id), actor=request.auth.actor)
    return Status(202, delivery_out(delivery))


@router.get(
    "/{endpoint_id}/deliveries",
    response={200: WebhookDeliveryPage, **RESPONSES},
    summary="The endpoint's delivery log, newest attempt first",
)
def webhook_deliveries(
    request: HttpRequest,
    endpoint_id: str,
    status: DeliveryStatus | None = DeliveryStatusFilter,
    message_id: str | None = Query(None, max_length=60),
    cursor: str | None = Cursor,
    limit: int = Limit,
):
    deliveries = get_endpoint(request, endpoint_id).deliveries.all()
    if status:
        deliveries = deliveries.filter(status=status)
    if message_id:
        deliveries = deliveries.filter(message_id=message_id)
    rows, next_cursor = paginate(request, deliveries, order_field="created_at", cursor=cursor, limit=limit)
    return {"data": [delivery_out(d) for d in rows], "next_cursor": next_cursor}


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    response={202: WebhookDeliveryOut, **RESPONSES},
    summary="Queue one more attempt of a delivery's message (same webhook-id)",
)
def webhook_redeliver(
    request: HttpRequest, endpoint_id: str, delivery_id: int = Path(..., ge=1, le=MAX_INT), payload: NoBodyIn | None = None
):
    clean_body(payload)
    endpoint = get_endpoint(request, endpoint_id)
    delivery = endpoint.deliveries.filter(pk=delivery_id).first()
    if delivery is None:
        raise Http404("no such delivery")
    return Status(202, delivery_out(services.webhook_redeliver(delivery=delivery, actor=request.auth.actor)))

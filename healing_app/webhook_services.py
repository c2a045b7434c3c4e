"""Webhook endpoint workflows: create, update, delete, rotate the secret, send a test, redeliver.

The dashboard, the API and the admin call these, so the rules (who may change what, which URLs are
allowed, what gets audited) live here once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.functional import lazy

from healing_app import ssrf, webhooks
from healing_app.models import WebhookDelivery, WebhookEndpoint
from tasks_app.audit import Actor, as_actor, audit_log
from tasks_app.config import InputError
from tasks_app.ids import new_id
from tasks_app.models import Task

_UNSET: Any = object()
URL_MAX = 2000
DESCRIPTION_MAX = 200
MAX_GRACE = timedelta(days=7)


def _url_rule() -> str:
    if ssrf.allow_private_default():
        return "http(s); private addresses too, since WEBHOOKS_ALLOW_PRIVATE is on."
    return "http(s), on a public address."


URL_RULE = lazy(_url_rule, str)()  # what a webhook URL may be, as the forms say it (read when a form is shown)


# -- who may see and change an endpoint ---------------------------------------------------------------


# Being staff opens the admin; it does not by itself give every endpoint. A URL can hold credentials and whoever
# may change an endpoint can rotate its secret and read the new one, so other people's endpoints take the
# model permission, as in the admin.
VIEW_ALL = "healing_app.view_webhookendpoint"
CHANGE_ALL = "healing_app.change_webhookendpoint"


def _staff_with(user: AbstractBaseUser, *perms: str) -> bool:
    return bool(user.is_active and user.is_staff and any(user.has_perm(perm) for perm in perms))


def webhook_endpoints_for(*, user: AbstractBaseUser) -> QuerySet[WebhookEndpoint]:
    """The endpoints `user` may see: their own, and every one for staff with the view or change permission."""
    endpoints = WebhookEndpoint.objects.select_related("task", "owner")
    if _staff_with(user, VIEW_ALL, CHANGE_ALL):
        return endpoints
    return endpoints.filter(owner_id=user.pk)


def webhook_can_manage(*, user: AbstractBaseUser | None, endpoint: WebhookEndpoint) -> bool:
    """Whether `user` may change, rotate, test or delete the endpoint: its owner, or staff with change permission."""
    if user is None:
        return True  # the system itself (management commands, jobs)
    owns = endpoint.owner_id is not None and endpoint.owner_id == user.pk
    return bool(user.is_active and owns) or _staff_with(user, CHANGE_ALL)


def _require_manager(actor: Actor, endpoint: WebhookEndpoint) -> None:
    if not webhook_can_manage(user=actor.user, endpoint=endpoint):
        raise PermissionDenied("only the endpoint's owner or staff allowed to change webhook endpoints can change it")


# -- input ------------------------------------------------------------------------------------------------


def clean_url(url: Any) -> str:
    """The URL, stripped, if it is http(s) and its host resolves only to addresses we may send to."""
    if not isinstance(url, str) or not url.strip():
        raise InputError("url", "a URL is required")
    url = url.strip()
    if len(url) > URL_MAX:
        raise InputError("url", f"must be at most {URL_MAX} characters")
    try:
        ssrf.check_url(url)
    except ssrf.UnsafeURL as exc:
        raise InputError("url", str(exc)) from None
    return url


def clean_event_types(value: Any) -> list[str]:
    """A subset of WebhookEndpoint.EVENT_TYPES in canonical order; empty means every event type."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise InputError("event_types", "must be a list of event types")
    unknown = [item for item in value if item not in WebhookEndpoint.EVENT_TYPES]
    if unknown:
        allowed = ", ".join(WebhookEndpoint.EVENT_TYPES)
        raise InputError("event_types", f"unknown event type {unknown[0]!r} (allowed: {allowed})")
    return [item for item in WebhookEndpoint.EVENT_TYPES if item in value]


def clean_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError("description", "must be a string")
    value = value.strip()
    if len(value) > DESCRIPTION_MAX:
        raise InputError("description", f"must be at most {DESCRIPTION_MAX} characters")
    return value


def _clean_task(value: Any) -> Task | None:
    if value is None or isinstance(value, Task):
        return value
    raise InputError("task", "must be a task or null")


# -- workflows ---------------------------------------------------------------------------------------------


def webhook_endpoint_create(
    *,
    actor: Actor | AbstractBaseUser | None,
    url: str,
    description: str = "",
    event_types: list[str] | None = None,
    task: Task | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint owned by the actor. Returns it with its secret, which is shown this once only."""
    actor = as_actor(actor)
    endpoint = WebhookEndpoint(
        url=clean_url(url),
        description=clean_description(description),
        event_types=clean_event_types(event_types),
        task=_clean_task(task),
        owner=actor.stored_user,
    )
    secret = webhooks.secret_generate()
    endpoint.set_secret(secret)
    with transaction.atomic():
        _refuse_twin(endpoint)
        endpoint.save()
        audit_log(actor=actor, action="webhook.create", obj=endpoint, data=_summary(endpoint))
    return endpoint, secret


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    actor: Actor | AbstractBaseUser | None,
    url: str = _UNSET,
    description: str = _UNSET,
    event_types: list[str] = _UNSET,
    task: Task | None = _UNSET,
    enabled: bool = _UNSET,
) -> WebhookEndpoint:
    """Partial update: only the arguments given change. Enabling starts the failure count afresh."""
    actor = as_actor(actor)
    _require_manager(actor, endpoint)
    changes: dict[str, Any] = {}
    if url is not _UNSET:
        changes["url"] = clean_url(url)
    if description is not _UNSET:
        changes["description"] = clean_description(description)
    if event_types is not _UNSET:
        changes["event_types"] = clean_event_types(event_types)
    if task is not _UNSET:
        changes["task"] = _clean_task(task)
    if enabled is not _UNSET and not isinstance(enabled, bool):
        raise InputError("enabled", "must be true or false")

    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        changed = [name for name, value in changes.items() if getattr(endpoint, name) != value]
        for name in changed:
            setattr(endpoint, name, changes[name])
        filters_changed = [name for name in ("url", "event_types", "task") if name in changed]
        if filters_changed:
            _refuse_twin(endpoint, field=filters_changed[0])
        if changed:
            endpoint.save(update_fields=changed)
            # Field names only: a URL can carry credentials and the audit log is widely readable.
            audit_log(actor=actor, action="webhook.update", obj=endpoint, data={"changed": changed})
        if enabled is True and not endpoint.enabled:
            _enable(endpoint, actor)
    if enabled is False and endpoint.enabled:
        webhooks.endpoint_disable(endpoint_id=endpoint.pk, reason=f"disabled by {actor.label}", actor=actor)
    endpoint.refresh_from_db()
    return endpoint


def _refuse_twin(endpoint: WebhookEndpoint, *, field: str = "url") -> None:
    """Refuse a second endpoint of one owner with the same URL and filters: it would sign and send every message
    twice (mostly it is the create page reloaded, posting again). `field` is the one the error names: the one
    changed to make the twin. In the saving transaction; one owner's saves take turns, so two at once cannot
    both pass."""
    if endpoint.owner_id is not None:
        get_user_model().objects.select_for_update().filter(pk=endpoint.owner_id).exists()
    same_filters = WebhookEndpoint.objects.filter(
        owner_id=endpoint.owner_id, event_types=endpoint.event_types, task_id=endpoint.task_id
    ).exclude(pk=endpoint.pk)
    address = _address(endpoint.url)
    twin = next((pk for pk, url in same_filters.values_list("pk", "url") if _address(url) == address), None)
    if twin is not None:
        raise InputError(field, f"you have an endpoint for this URL with these filters already ({twin}); "
                                "edit it, or rotate its secret if you need a new one")


def _address(url: str) -> tuple:
    """Where a URL sends to, however it is spelled: HTTPS://Host:443/x and https://host/x are one receiver."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, parts.username, parts.password, (parts.hostname or "").rstrip("."), port, parts.path or "/", parts.query


def _enable(endpoint: WebhookEndpoint, actor: Actor) -> None:
    was = endpoint.disabled_reason
    endpoint.enabled = True
    endpoint.disabled_reason = ""
    endpoint.disabled_at = None
    endpoint.consecutive_failures = 0
    endpoint.failing_since = None
    endpoint.save(update_fields=["enabled", "disabled_reason", "disabled_at", "consecutive_failures", "failing_since"])
    audit_log(actor=actor, action="webhook.enable", obj=endpoint, data={"was_disabled_because": was})


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: Actor | AbstractBaseUser | None) -> None:
    """Delete the endpoint and its delivery log; queued attempts find no row and do nothing."""
    actor = as_actor(actor)
    _require_manager(actor, endpoint)
    with transaction.atomic():
        audit_log(actor=actor, action="webhook.delete", obj=endpoint, data=_summary(endpoint))
        endpoint.delete()


def webhook_secret_rotate(
    *, endpoint: WebhookEndpoint, actor: Actor | AbstractBaseUser | None, grace: timedelta = webhooks.SECRET_GRACE
) -> str:
    """Give the endpoint a new secret and return it (shown this once). Messages carry both signatures for `grace`,
    so receivers can switch without losing any; a zero grace drops the old secret at once (it leaked)."""
    actor = as_actor(actor)
    _require_manager(actor, endpoint)
    if not isinstance(grace, timedelta) or not timedelta(0) <= grace <= MAX_GRACE:
        raise InputError("grace", f"must be between 0 and {MAX_GRACE.days} days")
    secret = webhooks.secret_generate()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.set_secret(secret, previous_expires_at=timezone.now() + grace if grace else None)
        endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
        audit_log(
            actor=actor,
            action="webhook.rotate_secret",
            obj=endpoint,
            data={"grace_seconds": int(grace.total_seconds())},
        )
    return secret


def webhook_send_test(*, endpoint: WebhookEndpoint, actor: Actor | AbstractBaseUser | None) -> WebhookDelivery:
    """Queue a `webhook.test` message to this endpoint alone, even when it is disabled (to check a fix)."""
    actor = as_actor(actor)
    _require_manager(actor, endpoint)
    payload = webhooks.message_payload(
        event_type=webhooks.TEST_EVENT_TYPE,
        data={"endpoint": endpoint.pk, "message": "A test event from Anchor. It needs no action."},
    )
    with transaction.atomic():
        delivery = webhooks.delivery_create(
            endpoint=endpoint,
            message_id=new_id("msg"),
            event_type=webhooks.TEST_EVENT_TYPE,
            payload=payload,
            trigger=WebhookDelivery.Trigger.TEST,
        )
        audit_log(actor=actor, action="webhook.send_test", obj=endpoint, data={"message_id": delivery.message_id})
        webhooks.delivery_enqueue(delivery=delivery)
    return delivery


def webhook_redeliver(*, delivery: WebhookDelivery, actor: Actor | AbstractBaseUser | None) -> WebhookDelivery:
    """Queue one more attempt of the same message (same webhook-id, so receivers deduplicate it)."""
    actor = as_actor(actor)
    endpoint = delivery.endpoint
    _require_manager(actor, endpoint)
    with transaction.atomic():
        attempt = webhooks.delivery_create(
            endpoint=endpoint,
            message_id=delivery.message_id,
            event_type=delivery.event_type,
            payload=delivery.payload,
            trigger=WebhookDelivery.Trigger.REDELIVER,
        )
        audit_log(
            actor=actor,
            action="webhook.redeliver",
            obj=endpoint,
            data={"message_id": delivery.message_id, "attempt": attempt.attempt},
        )
        webhooks.delivery_enqueue(delivery=attempt)
    return attempt


def _summary(endpoint: WebhookEndpoint) -> dict:
    return {"event_types": endpoint.event_types, "task": endpoint.task_id, "description": endpoint.description}

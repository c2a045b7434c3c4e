"""Webhook services: validation (including the SSRF guard when saving), permissions, audit, rotation, tests, redelivery."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from standardwebhooks import Webhook

from healing_app import webhooks
from healing_app.models import WebhookDelivery, WebhookEndpoint
from healing_app.webhook_services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_update,
    webhook_endpoints_for,
    webhook_redeliver,
    webhook_secret_rotate,
    webhook_send_test,
)
from tasks_app.audit import Actor
from tasks_app.config import InputError
from tasks_app.models import AuditLog, Task

PUBLIC_URL = "https://hooks.example.test/anchor"


@pytest.fixture(autouse=True)
def public_dns(public_webhook_host):
    """hooks.example.test is a public host here; nothing is ever sent to it."""


@pytest.fixture
def queue(monkeypatch):
    jobs: list[tuple] = []

    class Recording:
        def enqueue(self, func, *args, **kwargs):
            jobs.append((func, args, None))

        def enqueue_in(self, delay, func, *args, **kwargs):
            jobs.append((func, args, delay))

    monkeypatch.setattr(webhooks, "_queue", Recording)
    return jobs


@pytest.fixture
def owner(member):
    return Actor(user=member, via="dashboard")


@pytest.fixture
def endpoint(db, owner):
    created, _ = webhook_endpoint_create(actor=owner, url=PUBLIC_URL, description="chat")
    return created


# -- create -----------------------------------------------------------------------------------------------


def test_creating_an_endpoint_returns_its_secret_once_and_stores_it_encrypted(db, owner, member):
    endpoint, secret = webhook_endpoint_create(actor=owner, url=PUBLIC_URL, event_types=["healing.deployed"])
    assert secret.startswith("whsec_")
    Webhook(secret)  # a secret the library accepts
    assert secret not in endpoint.secret  # the column holds ciphertext
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).current_secret == secret
    assert endpoint.owner == member
    assert endpoint.enabled
    assert endpoint.id.startswith("wh_")
    log = AuditLog.objects.get(action="webhook.create", object_id=endpoint.pk)
    assert log.actor_label == "mo via dashboard"
    assert secret not in str(log.data)


def test_event_types_are_kept_in_canonical_order_without_duplicates(db, owner):
    endpoint, _ = webhook_endpoint_create(
        actor=owner, url=PUBLIC_URL, event_types=["run.failed", "healing.triggered", "run.failed"]
    )
    assert endpoint.event_types == ["healing.triggered", "run.failed"]


@pytest.mark.parametrize(
    "event_types, message",
    [(["healing.exploded"], "unknown event type 'healing.exploded'"), ("healing.deployed", "must be a list"), ([1], "must be a list")],
)
def test_event_types_outside_the_known_set_are_refused(db, owner, event_types, message):
    with pytest.raises(InputError) as refused:
        webhook_endpoint_create(actor=owner, url=PUBLIC_URL, event_types=event_types)
    assert refused.value.field == "event_types"
    assert message in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://10.0.0.1/hook",
        "http://localhost:8000/hook",
        "file:///etc/passwd",
        "ftp://hooks.example.test/",
        "",
        "https://hooks.example.test/" + "a" * 2000,
    ],
)
def test_urls_the_ssrf_guard_refuses_cannot_be_saved(db, owner, url):
    with pytest.raises(InputError) as refused:
        webhook_endpoint_create(actor=owner, url=url)
    assert refused.value.field == "url"
    assert not WebhookEndpoint.objects.exists()


def test_private_urls_can_be_saved_when_the_setting_allows_them(db, settings, owner):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    endpoint, _ = webhook_endpoint_create(actor=owner, url="http://localhost:8000/hook")
    assert endpoint.url == "http://localhost:8000/hook"


def test_the_metadata_address_cannot_be_saved_even_when_private_urls_are_allowed(db, settings, owner):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    with pytest.raises(InputError, match="metadata"):
        webhook_endpoint_create(actor=owner, url="http://169.254.169.254/")


# -- update, enable, disable, delete ------------------------------------------------------------------------


def test_an_update_changes_only_what_is_given_and_audits_field_names(db, owner, endpoint):
    task = Task.objects.create(name="contact form")
    updated = webhook_endpoint_update(endpoint=endpoint, actor=owner, event_types=["run.failed"], task=task)
    assert updated.event_types == ["run.failed"]
    assert updated.task == task
    assert updated.description == "chat"
    log = AuditLog.objects.get(action="webhook.update")
    assert sorted(log.data["changed"]) == ["event_types", "task"]


def test_an_update_rechecks_the_url(db, owner, endpoint):
    with pytest.raises(InputError) as refused:
        webhook_endpoint_update(endpoint=endpoint, actor=owner, url="http://127.0.0.1/")
    assert refused.value.field == "url"
    endpoint.refresh_from_db()
    assert endpoint.url == PUBLIC_URL


def test_an_update_that_would_make_a_twin_endpoint_is_refused_naming_the_field_changed(db, owner, endpoint):
    other, _ = webhook_endpoint_create(actor=owner, url=PUBLIC_URL + "other", event_types=["run.failed"])
    webhook_endpoint_update(endpoint=other, actor=owner, url=PUBLIC_URL)  # other filters: not a twin yet
    with pytest.raises(InputError) as refused:
        webhook_endpoint_update(endpoint=other, actor=owner, event_types=[])  # all events, like `endpoint`
    assert refused.value.field == "event_types"
    assert f"({endpoint.pk})" in refused.value.message
    webhook_endpoint_update(endpoint=endpoint, actor=owner, url=PUBLIC_URL + "x", event_types=["run.failed"])
    with pytest.raises(InputError) as refused:
        webhook_endpoint_update(endpoint=endpoint, actor=owner, url=PUBLIC_URL)  # `other` has run.failed there
    assert refused.value.field == "url"


def test_someone_else_cannot_change_an_endpoint(db, django_user_model, endpoint):
    stranger = django_user_model.objects.create_user("eve", password="pw-eve-123!")
    with pytest.raises(PermissionDenied):
        webhook_endpoint_update(endpoint=endpoint, actor=stranger, description="mine now")
    with pytest.raises(PermissionDenied):
        webhook_secret_rotate(endpoint=endpoint, actor=stranger)
    with pytest.raises(PermissionDenied):
        webhook_endpoint_delete(endpoint=endpoint, actor=stranger)
    assert list(webhook_endpoints_for(user=stranger)) == []


def test_staff_with_the_change_permission_can_change_any_endpoint(db, django_user_model, endpoint):
    staff = django_user_model.objects.create_user("sam", password="pw-sam-123!", is_staff=True)
    with pytest.raises(PermissionDenied):
        webhook_endpoint_update(endpoint=endpoint, actor=staff, description="ops")  # staff alone is not enough
    staff.user_permissions.add(Permission.objects.get(codename="change_webhookendpoint"))
    staff = django_user_model.objects.get(pk=staff.pk)  # permissions are cached per instance
    webhook_endpoint_update(endpoint=endpoint, actor=staff, description="ops")
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).description == "ops"
    assert list(webhook_endpoints_for(user=staff)) == [endpoint]


def test_the_permission_without_staff_or_an_owner_no_longer_active_changes_nothing(db, django_user_model, member, endpoint):
    """Other people's endpoints take staff status and the permission together; an owner deactivated since may
    no longer change their own."""
    holder = django_user_model.objects.create_user("pat", password="pw-pat-123!")  # not staff
    holder.user_permissions.add(*Permission.objects.filter(codename__in=["change_webhookendpoint", "view_webhookendpoint"]))
    holder = django_user_model.objects.get(pk=holder.pk)
    with pytest.raises(PermissionDenied):
        webhook_endpoint_update(endpoint=endpoint, actor=holder, description="mine now")
    assert list(webhook_endpoints_for(user=holder)) == []

    member.is_active = False
    member.save()
    with pytest.raises(PermissionDenied):
        webhook_secret_rotate(endpoint=endpoint, actor=member)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).description == "chat"


def test_disabling_by_hand_says_who_and_cancels_waiting_retries(db, owner, endpoint):
    waiting = WebhookDelivery.objects.create(
        endpoint=endpoint, message_id="msg_1", event_type="run.failed", payload={}, attempt=2, trigger="retry"
    )
    updated = webhook_endpoint_update(endpoint=endpoint, actor=owner, enabled=False)
    assert not updated.enabled
    assert updated.disabled_reason == "disabled by mo via dashboard"
    waiting.refresh_from_db()
    assert waiting.status == WebhookDelivery.Status.CANCELLED
    assert AuditLog.objects.filter(action="webhook.disable", object_id=endpoint.pk).exists()


def test_enabling_clears_the_reason_and_starts_the_failure_count_afresh(db, owner, endpoint):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False, disabled_reason="the receiver answered 410 Gone", consecutive_failures=20, failing_since=timezone.now()
    )
    updated = webhook_endpoint_update(endpoint=endpoint, actor=owner, enabled=True)
    assert updated.enabled
    assert (updated.disabled_reason, updated.consecutive_failures, updated.failing_since) == ("", 0, None)
    log = AuditLog.objects.get(action="webhook.enable")
    assert log.data["was_disabled_because"] == "the receiver answered 410 Gone"


def test_enabled_must_be_a_boolean(db, owner, endpoint):
    with pytest.raises(InputError) as refused:
        webhook_endpoint_update(endpoint=endpoint, actor=owner, enabled="yes")
    assert refused.value.field == "enabled"


def test_deleting_an_endpoint_removes_its_log_and_is_audited(db, owner, endpoint):
    WebhookDelivery.objects.create(endpoint=endpoint, message_id="msg_1", event_type="run.failed", payload={})
    endpoint_id = endpoint.pk
    webhook_endpoint_delete(endpoint=endpoint, actor=owner)
    assert not WebhookEndpoint.objects.filter(pk=endpoint_id).exists()
    assert not WebhookDelivery.objects.exists()
    assert AuditLog.objects.filter(action="webhook.delete", object_id=endpoint_id).exists()


# -- secrets ---------------------------------------------------------------------------------------------------


def test_rotating_keeps_the_old_secret_signing_for_a_day(db, owner, endpoint):
    old = endpoint.current_secret
    new = webhook_secret_rotate(endpoint=endpoint, actor=owner)
    endpoint.refresh_from_db()
    assert new != old and new.startswith("whsec_")
    assert endpoint.current_secret == new
    assert endpoint.signing_secrets(at=timezone.now()) == [new, old]
    assert endpoint.previous_secret_expires_at - timezone.now() > timedelta(hours=23)
    assert endpoint.signing_secrets(at=timezone.now() + timedelta(hours=25)) == [new]
    log = AuditLog.objects.get(action="webhook.rotate_secret")
    assert new not in str(log.data) and old not in str(log.data)


def test_rotating_with_no_grace_drops_the_old_secret_at_once(db, owner, endpoint):
    new = webhook_secret_rotate(endpoint=endpoint, actor=owner, grace=timedelta(0))
    endpoint.refresh_from_db()
    assert endpoint.signing_secrets(at=timezone.now()) == [new]
    assert endpoint.previous_secret == ""


def test_a_grace_period_over_a_week_is_refused(db, owner, endpoint):
    with pytest.raises(InputError) as refused:
        webhook_secret_rotate(endpoint=endpoint, actor=owner, grace=timedelta(days=8))
    assert refused.value.field == "grace"


# -- test events and redelivery ------------------------------------------------------------------------------------


def test_a_test_event_is_queued_for_this_endpoint_after_commit(db, owner, endpoint, queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        delivery = webhook_send_test(endpoint=endpoint, actor=owner)
    assert queue == []  # not before the row is committed
    for callback in callbacks:
        callback()
    assert queue == [(webhooks.webhook_deliver, (delivery.pk,), None)]
    assert delivery.event_type == "webhook.test"
    assert delivery.trigger == WebhookDelivery.Trigger.TEST
    assert delivery.payload["type"] == "webhook.test"
    assert AuditLog.objects.filter(action="webhook.send_test", object_id=endpoint.pk).exists()


def test_a_redelivery_is_the_next_attempt_of_the_same_message(db, owner, endpoint, queue, django_capture_on_commit_callbacks):
    first = WebhookDelivery.objects.create(
        endpoint=endpoint, message_id="msg_abc", event_type="run.failed", payload={"type": "run.failed"},
        status=WebhookDelivery.Status.FAILED,
    )
    WebhookDelivery.objects.create(
        endpoint=endpoint, message_id="msg_abc", event_type="run.failed", payload={"type": "run.failed"}, attempt=2,
        trigger="retry", status=WebhookDelivery.Status.FAILED,
    )
    with django_capture_on_commit_callbacks(execute=True):
        again = webhook_redeliver(delivery=first, actor=owner)
    assert (again.message_id, again.attempt, again.trigger) == ("msg_abc", 3, WebhookDelivery.Trigger.REDELIVER)
    assert again.payload == first.payload
    assert queue == [(webhooks.webhook_deliver, (again.pk,), None)]
    assert AuditLog.objects.get(action="webhook.redeliver").data == {"message_id": "msg_abc", "attempt": 3}

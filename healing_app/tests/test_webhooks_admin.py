"""Admin for webhook endpoints and deliveries: every change goes through the webhook services."""

from __future__ import annotations

import pytest
from django.urls import reverse

from healing_app.models import WebhookDelivery, WebhookEndpoint
from healing_app.webhook_services import webhook_endpoint_create, webhook_secret_rotate
from tasks_app.models import AuditLog, Task
from tests.admin_urls import admin_object_url

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://hooks.example.test/anchor"
CHANGELIST = "admin:healing_app_webhookendpoint_changelist"


@pytest.fixture(autouse=True)
def _isolated(public_webhook_host):
    pass


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-123!"))
    return client


@pytest.fixture
def endpoint():
    created, _ = webhook_endpoint_create(actor=None, url=PUBLIC_URL)
    return created


def test_the_changelist_lists_endpoints_with_status(admin_client, endpoint):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="the receiver answered 410 Gone")
    page = admin_client.get(reverse(CHANGELIST), {"q": "hooks.example"}).content.decode()
    assert endpoint.pk in page and "the receiver answered 410 Gone" in page


def test_adding_an_endpoint_goes_through_the_service_and_shows_the_secret_once(admin_client):
    posted = admin_client.post(
        reverse("admin:healing_app_webhookendpoint_add"), {"url": PUBLIC_URL, "description": "ops", "event_types": ["run.failed"]}
    )
    assert posted.status_code == 302  # Post/Redirect/Get: a reload does not post the form again
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.current_secret not in posted["Location"]
    shown = admin_client.get(posted["Location"])
    assert "no-store" in shown["Cache-Control"]
    assert endpoint.current_secret in shown.content.decode()
    assert endpoint.event_types == ["run.failed"]
    assert AuditLog.objects.filter(action="webhook.create", actor_label="root via admin").exists()

    reloaded = admin_client.get(posted["Location"]).content.decode()
    assert endpoint.current_secret not in reloaded and 'id="secret-shown-once"' in reloaded
    change = admin_client.get(admin_object_url(endpoint)).content.decode()
    assert endpoint.current_secret not in change
    assert endpoint.secret_masked in change


def test_a_refused_url_is_an_error_on_the_admin_form(admin_client):
    response = admin_client.post(reverse("admin:healing_app_webhookendpoint_add"), {"url": "http://169.254.169.254/"})
    assert response.status_code == 200
    assert "metadata" in str(response.context["adminform"].form.errors["url"])
    assert not WebhookEndpoint.objects.exists()


def test_changing_an_endpoint_in_the_admin_is_audited(admin_client, endpoint):
    response = admin_client.post(
        admin_object_url(endpoint),
        {"url": PUBLIC_URL, "description": "changed", "event_types": [], "enabled": "on"},
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.description == "changed"
    assert AuditLog.objects.get(action="webhook.update").data == {"changed": ["description"]}


def _action(admin_client, action: str, *ids, model: str = "webhookendpoint"):
    return admin_client.post(
        reverse(f"admin:healing_app_{model}_changelist"), {"action": action, "_selected_action": [str(i) for i in ids]}
    )


def test_the_rotate_action_shows_the_new_secrets_once(admin_client, endpoint):
    old = endpoint.current_secret
    other, _ = webhook_endpoint_create(actor=None, url=PUBLIC_URL + "/other")
    posted = _action(admin_client, "rotate_secret", endpoint.pk, other.pk)
    assert posted.status_code == 302
    endpoint.refresh_from_db()
    other.refresh_from_db()
    assert endpoint.current_secret != old
    shown = admin_client.get(posted["Location"]).content.decode()
    assert endpoint.current_secret in shown and other.current_secret in shown
    assert endpoint.signing_secrets(at=endpoint.created_at) == [endpoint.current_secret, old]

    reloaded = admin_client.get(posted["Location"]).content.decode()
    assert endpoint.current_secret not in reloaded and 'id="secret-shown-once"' in reloaded
    endpoint.refresh_from_db()
    assert endpoint.signing_secrets(at=endpoint.created_at) == [endpoint.current_secret, old]  # not rotated again


def test_a_secret_rotated_again_before_its_page_was_shown_is_not_shown(admin_client, endpoint):
    posted = _action(admin_client, "rotate_secret", endpoint.pk)
    endpoint.refresh_from_db()
    first = endpoint.current_secret
    webhook_secret_rotate(endpoint=endpoint, actor=None)
    shown = admin_client.get(posted["Location"]).content.decode()
    assert first not in shown and 'id="secret-shown-once"' in shown


def test_the_disable_and_enable_actions(admin_client, endpoint):
    _action(admin_client, "disable", endpoint.pk)
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == "disabled by root via admin"
    _action(admin_client, "enable", endpoint.pk)
    endpoint.refresh_from_db()
    assert endpoint.enabled


def test_the_send_test_action_queues_a_test_event(admin_client, endpoint):
    _action(admin_client, "send_test", endpoint.pk)
    assert WebhookDelivery.objects.get().event_type == "webhook.test"


def test_deleting_in_the_admin_goes_through_the_service(admin_client, endpoint):
    response = admin_client.post(admin_object_url(endpoint, "delete"), {"post": "yes"})
    assert response.status_code == 302
    assert not WebhookEndpoint.objects.exists()
    assert AuditLog.objects.filter(action="webhook.delete").exists()


def test_an_endpoint_with_deliveries_can_be_deleted_with_its_log(admin_client, endpoint):
    # Deliveries refuse deletion one by one (they are the log); that must not refuse deleting their endpoint.
    WebhookDelivery.objects.create(endpoint=endpoint, message_id="msg_1", event_type="run.failed", payload={})
    confirm = admin_client.get(admin_object_url(endpoint, "delete")).content.decode()
    assert "permission to delete" not in confirm
    response = admin_client.post(admin_object_url(endpoint, "delete"), {"post": "yes"})
    assert response.status_code == 302
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


def test_a_task_whose_webhook_has_deliveries_can_be_deleted_in_the_admin(admin_client):
    task = Task.objects.create(name="t")
    endpoint, _ = webhook_endpoint_create(actor=None, url=PUBLIC_URL, task=task)
    WebhookDelivery.objects.create(endpoint=endpoint, message_id="msg_1", event_type="run.failed", payload={})
    assert "permission to delete" not in admin_client.get(admin_object_url(task, "delete")).content.decode()
    assert admin_client.post(admin_object_url(task, "delete"), {"post": "yes"}).status_code == 302
    assert not Task.objects.filter(pk=task.pk).exists() and not WebhookDelivery.objects.exists()


def test_deliveries_are_read_only_and_can_be_redelivered(admin_client, endpoint):
    first = WebhookDelivery.objects.create(endpoint=endpoint, message_id="msg_1", event_type="run.failed", payload={}, status="failed")
    assert admin_client.get(reverse("admin:healing_app_webhookdelivery_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:healing_app_webhookdelivery_add")).status_code == 403
    _action(admin_client, "redeliver", first.pk, model="webhookdelivery")
    again = WebhookDelivery.objects.get(attempt=2)
    assert (again.message_id, again.trigger) == ("msg_1", "redeliver")

"""The admin's security rules for heals and webhooks: heals and reviews are history, and webhook endpoints are
changed only by their owner or by staff with the change permission (being staff is not enough)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from healing_app.models import HealingEvent, Review, WebhookDelivery, WebhookEndpoint
from healing_app.tests.factories import pending_event
from healing_app.webhook_services import (
    webhook_can_manage,
    webhook_endpoint_create,
    webhook_endpoints_for,
)
from tasks_app.models import AuditLog, CodeVersion
from tests.admin_urls import admin_object_url

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://hooks.example.test/anchor"


@pytest.fixture(autouse=True)
def _isolated(public_webhook_host):
    pass


def _staff(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username, password=None, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # a fresh instance: permissions are cached per instance


@pytest.fixture
def root_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password=None))
    return client


@pytest.fixture
def endpoint(member):
    created, _ = webhook_endpoint_create(actor=member, url=PUBLIC_URL)
    return created


def _action(client, model: str, action: str, ids: list, **extra):
    data = {"action": action, "_selected_action": ids, **extra}
    return client.post(reverse(f"admin:{model}_changelist"), data)


# -- heals and reviews are history ------------------------------------------------------------------------


def test_a_heal_waiting_for_review_cannot_be_deleted_in_the_admin(root_client):
    event = pending_event()
    url = admin_object_url(event, "delete")
    assert root_client.post(url, {"post": "yes"}).status_code == 403
    _action(root_client, "healing_app_healingevent", "delete_selected", [event.pk], post="yes")  # not offered
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.PENDING_REVIEW
    assert CodeVersion.objects.filter(pk=event.new_version_id).exists()


def test_reviews_cannot_be_deleted_in_the_admin(root_client, reviewer):
    event = pending_event()
    review = Review.objects.create(event=event, decision="rejected", reviewer=reviewer, comment="no")
    delete = admin_object_url(review, "delete")
    assert root_client.post(delete, {"post": "yes"}).status_code == 403
    _action(root_client, "healing_app_review", "delete_selected", [review.pk], post="yes")  # not offered
    assert Review.objects.filter(pk=review.pk).exists()


# -- webhook endpoints ------------------------------------------------------------------------------------


@pytest.mark.parametrize("owned", [False, True], ids=["someone_elses", "their_own"])
@pytest.mark.parametrize("action", ["send_test", "rotate_secret", "enable", "disable"])
def test_webhook_actions_need_the_change_permission(client, django_user_model, endpoint, action, owned):
    viewer = _staff(django_user_model, "viv", "view_webhookendpoint")
    if owned:  # the service would let an owner, so only the admin's own permission check stops this
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(owner=viewer)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=action != "enable")
    before = WebhookEndpoint.objects.get(pk=endpoint.pk)
    client.force_login(viewer)
    response = _action(client, "healing_app_webhookendpoint", action, [endpoint.pk])
    assert "whsec_" not in response.content.decode()
    after = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (after.secret, after.enabled) == (before.secret, before.enabled)
    assert not WebhookDelivery.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="webhook.").exclude(action="webhook.create").exists()


def test_staff_with_the_change_permission_can_rotate_any_secret_in_the_admin(client, django_user_model, endpoint):
    client.force_login(_staff(django_user_model, "cas", "view_webhookendpoint", "change_webhookendpoint"))
    posted = _action(client, "healing_app_webhookendpoint", "rotate_secret", [endpoint.pk])
    response = client.get(posted["Location"])  # the secret is shown after a redirect, once
    assert "no-store" in response["Cache-Control"]
    endpoint.refresh_from_db()
    assert endpoint.current_secret in response.content.decode()


def test_being_staff_is_not_enough_to_see_or_manage_someone_elses_endpoint(django_user_model, endpoint):
    staff = _staff(django_user_model, "sam")
    assert not webhook_can_manage(user=staff, endpoint=endpoint)
    assert list(webhook_endpoints_for(user=staff)) == []


def test_staff_with_the_view_permission_see_every_endpoint_but_may_not_manage_it(django_user_model, endpoint):
    viewer = _staff(django_user_model, "viv", "view_webhookendpoint")
    assert list(webhook_endpoints_for(user=viewer)) == [endpoint]
    assert not webhook_can_manage(user=viewer, endpoint=endpoint)


def test_staff_with_the_change_permission_see_and_manage_every_endpoint(django_user_model, endpoint):
    changer = _staff(django_user_model, "cas", "change_webhookendpoint")
    assert list(webhook_endpoints_for(user=changer)) == [endpoint]
    assert webhook_can_manage(user=changer, endpoint=endpoint)


def test_the_owner_manages_their_endpoint_without_any_permission(member, endpoint):
    assert webhook_can_manage(user=member, endpoint=endpoint)
    assert list(webhook_endpoints_for(user=member)) == [endpoint]


def test_an_inactive_staff_user_manages_nothing(django_user_model, endpoint):
    changer = _staff(django_user_model, "cas", "change_webhookendpoint")
    changer.is_active = False
    assert not webhook_can_manage(user=changer, endpoint=endpoint)

"""The webhooks API at /api/v1/webhooks/: endpoints, secrets shown only when made, tests, the delivery log, redelivery."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission

from healing_app.models import WebhookDelivery, WebhookEndpoint
from tasks_app.api_keys import api_key_create
from tasks_app.models import AuditLog, Task

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("public_webhook_host")]

BASE = "/api/v1/webhooks"
PUBLIC_URL = "https://hooks.example.test/anchor"


class Api:
    def __init__(self, client, user):
        self.client = client
        self.key, raw = api_key_create(user=user, name="tests")
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    def call(self, method: str, path: str, body=None):
        # No body means an empty one, as curl -X POST sends (the test client's post() would send a multipart frame).
        data = json.dumps(body) if body is not None else ""
        content_type = "application/json" if body is not None else ""
        response = self.client.generic(method.upper(), BASE + path, data, content_type, **self.headers)
        return response.status_code, (response.json() if response.content else None)


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("mo", password="pw-mo-123!")


@pytest.fixture
def api(client, owner):
    return Api(client, owner)


@pytest.fixture
def created(api):
    status, body = api.call("post", "", {"url": PUBLIC_URL, "event_types": ["healing.deployed"]})
    assert status == 201, body
    return body


def test_creating_an_endpoint_answers_201_with_its_secret_once(api, created, owner):
    assert created["id"].startswith("wh_")
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["healing.deployed"]
    assert created["enabled"] is True
    status, fetched = api.call("get", f"/{created['id']}")
    assert status == 200
    assert "secret" not in fetched
    status, listed = api.call("get", "")
    assert [e["id"] for e in listed["data"]] == [created["id"]]
    assert "secret" not in listed["data"][0]
    log = AuditLog.objects.get(action="webhook.create")
    assert log.actor_label == f"mo via api key {api.key.id}"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "url"),
        ({"url": "http://127.0.0.1/hook"}, "url"),
        ({"url": "http://[::ffff:127.0.0.1]/hook"}, "url"),
        ({"url": "http://10.0.0.1/hook"}, "url"),
        ({"url": "http://localhost/hook"}, "url"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": PUBLIC_URL, "event_types": ["healing.exploded"]}, "event_types.0"),
        ({"url": PUBLIC_URL, "task": "task_nope"}, "task"),
        ({"url": PUBLIC_URL, "colour": "red"}, "colour"),
        ({}, "url"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, body, field):
    status, answer = api.call("post", "", body)
    assert status == 400
    assert answer["error"]["code"] == "invalid_input"
    assert answer["error"]["field"] == field
    assert answer["error"]["message"]
    assert not WebhookEndpoint.objects.exists()


def test_an_endpoint_can_be_limited_to_a_task_and_changed_partially(api, created):
    task = Task.objects.create(name="contact form")
    status, body = api.call("patch", f"/{created['id']}", {"task": task.pk, "description": "ci"})
    assert status == 200, body
    assert (body["task"], body["description"], body["event_types"]) == (task.pk, "ci", ["healing.deployed"])
    status, body = api.call("patch", f"/{created['id']}", {"task": None})
    assert body["task"] is None


def test_a_disabled_endpoint_can_be_enabled_again(api, created):
    WebhookEndpoint.objects.filter(pk=created["id"]).update(enabled=False, disabled_reason="the receiver answered 410 Gone")
    status, body = api.call("get", f"/{created['id']}")
    assert (body["enabled"], body["disabled_reason"]) == (False, "the receiver answered 410 Gone")
    status, body = api.call("patch", f"/{created['id']}", {"enabled": True})
    assert (status, body["enabled"], body["disabled_reason"]) == (200, True, "")


def test_a_url_change_is_checked_by_the_ssrf_guard(api, created):
    status, body = api.call("patch", f"/{created['id']}", {"url": "http://169.254.169.254/"})
    assert (status, body["error"]["field"]) == (400, "url")


def test_rotating_returns_the_new_secret_and_when_the_old_one_stops(api, created):
    status, body = api.call("post", f"/{created['id']}/rotate-secret")
    assert status == 200, body
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    assert body["previous_secret_expires_at"] is not None
    status, body = api.call("post", f"/{created['id']}/rotate-secret", {"grace_seconds": 0})
    assert body["previous_secret_expires_at"] is None
    status, body = api.call("post", f"/{created['id']}/rotate-secret", {"grace_seconds": 30 * 86400})
    assert (status, body["error"]["field"]) == (400, "grace_seconds")


def test_a_test_event_is_queued_and_shows_in_the_delivery_log(api, created):
    status, delivery = api.call("post", f"/{created['id']}/test")
    assert status == 202, delivery
    assert (delivery["event_type"], delivery["trigger"], delivery["status"]) == ("webhook.test", "test", "pending")
    status, page = api.call("get", f"/{created['id']}/deliveries")
    assert status == 200
    assert [d["id"] for d in page["data"]] == [delivery["id"]]
    assert page["data"][0]["message_id"].startswith("msg_")


def test_a_test_event_takes_no_fields_and_names_one_sent_anyway(api, created):
    status, body = api.call("post", f"/{created['id']}/test", {"event_type": "healing.deployed"})
    assert status == 400 and body["error"]["field"] == "event_type"
    assert api.call("get", f"/{created['id']}/deliveries")[1]["data"] == []


def test_the_delivery_log_filters_by_status_and_pages(api, created):
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    for n in range(3):
        WebhookDelivery.objects.create(
            endpoint=endpoint, message_id=f"msg_{n}", event_type="run.failed", payload={}, status="failed" if n else "succeeded"
        )
    status, page = api.call("get", f"/{created['id']}/deliveries?status=failed&limit=1")
    assert status == 200
    assert len(page["data"]) == 1 and page["data"][0]["status"] == "failed"
    status, rest = api.call("get", f"/{created['id']}/deliveries?status=failed&limit=1&cursor={page['next_cursor']}")
    assert len(rest["data"]) == 1 and rest["data"][0]["id"] != page["data"][0]["id"]
    status, _ = api.call("get", f"/{created['id']}/deliveries?status=lost")
    assert status == 400


def test_a_delivery_can_be_redelivered_with_the_same_message_id(api, created):
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    first = WebhookDelivery.objects.create(
        endpoint=endpoint, message_id="msg_1", event_type="run.failed", payload={"type": "run.failed"}, status="failed"
    )
    status, again = api.call("post", f"/{created['id']}/deliveries/{first.pk}/redeliver")
    assert status == 202, again
    assert (again["message_id"], again["attempt"], again["trigger"]) == ("msg_1", 2, "redeliver")


def test_deleting_answers_204_and_the_endpoint_is_gone(api, created):
    status, _ = api.call("delete", f"/{created['id']}")
    assert status == 204
    status, body = api.call("get", f"/{created['id']}")
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_someone_elses_endpoints_are_404s(client, created, django_user_model):
    other = Api(client, django_user_model.objects.create_user("eve", password="pw-eve-123!"))
    assert other.call("get", "")[1]["data"] == []
    for method, path in [
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("post", "/rotate-secret"),
        ("post", "/test"),
        ("get", "/deliveries"),
    ]:
        status, body = other.call(method, f"/{created['id']}{path}", {} if method == "patch" else None)
        assert (status, body["error"]["code"]) == (404, "not_found"), (method, path)
    assert WebhookEndpoint.objects.filter(pk=created["id"]).exists()


def test_staff_with_the_view_permission_see_every_endpoint(client, created, django_user_model):
    user = django_user_model.objects.create_user("sam", password="pw-sam-123!", is_staff=True)
    assert Api(client, user).call("get", f"/{created['id']}")[0] == 404  # staff alone is not enough
    user.user_permissions.add(Permission.objects.get(codename="view_webhookendpoint"))
    status, _ = Api(client, django_user_model.objects.get(pk=user.pk)).call("get", f"/{created['id']}")
    assert status == 200


def test_the_api_needs_a_key(client):
    response = client.get(BASE)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"

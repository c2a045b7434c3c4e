"""Dashboard pages at /webhooks/: list with status, create/edit, delivery log, and the POST buttons."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from healing_app.models import WebhookDelivery, WebhookEndpoint
from healing_app.webhook_services import webhook_endpoint_create, webhook_secret_rotate
from tasks_app.models import AuditLog

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://hooks.example.test/anchor"


@pytest.fixture(autouse=True)
def _isolated(public_webhook_host):
    return public_webhook_host


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("mo", password="pw-mo-123!")


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def endpoint(owner):
    created, _ = webhook_endpoint_create(actor=owner, url=PUBLIC_URL, description="team chat")
    return created


def test_pages_need_a_login(client, endpoint):
    for url in (
        reverse("webhooks:list"),
        reverse("webhooks:create"),
        reverse("webhooks:detail", args=[endpoint.pk]),
        reverse("webhooks:secret", args=[endpoint.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_the_list_shows_endpoints_and_why_a_disabled_one_is_off(browser, endpoint):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="the receiver answered 410 Gone")
    page = browser.get(reverse("webhooks:list")).content.decode()
    assert PUBLIC_URL in page
    assert "disabled because the receiver answered 410 Gone" in page


def test_creating_an_endpoint_redirects_to_a_page_that_shows_its_secret_once(browser, owner):
    response = browser.post(
        reverse("webhooks:create"), {"url": PUBLIC_URL, "description": "ci", "event_types": ["healing.deployed", "run.failed"]}
    )
    endpoint = WebhookEndpoint.objects.get()
    secret = endpoint.current_secret
    assert (endpoint.owner, endpoint.event_types) == (owner, ["healing.deployed", "run.failed"])
    # Post/Redirect/Get: a reload (F5) asks for the page again instead of submitting the form again.
    assert response.status_code == 302
    assert response["Location"] == reverse("webhooks:secret", args=[endpoint.pk])
    _assert_secret_kept_only_encrypted(browser, response, secret)

    first = browser.get(response["Location"])
    assert first.status_code == 200
    assert first["Cache-Control"] == "no-store"
    assert secret in first.content.decode()
    assert "Webhook endpoint created" in first.content.decode()

    again = browser.get(response["Location"])  # F5
    page = again.content.decode()
    assert again.status_code == 200
    assert again["Cache-Control"] == "no-store"
    assert secret not in page
    assert "was shown once" in page and "rotate" in page.lower()
    assert reverse("webhooks:rotate_secret", args=[endpoint.pk]) in page
    assert endpoint.secret_masked in page
    assert WebhookEndpoint.objects.count() == 1

    detail = browser.get(reverse("webhooks:detail", args=[endpoint.pk])).content.decode()
    assert secret not in detail
    assert endpoint.secret_masked in detail


def _assert_secret_kept_only_encrypted(browser, response, secret: str) -> None:
    # Not in the URL, not in a cookie (messages), and the session holds it encrypted only; a cookie-based session
    # would hand even that to the browser.
    assert "cookies" not in settings.SESSION_ENGINE
    assert secret not in response["Location"]
    assert all(secret not in morsel.value for morsel in response.cookies.values())
    assert secret not in json.dumps(dict(browser.session.items()))


def test_the_secret_page_without_a_new_secret_explains_how_to_get_one(browser, endpoint):
    response = browser.get(reverse("webhooks:secret", args=[endpoint.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert endpoint.current_secret not in page
    assert "was shown once" in page


def test_a_secret_replaced_before_it_was_shown_is_not_shown(browser, owner):
    response = browser.post(reverse("webhooks:create"), {"url": PUBLIC_URL})
    endpoint = WebhookEndpoint.objects.get()
    first = endpoint.current_secret
    webhook_secret_rotate(endpoint=endpoint, actor=owner)  # say, in another tab, before the redirect was followed

    page = browser.get(response["Location"]).content.decode()

    endpoint.refresh_from_db()
    assert first not in page and endpoint.current_secret not in page
    assert "was shown once" in page


def test_reloading_the_created_page_does_not_create_a_second_endpoint(browser):
    form = {"url": PUBLIC_URL, "event_types": ["run.failed"]}
    created = browser.post(reverse("webhooks:create"), form)
    assert created.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert browser.get(created["Location"]).status_code == 200
    assert browser.get(created["Location"]).status_code == 200  # F5 on the secret page: no form sent again

    again = browser.post(reverse("webhooks:create"), form)  # Back to the form, and Create again

    assert again.status_code == 400
    assert again.context["form"].errors["url"] == [
        f"you have an endpoint for this URL with these filters already ({endpoint.pk}); "
        "edit it, or rotate its secret if you need a new one"
    ]
    assert WebhookEndpoint.objects.count() == 1
    other_filters = browser.post(reverse("webhooks:create"), {"url": PUBLIC_URL, "event_types": ["healing.failed"]})
    assert other_filters.status_code == 302 and WebhookEndpoint.objects.count() == 2

    spelled_otherwise = PUBLIC_URL.replace("https://", "HTTPS://", 1)
    assert spelled_otherwise != PUBLIC_URL
    assert browser.post(reverse("webhooks:create"), {**form, "url": spelled_otherwise}).status_code == 400
    other = WebhookEndpoint.objects.exclude(pk=endpoint.pk).get()
    edit = browser.post(reverse("webhooks:edit", args=[other.pk]), {"url": PUBLIC_URL, "event_types": ["run.failed"]})
    # The URL is the same already: the filters, changed to match the other endpoint's, are what the error names.
    assert edit.status_code == 400 and f"({endpoint.pk})" in edit.context["form"].errors["event_types"][0]
    assert WebhookEndpoint.objects.get(pk=other.pk).event_types == ["healing.failed"]


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/", "http://127.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://10.0.0.1/", "http://localhost/", "file:///etc/passwd"]
)
def test_a_refused_url_is_a_field_error_on_the_form(browser, url):
    response = browser.post(reverse("webhooks:create"), {"url": url})
    assert response.status_code == 400
    assert response.context["form"].errors["url"]
    assert not WebhookEndpoint.objects.exists()


def test_the_url_help_says_what_this_server_accepts(browser, settings):
    assert "on a public address" in browser.get(reverse("webhooks:create")).content.decode()
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    page = browser.get(reverse("webhooks:create")).content.decode()
    assert "private addresses too" in page and "on a public address" not in page


def test_editing_saves_through_the_service(browser, endpoint):
    response = browser.post(
        reverse("webhooks:edit", args=[endpoint.pk]), {"url": PUBLIC_URL, "description": "ops", "event_types": ["run.failed"]}
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.description, endpoint.event_types) == ("ops", ["run.failed"])
    assert AuditLog.objects.filter(action="webhook.update", actor_label="mo via dashboard").exists()


def test_an_endpoint_saved_before_the_url_rules_can_still_have_its_description_edited(browser, endpoint):
    legacy = "https://user:token@hooks.example.com/in"  # refused on save since; kept until someone edits the URL
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=legacy)
    form = {"url": legacy, "description": "ops", "event_types": endpoint.event_types}
    response = browser.post(reverse("webhooks:edit", args=[endpoint.pk]), form)
    assert response.status_code == 302, response.content.decode()[:500]
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.description) == (legacy, "ops")
    changed = browser.post(reverse("webhooks:edit", args=[endpoint.pk]), {**form, "url": legacy + "/v2"})
    assert changed.status_code == 400 and changed.context["form"].errors["url"]


def test_the_edit_form_starts_from_the_endpoint(browser, endpoint):
    form = browser.get(reverse("webhooks:edit", args=[endpoint.pk])).context["form"]
    assert form.initial["url"] == PUBLIC_URL
    assert form.initial["description"] == "team chat"


def test_the_delivery_log_lists_attempts_with_a_redeliver_button(browser, endpoint):
    failed = WebhookDelivery.objects.create(
        endpoint=endpoint, message_id="msg_log", event_type="healing.failed", payload={"type": "healing.failed"},
        status="failed", response_code=500, error="HTTP 500", response_excerpt="boom",
    )
    page = browser.get(reverse("webhooks:detail", args=[endpoint.pk])).content.decode()
    assert "msg_log" in page and "HTTP 500" in page and "boom" in page
    assert reverse("webhooks:redeliver", args=[endpoint.pk, failed.pk]) in page
    part = browser.get(reverse("webhooks:detail_part", args=[endpoint.pk])).content.decode()  # what the page re-fetches
    assert part.startswith('<div id="endpoint-live">') and "msg_log" in part and "HTTP 500" in part


def test_a_disabled_endpoint_page_says_why(browser, endpoint):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False, disabled_reason="15+ deliveries in a row failed over more than 24 hours (last: HTTP 503)"
    )
    page = browser.get(reverse("webhooks:detail", args=[endpoint.pk])).content.decode()
    assert "disabled because 15+ deliveries in a row failed" in page


def test_send_test_queues_a_test_event(browser, endpoint, _isolated):
    response = browser.post(reverse("webhooks:send_test", args=[endpoint.pk]))
    assert response.status_code == 302
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "webhook.test"


def test_redeliver_queues_the_next_attempt(browser, endpoint):
    first = WebhookDelivery.objects.create(endpoint=endpoint, message_id="msg_1", event_type="run.failed", payload={}, status="failed")
    response = browser.post(reverse("webhooks:redeliver", args=[endpoint.pk, first.pk]))
    assert response.status_code == 302
    assert WebhookDelivery.objects.filter(message_id="msg_1", attempt=2, trigger="redeliver").exists()


def test_rotating_redirects_to_a_page_that_shows_the_new_secret_once(browser, endpoint):
    old = endpoint.current_secret
    response = browser.post(reverse("webhooks:rotate_secret", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    new = endpoint.current_secret
    assert new != old
    assert response.status_code == 302
    assert response["Location"] == reverse("webhooks:secret", args=[endpoint.pk])
    _assert_secret_kept_only_encrypted(browser, response, new)

    first = browser.get(response["Location"])
    page = first.content.decode()
    assert first["Cache-Control"] == "no-store"
    assert new in page and old not in page
    assert "New signing secret" in page and "two signatures" in page

    again = browser.get(response["Location"])  # F5: neither a second rotation nor the secret again
    assert again.status_code == 200
    assert new not in again.content.decode() and "was shown once" in again.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.current_secret == new

    browser.post(reverse("webhooks:rotate_secret", args=[endpoint.pk]), {"immediately": "1"})
    endpoint.refresh_from_db()
    assert endpoint.previous_secret == ""


def test_disable_and_enable_buttons(browser, endpoint):
    browser.post(reverse("webhooks:set_enabled", args=[endpoint.pk]), {"enabled": "0"})
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == "disabled by mo via dashboard"
    browser.post(reverse("webhooks:set_enabled", args=[endpoint.pk]), {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.disabled_reason == ""


def test_delete_asks_first_then_deletes(browser, endpoint):
    assert browser.get(reverse("webhooks:delete", args=[endpoint.pk])).status_code == 200
    assert WebhookEndpoint.objects.exists()
    response = browser.post(reverse("webhooks:delete", args=[endpoint.pk]))
    assert response.status_code == 302
    assert not WebhookEndpoint.objects.exists()


def test_buttons_only_answer_post_and_their_address_visited_leads_to_the_endpoint(browser, endpoint):
    secret = endpoint.current_secret
    page = reverse("webhooks:detail", args=[endpoint.pk])
    for name in ("send_test", "rotate_secret", "set_enabled"):
        visited = browser.get(reverse(f"webhooks:{name}", args=[endpoint.pk]))
        assert (visited.status_code, visited["Location"]) == (302, page), name
        assert browser.head(reverse(f"webhooks:{name}", args=[endpoint.pk])).status_code == 405
    redeliver = browser.get(reverse("webhooks:redeliver", args=[endpoint.pk, 1]))
    assert redeliver["Location"] == page  # past /deliveries/1/, which is no page
    endpoint.refresh_from_db()
    assert (endpoint.current_secret, endpoint.enabled, endpoint.deliveries.count()) == (secret, True, 0)


def test_the_list_and_endpoint_pages_only_show(browser, endpoint):
    for page in (reverse("webhooks:list"), reverse("webhooks:detail", args=[endpoint.pk])):
        assert browser.post(page).status_code == 405, page


def test_buttons_need_the_csrf_token(owner, endpoint):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    assert strict.post(reverse("webhooks:send_test", args=[endpoint.pk])).status_code == 403
    page = strict.get(reverse("webhooks:detail", args=[endpoint.pk])).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert strict.post(reverse("webhooks:send_test", args=[endpoint.pk]), {"csrfmiddlewaretoken": token}).status_code == 302


def test_someone_elses_endpoint_is_a_404_everywhere(client, django_user_model, endpoint):
    client.force_login(django_user_model.objects.create_user("eve", password="pw-eve-123!"))
    assert PUBLIC_URL not in client.get(reverse("webhooks:list")).content.decode()
    for name in ("detail", "detail_part", "edit", "delete", "secret"):
        assert client.get(reverse(f"webhooks:{name}", args=[endpoint.pk])).status_code == 404
    for name in ("send_test", "rotate_secret", "set_enabled", "delete"):
        assert client.post(reverse(f"webhooks:{name}", args=[endpoint.pk])).status_code == 404
    endpoint.refresh_from_db()
    assert endpoint.enabled


def test_staff_with_the_change_permission_can_change_any_endpoint(client, django_user_model, endpoint):
    staff = django_user_model.objects.create_user("sam", password="pw-sam-123!", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_webhookendpoint"))
    client.force_login(staff)
    response = client.post(reverse("webhooks:set_enabled", args=[endpoint.pk]), {"enabled": "0"})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert not endpoint.enabled

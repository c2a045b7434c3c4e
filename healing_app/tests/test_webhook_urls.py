"""Webhook URLs that are malformed: every one is a 400 naming `url` with a message that says what is wrong,
from the API and from the dashboard form alike, and never a 500."""

from __future__ import annotations

import ipaddress
import json

import pytest
from django.urls import reverse

from healing_app import ssrf
from healing_app.models import WebhookEndpoint
from healing_app.tests.conftest import PUBLIC_HOST, PUBLIC_IP
from healing_app.webhook_services import webhook_endpoint_create
from tasks_app.api_keys import api_key_create
from tasks_app.config import InputError

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("public_webhook_host")]

PUBLIC_URL = f"https://{PUBLIC_HOST}/anchor"


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("mo", password="pw-mo-123!")


@pytest.fixture
def api(client, owner):
    _key, raw = api_key_create(user=owner, name="tests")

    def call(method: str, path: str, body: dict) -> tuple[int, dict]:
        response = client.generic(
            method.upper(), "/api/v1/webhooks" + path, json.dumps(body), "application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
        return response.status_code, response.json() if response.content else {}

    return call


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def endpoint(owner):
    created, _ = webhook_endpoint_create(actor=owner, url=PUBLIC_URL)
    return created


# Each URL with a piece of the message that says what is wrong with it.
MALFORMED = [
    pytest.param("https://1.1.1.1:99999/", "port 99999 is out of range", id="port-too-big"),
    pytest.param("https://hooks.example.test:0/", "port 0 is out of range", id="port-zero"),
    pytest.param("https://hooks.example.test:-1/", "port -1 is out of range", id="port-negative"),
    pytest.param("https://[::1/", "bracket", id="unclosed-ipv6-bracket"),
    pytest.param("https://::1]/", "bracket", id="stray-closing-bracket"),
    pytest.param("https://user:pass@hooks.example.test/", "user name or password", id="userinfo"),
    pytest.param("https://token@hooks.example.test/", "user name or password", id="user-only"),
    pytest.param("https://hooks.example.test\\@evil.example/", "user name or password", id="backslash-userinfo-trick"),
    pytest.param("https://hooks.example.test/a b", "spaces", id="space-in-path"),
    pytest.param("https://hooks .example.test/", "spaces", id="space-in-host"),
    pytest.param("https://hooks.example.test/\x01", "control characters", id="control-character"),
    pytest.param("https://hooks.example.test/\x00", "NUL", id="nul"),  # refused by the API layer before the service
    pytest.param("https://hooks.example.test/\x7f", "control characters", id="delete"),
    pytest.param("https://hooks.example.test/a\u2028b", "spaces", id="unicode-line-separator"),
    pytest.param("https:///path", "no host", id="empty-host"),
    pytest.param("https://:443/", "no host", id="port-without-host"),
    pytest.param("ftp://hooks.example.test/", "only http:// and https://", id="ftp"),
    pytest.param("javascript:alert(1)", "only http:// and https://", id="javascript"),
    pytest.param("hooks.example.test/anchor", "only http:// and https://", id="no-scheme"),
    pytest.param("https://a..example.test/", "not a valid host name", id="empty-label"),
    pytest.param("https://" + "a" * 64 + ".example.test/", "not a valid host name", id="label-over-63"),
    pytest.param("https://\U0001f4a9.example.test/", "not a valid URL", id="invalid-idn"),
    pytest.param("https://hooks.example.test/\u202e", "invisible formatting characters", id="right-to-left-override"),
    pytest.param(PUBLIC_URL + "/" + "a" * 2000, "2000 characters", id="too-long"),
]


@pytest.mark.parametrize("url, message", MALFORMED)
def test_the_api_refuses_a_malformed_url_with_a_400_naming_url(api, url, message):
    status, answer = api("post", "", {"url": url})
    assert status == 400, answer
    assert answer["error"]["field"] == "url"
    assert message in answer["error"]["message"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url, message", MALFORMED)
def test_the_api_refuses_a_malformed_url_on_update_too(api, endpoint, url, message):
    status, answer = api("patch", f"/{endpoint.pk}", {"url": url})
    assert status == 400, answer
    assert answer["error"]["field"] == "url"
    assert message in answer["error"]["message"]
    endpoint.refresh_from_db()
    assert endpoint.url == PUBLIC_URL


@pytest.mark.parametrize("url, message", [p for p in MALFORMED if p.id not in ("nul", "too-long")])
def test_the_form_refuses_a_malformed_url_with_a_400_and_the_error_on_url(browser, url, message):
    response = browser.post(reverse("webhooks:create"), {"url": url})
    assert response.status_code == 400
    errors = response.context["form"].errors["url"]
    assert any(message in error for error in errors), errors
    assert message in response.content.decode() or message.replace("'", "&#x27;") in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", ["https://hooks.example.test/\x00", PUBLIC_URL + "/" + "a" * 2000])
def test_the_form_refuses_nul_and_overlong_urls_with_a_400(browser, url):
    # Django's CharField catches these before the service does, with its own wording.
    response = browser.post(reverse("webhooks:create"), {"url": url})
    assert response.status_code == 400
    assert response.context["form"].errors["url"]
    assert not WebhookEndpoint.objects.exists()


def test_the_edit_form_answers_400_when_the_url_is_refused(browser, endpoint):
    response = browser.post(reverse("webhooks:edit", args=[endpoint.pk]), {"url": "https://1.1.1.1:99999/"})
    assert response.status_code == 400
    assert "port 99999 is out of range" in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.url == PUBLIC_URL


def test_the_edit_form_answers_400_when_a_form_field_is_invalid(browser, endpoint):
    response = browser.post(reverse("webhooks:edit", args=[endpoint.pk]), {"url": PUBLIC_URL, "event_types": ["nope"]})
    assert response.status_code == 400
    assert response.context["form"].errors["event_types"]


def test_the_create_form_answers_400_when_the_url_is_missing(browser):
    response = browser.post(reverse("webhooks:create"), {"url": ""})
    assert response.status_code == 400
    assert response.context["form"].errors["url"]


def test_the_forms_still_answer_200_on_get(browser, endpoint):
    assert browser.get(reverse("webhooks:create")).status_code == 200
    assert browser.get(reverse("webhooks:edit", args=[endpoint.pk])).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.test:1/anchor",
        "https://hooks.example.test:65535/anchor",
        "https://hooks.example.test/anchor?token=abc&x=%20y#frag",
        "HTTPS://HOOKS.EXAMPLE.TEST/anchor",
        "  https://hooks.example.test/anchor  ",
    ],
)
def test_well_formed_urls_are_still_accepted(api, url):
    status, answer = api("post", "", {"url": url})
    assert status == 201, answer
    assert answer["url"] == url.strip()


def test_an_idn_host_is_checked_by_its_ascii_form(api, monkeypatch):
    asked: list[str] = []

    def resolve(host: str, port: int):
        asked.append(host)
        return [ipaddress.ip_address(PUBLIC_IP)]

    monkeypatch.setattr(ssrf, "resolve", resolve)
    status, answer = api("post", "", {"url": "https://bücher.example/hook"})
    assert status == 201, answer
    assert asked == ["xn--bcher-kva.example"]


def test_an_idn_host_that_resolves_to_loopback_is_refused(api, monkeypatch):
    monkeypatch.setattr(ssrf, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    status, answer = api("post", "", {"url": "https://bücher.example/hook"})
    assert status == 400
    assert answer["error"]["field"] == "url"
    assert "loopback" in answer["error"]["message"]


# -- the sender parses with the same rules -----------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://1.1.1.1:99999/", "https://[::1/", "https://a..example.test/", "https://x/\x01"]
)
def test_the_sender_refuses_malformed_urls_before_connecting(url):
    with pytest.raises(ssrf.UnsafeURL):
        ssrf.guarded_post(url, content=b"{}", headers={}, timeout=1, allow_private=False)


@pytest.mark.parametrize("url", ["https://user:pass@hooks.example.test/", "https://hooks.example.test/a b"])
def test_the_sender_keeps_sending_to_stored_urls_that_saving_now_refuses(url):
    # Endpoints saved before these rules keep working until someone edits them.
    assert ssrf.parse_url(url) == ("https", PUBLIC_HOST, 443)


def test_the_service_refuses_a_nul_in_the_url_itself(owner):
    # The admin form and management code reach the service without the API's NUL check in front of it.
    with pytest.raises(InputError, match="control characters") as refused:
        webhook_endpoint_create(actor=owner, url="https://hooks.example.test/\x00")
    assert refused.value.field == "url"

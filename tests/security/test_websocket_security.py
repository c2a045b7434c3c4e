"""The live websocket checks where a connection comes from and who is behind it, on the full ASGI stack
(AllowedHostsOriginValidator, the session middleware, the consumer)."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def private_channel_layer(settings):
    settings.CHANNEL_LAYERS = {
        name: {**conf, "CONFIG": {**conf["CONFIG"], "prefix": f"anchor-sec-{uuid.uuid4().hex[:8]}"}}
        for name, conf in settings.CHANNEL_LAYERS.items()
    }
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _connects(*, origin: str | None = "http://localhost", host: str = "localhost", cookie: str | None = None,
              path: str = "/ws/live/") -> tuple[bool, int | None]:
    from anchor_site.asgi import application

    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie:
        headers.append((b"cookie", cookie.encode()))

    async def attempt():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    return async_to_sync(attempt)()


def test_a_logged_in_user_on_the_sites_own_origin_connects(member):
    assert _connects(cookie=_cookie(member))[0] is True


@pytest.mark.parametrize("origin", ["https://evil.example.com", "http://localhost.evil.example.com", "null", "http://127.0.0.2"])
def test_foreign_origins_are_refused_even_with_a_valid_session(member, origin):
    assert _connects(origin=origin, cookie=_cookie(member))[0] is False


@pytest.mark.parametrize("origin, host", [
    ("http://localhost:6666", "localhost:8000"),  # another program on the same host: cookies ignore ports
    ("http://localhost:8000", "localhost"),
    ("ftp://localhost", "localhost"),
])
def test_the_same_host_on_another_port_or_scheme_is_refused(member, origin, host):
    assert _connects(origin=origin, host=host, cookie=_cookie(member))[0] is False


@pytest.mark.parametrize("origin, host", [
    ("http://localhost:8000", "localhost:8000"),
    ("http://LOCALHOST:80", "localhost"),
    ("https://localhost", "localhost:443"),
])
def test_the_sites_own_origin_connects_whichever_way_the_port_is_written(member, origin, host):
    assert _connects(origin=origin, host=host, cookie=_cookie(member))[0] is True


def test_an_https_site_refuses_a_plain_http_origin(member, settings):
    settings.SECURE_HTTPS = True
    assert _connects(origin="http://localhost", cookie=_cookie(member))[0] is False
    assert _connects(origin="https://localhost", cookie=_cookie(member))[0] is True


def test_a_connection_without_an_origin_header_is_refused(member):
    assert _connects(origin=None, cookie=_cookie(member))[0] is False


def test_a_host_that_is_not_allowed_is_refused(member):
    assert _connects(origin="http://attacker.example", host="attacker.example", cookie=_cookie(member))[0] is False


@pytest.mark.parametrize("cookie", [None, "sessionid=not-a-session", "sessionid="])
def test_without_a_valid_session_the_socket_is_closed(cookie):
    connected, code = _connects(cookie=cookie)
    assert connected is False
    assert code == 4401


def test_a_session_that_logged_out_no_longer_connects(member):
    client = Client()
    client.force_login(member)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    assert _connects(cookie=cookie)[0] is True
    client.post("/accounts/logout/")
    assert _connects(cookie=cookie)[0] is False


def test_a_deactivated_user_no_longer_connects(member):
    cookie = _cookie(member)
    member.is_active = False
    member.save()
    assert _connects(cookie=cookie)[0] is False

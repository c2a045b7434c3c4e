"""Websockets from the site's own origin only: scheme, host and port.

Channels' AllowedHostsOriginValidator compares host names only. Cookies ignore ports, so a page served by
another program on another port of the same host (or over plain http for an https site) would carry the
session cookie and could read the live feed. The browser's Origin must name the host and port it connected
to, as the Host header gives them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings

_DEFAULT_PORTS = {"http": 80, "https": 443}


def same_origin(origin: str, host: str, *, https_only: bool) -> bool:
    """Whether `origin` (the Origin header) is the site the browser reached as `host` (the Host header)."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        there = urlsplit("//" + host)
        host_port = there.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number
        return False
    if parts.scheme not in (("https",) if https_only else ("http", "https")):
        return False
    return bool(parts.hostname) and (parts.hostname, origin_port) == (there.hostname, host_port)


class SameOriginWebsocket:
    """ASGI middleware refusing a websocket whose Origin is not the site it connects to."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin", b"").decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1")
            if not same_origin(origin, host, https_only=settings.SECURE_HTTPS):
                return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)

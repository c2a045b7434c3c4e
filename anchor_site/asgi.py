"""HTTP through Django, websockets through Channels (authenticated, same-origin only: scheme, host and port)."""

import os
from http import HTTPStatus

from django.core.asgi import get_asgi_application
from twisted.web import http as twisted_http

# Daphne takes the status line's reason from Twisted, which lacks newer codes and would send
# "429 Unknown Status" for the API's rate limit; fill the gaps from the standard library.
for _status in HTTPStatus:
    twisted_http.RESPONSES.setdefault(_status.value, _status.phrase.encode())

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anchor_site.settings")
django_asgi_app = get_asgi_application()

from tasks_app.runner.browser import hide_from_same_uid  # noqa: E402

# A worker that is not root runs tasks under its own uid, which may be this process's: keep our environment
# (SECRET_KEY, DATABASE_URL) out of their reach, as the worker does for its own.
hide_from_same_uid()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from anchor_site.websocket_origin import SameOriginWebsocket  # noqa: E402
from healing_app.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The host must be allowed, and the Origin must be this very site (scheme, host and port).
        "websocket": AllowedHostsOriginValidator(
            SameOriginWebsocket(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

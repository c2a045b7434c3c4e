"""Cross-cutting HTTP behaviour: security headers, a 404 for NUL in a path, JSON for the API's 405s, and a
clear 503 when the database is away."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, JsonResponse

logger = logging.getLogger(__name__)


class SecurityHeadersMiddleware:
    """Adds the Content-Security-Policy and a strict permissions policy to every response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # The admin and django-rq's staff pages use inline scripts and styles; they keep Django's own
        # defaults (frame and sniffing headers still apply).
        if not request.path.startswith(("/admin/", "/django-rq/")):
            response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        response.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response


class NulInPathMiddleware:
    """No page or endpoint has a NUL in its path, and PostgreSQL answers a query carrying one with an error:
    any URL with `%00` is a 404 before a view can turn it into a 500 (the admin's own routes included)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            if request.path.startswith("/api/"):
                error = {"code": "not_found", "message": "no such path", "field": None}
                return JsonResponse({"error": error}, status=404)
            return HttpResponseNotFound("Not found", content_type="text/plain")
        return self.get_response(request)


class ApiMethodNotAllowedMiddleware:
    """django-ninja answers a method an endpoint does not take with a plain-text 405; the API promises
    JSON errors, so it becomes the API's `{"error": ...}` shape, keeping the Allow header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code != 405
            or not request.path.startswith("/api/")
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        allowed = response.get("Allow", "")
        message = f"{request.method} is not allowed here; allowed: {allowed}"
        json_response = JsonResponse(
            {"error": {"code": "method_not_allowed", "message": message, "field": None}}, status=405
        )
        json_response["Allow"] = allowed
        return json_response


class DatabaseUnavailableMiddleware:
    """Answers 503 with a clear message instead of a 500 traceback while the database is unreachable."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)) or not _looks_like_outage(exception):
            return None
        logger.warning("database unavailable: %s", type(exception).__name__)
        message = "The database is unavailable right now; retry in a few seconds."
        if request.path.startswith("/api/"):
            response = JsonResponse({"error": {"code": "service_unavailable", "message": message}}, status=503)
        else:
            response = HttpResponse(message, status=503, content_type="text/plain")
        response["Retry-After"] = "5"
        return response


def _looks_like_outage(exception: Exception) -> bool:
    text = str(exception).lower()
    return any(
        marker in text
        for marker in ("connection", "could not connect", "server closed", "terminating", "timeout", "database is locked")
    )

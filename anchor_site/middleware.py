"""Cross-cutting HTTP behaviour: security headers, HEAD wherever the API takes GET and JSON for the API's 405s, a
dashboard form's address visited with GET leading to its page, no NUL from a URL reaching a query, a page saying a
form was too large, and a clear 503 when the database is away."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotFound,
    JsonResponse,
    UnreadablePostError,
)
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import Resolver404, resolve

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


class FormAddressVisitedMiddleware:
    """A dashboard address that only takes a form (a button's action; also where a refused form is shown again)
    is visited with GET when someone presses Enter in the address bar, follows a bookmark or a shared link. Instead
    of a blank 405 they get the nearest page above it, the one the form is on: /tasks/<id>/config/ → /tasks/<id>/.
    Not HEAD (a page that hands out a secret once answers only GET), and not the API's or the admin's own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 405 or request.method != "GET" or request.path.startswith(("/api/", "/admin/")):
            return response
        page = _nearest_page_above(request.path)
        return redirect(page) if page else response


def _nearest_page_above(path: str) -> str | None:
    steps = path.strip("/").split("/")
    while steps:
        steps.pop()
        candidate = "/" + "".join(f"{step}/" for step in steps)
        try:
            resolve(candidate)
        except Resolver404:
            continue  # /webhooks/<id>/deliveries/<n>/ is no page; /webhooks/<id>/ is
        return candidate
    return None


class NulInUrlMiddleware:
    """PostgreSQL answers a query carrying a NUL with an error, so no NUL in a URL reaches a view: in the path
    it is a 404 (no page has one; the admin's own routes included), in a query parameter a 400 naming it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        api = request.path.startswith("/api/")
        if "\x00" in request.path:
            if api:
                return api_error(404, "not_found", "no such path")
            return HttpResponseNotFound("Not found", content_type="text/plain")
        bad = next((name for name, values in request.GET.lists() if "\x00" in name + "".join(values)), None)
        if bad is not None:
            name = bad.replace("\x00", "")
            if api:
                return api_error(400, "invalid_input", "must not contain NUL characters", name)
            return HttpResponseBadRequest(f"{name} must not contain NUL characters", content_type="text/plain")
        return self.get_response(request)


class FormTooLargeMiddleware:
    """A form larger than DATA_UPLOAD_MAX_MEMORY_SIZE (text pasted into a task's params or code) gets a 413 page in
    the site's layout (the admin's in the admin) that says so and what usually makes a form that large. Django's own
    answer is a bare 400, or under DEBUG a traceback, since the form is read before any view: CsrfViewMiddleware
    reads it to find the token. The form is read here first for that reason (it is read once; everything after uses
    the same copy). The API answers its own JSON 413 (anchor_site.api).

    Placed last: after AuthenticationMiddleware, so that the page shows who is signed in, and inside every other
    middleware, so that its page gets their headers (X-Frame-Options) like any other."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and not request.path.startswith("/api/"):
            try:
                request.POST  # noqa: B018 -- read to find out whether it can be
            except RequestDataTooBig:
                return _form_too_large(request)
            except UnreadablePostError:
                pass  # the client went away mid-upload: CsrfViewMiddleware refuses it as before, no 500 logged
        return self.get_response(request)


def _form_too_large(request: HttpRequest) -> HttpResponse:
    from django.contrib import admin

    from healing_app.codegen import MAX_CODE_BYTES
    from tasks_app.services import MAX_SECRETS, PARAMS_MAX_BYTES, SECRET_VALUE_MAX

    logger.warning("a form body over DATA_UPLOAD_MAX_MEMORY_SIZE refused (413): %s", request.path)
    sent = int(request.META.get("CONTENT_LENGTH") or 0)
    context = {
        "limit": filesizeformat(settings.DATA_UPLOAD_MAX_MEMORY_SIZE),
        "sent": filesizeformat(sent) if sent else None,
        "params_max": f"{PARAMS_MAX_BYTES // 1024} KB",  # as the fields' own errors say them
        "code_max": f"{MAX_CODE_BYTES // 1024} KB",
        "secrets_max": MAX_SECRETS,
        "secret_value_max": SECRET_VALUE_MAX,
    }
    if request.path.startswith("/admin/"):
        context = {**admin.site.each_context(request), "title": "Form too large", **context}
        return render(request, "admin/413.html", context, status=413)
    return render(request, "413.html", context, status=413)


def api_error(status: int, code: str, message: str, field: str | None = None) -> JsonResponse:
    """The API's error shape, for answers given outside django-ninja (its own handlers use error_response)."""
    return JsonResponse({"error": {"code": code, "message": message, "field": field}}, status=status)


class ApiMethodsMiddleware:
    """Methods on the API, where django-ninja falls short of what the API promises:

    - HEAD is GET without the body, but django-ninja routes by method and would answer it 405. An API HEAD is routed
      as GET, and whatever the answer (a 401 or a 405 too) keeps its status and headers, Content-Length included,
      and loses its body, whatever server runs the app.
    - A method an endpoint does not take gets a plain-text 405; it becomes the API's JSON error, keeping the Allow
      header (HEAD added wherever it lists GET).

    Placed before NulInUrlMiddleware, so that its answers to a HEAD lose their body too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        head = request.method == "HEAD"
        if head:
            request.method = "GET"
        try:
            response = self.get_response(request)
        finally:
            if head:
                request.method = "HEAD"
        if response.status_code == 405 and not response.get("Content-Type", "").startswith("application/json"):
            response = _json_method_not_allowed(request, response)
        if head:
            if response.streaming:
                response.streaming_content = []
            else:
                response.content = b""
        return response


def _json_method_not_allowed(request: HttpRequest, response: HttpResponse) -> JsonResponse:
    allowed = response.get("Allow", "")
    if "GET" in allowed.split(", "):
        allowed += ", HEAD"
    json_response = api_error(405, "method_not_allowed", f"{request.method} is not allowed here; allowed: {allowed}")
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
            response = api_error(503, "service_unavailable", message)
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

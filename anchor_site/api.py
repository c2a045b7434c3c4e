"""The versioned REST API: one NinjaAPI under /api/v1/, its authentication, rate limits and error format.

Every endpoint is authenticated by an API key, sent as `Authorization: Bearer <key>` or as an
`anchor-api-key` header. The routers find the caller in `request.auth` (a `Caller`): `.key`, `.user`
and `.actor`, the actor every change must be audited under.

Every error is JSON shaped `{"error": {"code": ..., "message": ..., "field": ...}}`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import json
import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Swagger
from ninja.params.models import Param
from ninja.params.models import Query as QueryParam
from ninja.parser import Parser
from ninja.security import APIKeyHeader, HttpBearer
from redis.backoff import NoBackoff
from redis.retry import Retry

from healing_app.services import AlreadyDecided, Superseded
from tasks_app.api_keys import api_key_authenticate
from tasks_app.audit import Actor
from tasks_app.config import InputError
from tasks_app.models import ApiKey
from tasks_app.services import DraftNotDeployable, StateConflict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the API key, its owner, and the actor their changes are audited under."""

    key: ApiKey

    @property
    def user(self) -> AbstractBaseUser:
        return self.key.user

    @property
    def actor(self) -> Actor:
        return Actor(user=self.key.user, via=f"api key {self.key.id}")


class RateLimited(Exception):
    def __init__(self, *, code: str, message: str, retry_after: int):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


# -- rate limits ---------------------------------------------------------------------------------------
#
# Fixed one-minute windows in Redis, so every web process shares the same counters. Settings are read on
# each call (tests and deployments can change them). If Redis is down the limits are not enforced: losing
# the API because the limiter's store restarts would be worse than a minute without limits.

_WINDOW_S = 60
_OUTAGE_BACKOFF_S = 5.0
_redis_client: redis.Redis | None = None
_redis_down_until = 0.0


def _redis() -> redis.Redis:
    global _redis_client
    if _redis_client is None:
        # No retries and short timeouts: every API request waits on this call.
        _redis_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
    return _redis_client


def _redis_call(fn):
    """Run `fn(client)`; None while Redis is unreachable, which is then not retried for a few seconds."""
    global _redis_down_until
    if time.monotonic() < _redis_down_until:
        return None
    try:
        return fn(_redis())
    except redis.RedisError as exc:
        _redis_down_until = time.monotonic() + _OUTAGE_BACKOFF_S
        logger.warning("API rate limits not enforced, Redis unavailable: %s", exc)
        return None


def _window() -> tuple[int, int]:
    """The current window's number and the seconds until it ends."""
    now = time.time()
    return int(now // _WINDOW_S), max(1, math.ceil(_WINDOW_S - now % _WINDOW_S))


def _counter_key(kind: str, ident: str, window: int) -> str:
    return f"{settings.API_RATE_LIMIT_PREFIX}:{kind}:{ident}:{window}"


def _count(kind: str, ident: str) -> tuple[int, int]:
    """Add one to this window's counter; returns (count, seconds left), count 0 when Redis is away."""
    window, left = _window()
    key = _counter_key(kind, ident, window)

    def incr(client: redis.Redis) -> int:
        count, _ = client.pipeline().incr(key).expire(key, _WINDOW_S + 5).execute()
        return int(count)

    return _redis_call(incr) or 0, left


def _peek(kind: str, ident: str) -> tuple[int, int]:
    window, left = _window()
    value = _redis_call(lambda client: client.get(_counter_key(kind, ident, window)))
    return int(value or 0), left


def client_ip(request: HttpRequest) -> str:
    # Behind our own proxy the client is the address it appended last; otherwise X-Forwarded-For is
    # whatever the client chose to send, and trusting it would let anyone dodge the throttle.
    if settings.SECURE_PROXY_SSL_HEADER:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded.strip():
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR") or "unknown"


def _check_auth_throttle(ip: str) -> None:
    failures, left = _peek("authfail", ip)
    if failures >= settings.API_AUTH_FAILURES_PER_MINUTE:
        # Even a correct key is refused now: otherwise a guesser would learn when a guess was right.
        raise RateLimited(
            code="too_many_auth_failures",
            message="too many failed authentication attempts from this address; retry later",
            retry_after=left,
        )


def _check_key_rate(key: ApiKey) -> None:
    count, left = _count("key", key.id)
    if count > settings.API_RATE_LIMIT_PER_MINUTE:
        raise RateLimited(
            code="rate_limited",
            message=f"rate limit of {settings.API_RATE_LIMIT_PER_MINUTE} requests per minute exceeded",
            retry_after=left,
        )


# -- authentication ------------------------------------------------------------------------------------


def _authenticate(request: HttpRequest, raw: str | None) -> Caller | None:
    if not raw:
        return None  # no key in this header; the other scheme may carry one
    ip = client_ip(request)
    _check_auth_throttle(ip)
    key = api_key_authenticate(raw.strip())
    if key is None:
        # Count by address, not by key: guessing is spread over many keys.
        _count("authfail", ip)
        raise AuthenticationError(message="invalid or revoked API key")
    _check_key_rate(key)
    return Caller(key=key)


class BearerKeyAuth(HttpBearer):
    def __call__(self, request: HttpRequest) -> Caller | None:
        # django-ninja's own __call__ logs a header of another scheme in full under DEBUG ("Token ak_…", or a
        # Basic user:password): credentials must never reach a log, so the header is read here, quietly.
        scheme, _, token = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != self.openapi_scheme:
            return None
        return self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str) -> Caller | None:
        return _authenticate(request, token)


class HeaderKeyAuth(APIKeyHeader):
    param_name = "anchor-api-key"

    def authenticate(self, request: HttpRequest, key: str | None) -> Caller | None:
        return _authenticate(request, key)


# -- browsable docs ------------------------------------------------------------------------------------


class Docs(Swagger):
    """Swagger UI under the site's strict Content-Security-Policy.

    The page's only inline script is allowed by its hash, and Swagger UI's inline styles are allowed on
    this page alone. Without "ninja" in INSTALLED_APPS, django-ninja loads Swagger UI from its CDN.
    """

    _CDN = "https://cdn.jsdelivr.net"
    _INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        response = super().render_page(request, api, **kwargs)
        html = response.content.decode()
        hashes = " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
            for body in self._INLINE_SCRIPT.findall(html)
        )
        response["Content-Security-Policy"] = (
            f"default-src 'self'; img-src 'self' data: {self._CDN} https://django-ninja.dev; "
            f"style-src 'self' 'unsafe-inline' {self._CDN}; script-src 'self' {self._CDN} {hashes}; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
        )
        return response


# -- request bodies ------------------------------------------------------------------------------------


MAX_BODY_DEPTH = 100  # a task's params may nest 64 levels; nothing real comes near this
_JSON_NESTING = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings (skipped whole) and brackets


def _nested_deeper_than(raw: bytes, limit: int) -> bool:
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # the usual body: too few brackets to be that deep, and no scan
    depth = 0
    for token in _JSON_NESTING.finditer(raw):
        bracket = token.group()
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif bracket in (b"]", b"}"):
            depth -= 1
    return False


class BodyParser(Parser):
    """JSON bodies, refusing an object that gives a key twice: Python's parser would quietly keep the last value,
    so `{"name": "a", "name": "b"}` would be a task named "b" that its caller may think is "a". A body Python
    cannot read for its own limits (digits in an integer, depth of nesting) is refused in words the caller
    can act on, not in the interpreter's (which DEBUG would show, down to `sys.set_int_max_str_digits()`)."""

    def parse_body(self, request: HttpRequest) -> Any:
        # id() of each object given a key twice → (the object, kept alive so no other takes its id; that key)
        duplicates: dict[int, tuple[dict, str]] = {}

        def to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            obj = dict(pairs)
            if len(obj) < len(pairs):
                counts = Counter(key for key, _ in pairs)
                duplicates[id(obj)] = (obj, next(key for key, count in counts.items() if count > 1))
            return obj

        if _nested_deeper_than(request.body, MAX_BODY_DEPTH):
            # Refused before parsing: how deep Python's parser and validators get before the interpreter's own limit
            # depends on how deep the stack already is, which no caller should have to guess.
            raise InputError("body", f"the body is nested more than {MAX_BODY_DEPTH} levels deep")
        try:
            data = json.loads(request.body, object_pairs_hook=to_dict)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise  # django-ninja's own "Cannot parse request body"
        except ValueError:
            # Not a syntax error: JSON's grammar leaves only Python's cap on an integer's digits. (A parse_int
            # hook would say so as surely, but costs a stack frame where the parser is at its deepest.)
            raise InputError("body", "a number has too many digits") from None
        if duplicates:
            raise InputError(_path_to_duplicate(data, duplicates), "is given more than once")
        return data


def _path_to_duplicate(data: Any, duplicates: dict[int, tuple[dict, str]]) -> str:
    """The dotted path (`params.items.0.name`) of the first key given twice, walked depth first in the body's
    order; each node keeps only a link to its parent's path."""
    stack: list[tuple[Any, tuple | None]] = [(data, None)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict) and id(node) in duplicates:
            parts = [duplicates[id(node)][1]]
            while path is not None:
                part, path = path
                parts.append(part)
            return ".".join(reversed(parts))
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend((child, (str(key), path)) for key, child in reversed(list(children)))
    return "body"


api = NinjaAPI(
    title="Anchor API",
    version="1",
    description=(
        "Self-healing browser tasks. Authenticate with `Authorization: Bearer <key>` or `anchor-api-key: <key>`. "
        "Get a key on the dashboard's [API keys page](/api-keys/) (signed in), in the Django admin (staff), or with "
        "`manage.py create_api_key --user NAME` on the server; it is shown once."
    ),
    urls_namespace="api-v1",
    auth=[BearerKeyAuth(), HeaderKeyAuth()],
    docs=Docs(),
    parser=BodyParser(),
)


# -- errors --------------------------------------------------------------------------------------------


def error_response(
    request: HttpRequest, *, status: int, code: str, message: str, field: str | None = None, **extra: Any
) -> HttpResponse:
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    body.update(extra)
    return api.create_response(request, {"error": body}, status=status)


def _field_from_loc(loc: tuple | list) -> str:
    """`("body", "payload", "self_healing_config", "max_attempts")` → `self_healing_config.max_attempts`."""
    parts = [str(part) for part in loc]
    source = parts[0] if parts else "body"
    rest = parts[1:]
    # A body schema is read from one parameter; its name is ours, not the caller's.
    if source == "body" and rest and rest[0] in _BODY_PARAM_NAMES:
        rest = rest[1:]
    return ".".join(rest) or source


_BODY_PARAM_NAMES = {"payload", "body", "data"}

_FRIENDLY = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
}
# Pydantic's bound errors, with the bound it names in ctx: "must be at most 10", not "Input should be less than
# or equal to 10".
_FRIENDLY_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "greater_than": ("gt", "must be more than {}"),
    "less_than": ("lt", "must be less than {}"),
    "string_too_short": ("min_length", "must be at least {} characters long"),
    "string_too_long": ("max_length", "must be at most {} characters long"),
    "too_short": ("min_length", "must have at least {} items"),
    "too_long": ("max_length", "must have at most {} items"),
}


def _friendly(error: dict) -> str:
    kind = error.get("type", "")
    if kind in _FRIENDLY_BOUNDS:
        key, template = _FRIENDLY_BOUNDS[kind]
        bound = (error.get("ctx") or {}).get(key)
        if bound is not None:
            return template.format(bound)
    return _FRIENDLY.get(kind, error.get("msg", "is invalid"))


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    details = [
        {"field": _field_from_loc(err.get("loc", ())), "message": _friendly(err)}
        for err in exc.errors
    ]
    first = details[0] if details else {"field": None, "message": "invalid request"}
    return error_response(request, status=400, code="invalid_input", message=first["message"], field=first["field"], details=details)


@api.exception_handler(InputError)
def _input_error(request: HttpRequest, exc: InputError) -> HttpResponse:
    return error_response(request, status=400, code="invalid_input", message=exc.message, field=exc.field)


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    message = exc.message if exc.message != "Unauthorized" else "an API key is required (Authorization: Bearer <key>)"
    # Whoever lacks a working key is told where one comes from, not only that it is missing.
    message += f"; create one on {reverse('api_keys:list')} in the dashboard"
    response = error_response(request, status=401, code="unauthenticated", message=message)
    response["WWW-Authenticate"] = 'Bearer realm="anchor"'
    return response


@api.exception_handler(PermissionDenied)
def _permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return error_response(request, status=403, code="permission_denied", message=str(exc) or "permission denied")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(request, status=404, code="not_found", message=str(exc) or "not found")


@api.exception_handler(ObjectDoesNotExist)
def _does_not_exist(request: HttpRequest, exc: ObjectDoesNotExist) -> HttpResponse:
    return error_response(request, status=404, code="not_found", message="not found")


@api.exception_handler(AlreadyDecided)
def _already_decided(request: HttpRequest, exc: AlreadyDecided) -> HttpResponse:
    return error_response(request, status=409, code="already_decided", message=str(exc), status_now=exc.event.status)


@api.exception_handler(Superseded)
def _superseded(request: HttpRequest, exc: Superseded) -> HttpResponse:
    return error_response(request, status=409, code="superseded", message=str(exc))


@api.exception_handler(DraftNotDeployable)
def _draft_not_deployable(request: HttpRequest, exc: DraftNotDeployable) -> HttpResponse:
    return error_response(request, status=409, code=exc.code, message=str(exc), event=exc.event_id)


@api.exception_handler(StateConflict)
def _state_conflict(request: HttpRequest, exc: StateConflict) -> HttpResponse:
    return error_response(request, status=409, code=exc.code, message=str(exc))


@api.exception_handler(RateLimited)
def _rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = error_response(request, status=429, code=exc.code, message=exc.message)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(RequestDataTooBig)
def _body_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(
        request, status=413, code="body_too_large", message=f"the request body is larger than {limit} bytes", field="body"
    )


_HTTP_CODES = {400: "invalid_input", 401: "unauthenticated", 403: "permission_denied", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 429: "rate_limited"}


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, InputError):
        # django-ninja wraps whatever the body parser raises in "Cannot parse request body"; BodyParser's own
        # refusals name the field at fault.
        return _input_error(request, exc.__cause__)
    code = _HTTP_CODES.get(exc.status_code, "error")
    field = "body" if exc.status_code == 400 else None
    response = error_response(request, status=exc.status_code, code=code, message=exc.message, field=field)
    if exc.status_code == 429 and getattr(exc, "wait", None):
        response["Retry-After"] = str(math.ceil(exc.wait))
    return response


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    if isinstance(exc, (OperationalError, InterfaceError)):
        raise exc  # DatabaseUnavailableMiddleware answers an outage with a 503 and Retry-After
    logger.exception("API error on %s %s", request.method, request.path)
    return error_response(request, status=500, code="internal_error", message="an unexpected error occurred; it has been logged")


# -- query strings ---------------------------------------------------------------------------------------


def refuse_unknown_query_params(view_func):
    """A misspelt filter (`?stauts=pending_review`) would otherwise list everything, and `?limit=5&limit=50`
    would quietly use one of the two: both are refused, naming the parameter. Applied after authentication
    and validation, so a caller without a key still gets 401 and a bad value its own message. Every query
    parameter of an endpoint is declared with `Query(...)`."""
    parameters = inspect.signature(view_func).parameters
    undeclared = [
        name for name, parameter in parameters.items()
        if parameter.default is not parameter.empty and not isinstance(parameter.default, Param)
        and name not in _BODY_PARAM_NAMES
    ]
    if undeclared:  # it would be refused as unknown: fail at start-up, not in a caller's face
        raise ImproperlyConfigured(f"{view_func.__qualname__}: declare {', '.join(undeclared)} with Query(...)")
    known = {name for name, parameter in parameters.items() if isinstance(parameter.default, QueryParam)}

    @functools.wraps(view_func)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any):
        for name, values in request.GET.lists():
            if name not in known:
                takes = ", ".join(sorted(known)) or "none"
                raise InputError(name, f"is not a query parameter of this endpoint (it takes: {takes})")
            if len(values) > 1:
                raise InputError(name, "is given more than once")
        return view_func(request, *args, **kwargs)

    return checked


api.add_decorator(refuse_unknown_query_params, mode="operation")


# -- routers -------------------------------------------------------------------------------------------

# Last: the routers import Caller and the error helpers from this module.
from healing_app.api import router as healing_events_router  # noqa: E402
from healing_app.api import task_events_router  # noqa: E402
from healing_app.webhooks_api import router as webhooks_router  # noqa: E402
from tasks_app.api import runs_router, tasks_router  # noqa: E402

api.add_router("/tasks", tasks_router)
api.add_router("/tasks", task_events_router)
api.add_router("/runs", runs_router)
api.add_router("/healing-events", healing_events_router)
api.add_router("/webhooks", webhooks_router)

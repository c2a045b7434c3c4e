"""Exceptions raised by the client. Every API error is an AnchorError; its subclass says which kind."""

from __future__ import annotations

from typing import Any


class AnchorError(Exception):
    """An error from the Anchor API, or from talking to it.

    `status_code` is the HTTP status (None when no response arrived), `code` the API's machine-readable
    error code (e.g. "invalid_input"), `field` the request field at fault, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        field: str | None = None,
        body: Any = None,
    ):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.field = field
        self.body = body

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        status = f"{self.status_code} " if self.status_code else ""
        return f"{status}{self.code or 'error'}{where}: {self.message}"


class APIConnectionError(AnchorError):
    """The server could not be reached, or did not answer in time."""


class ValidationError(AnchorError):
    """400: the request was refused; `field` names the offending field (dotted, e.g. self_healing_config.max_attempts)."""


class AuthenticationError(AnchorError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(AnchorError):
    """403: the key's owner may not do this (approving and rejecting need the reviewer permission)."""


class NotFoundError(AnchorError):
    """404: no such task, run, version or healing event."""


class ConflictError(AnchorError):
    """409: e.g. the healing event was already approved or rejected."""


class RateLimitError(AnchorError):
    """429: too many requests; `retry_after` is the number of seconds the server asked to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(AnchorError):
    """5xx: the server failed; the request was retried before this was raised."""


_BY_STATUS = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
}


def error_for(status_code: int, body: Any, retry_after: float | None = None) -> AnchorError:
    """The exception for an error response, from the API's `{"error": {"code", "message", "field"}}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or "request failed")
        code, field = error.get("code"), error.get("field")
    else:
        message = body if isinstance(body, str) and body else f"HTTP {status_code}"
        code, field = None, None
    cls = _BY_STATUS.get(status_code, ServerError if status_code >= 500 else AnchorError)
    kwargs: dict = {"status_code": status_code, "code": code, "field": field, "body": body}
    if cls is RateLimitError:
        kwargs["retry_after"] = retry_after
    return cls(message, **kwargs)

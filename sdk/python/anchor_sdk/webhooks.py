"""Checking that a webhook your receiver got was sent by Anchor, with the endpoint's secret.

Anchor signs its messages the Standard Webhooks way (https://www.standardwebhooks.com/): headers `webhook-id`,
`webhook-timestamp` (Unix seconds) and `webhook-signature`, one or more space-separated `v1,<signature>`, each the
base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}" under a secret (two during a secret rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from anchor_sdk.errors import AnchorError

DEFAULT_TOLERANCE = 300  # seconds a message's timestamp may be off this machine's clock, either way
_SECRET_PREFIX = "whsec_"


class WebhookVerificationError(AnchorError):
    """The message is not a genuine, recent Anchor webhook: answer 400 and do not act on it.

    `code` says why: `missing_header`, `invalid_timestamp`, `timestamp_too_old`, `timestamp_too_new`,
    `invalid_signature` or `invalid_body`.
    """


def verify_webhook(
    body: bytes | bytearray | memoryview | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: datetime | float | None = None,
) -> dict[str, Any]:
    """Verify a delivery and return its parsed JSON (`{"type", "timestamp", "data"}`).

    `body` is the raw request body as received, before any parsing (Django: `request.body`); `headers` the
    request's headers, in any case (Django: `request.headers`); `secret` the endpoint's `whsec_...` secret.
    A message is accepted when any of its signatures was made with `secret` and its timestamp is within
    `tolerance` seconds of `now` (default: the current time; a datetime or Unix seconds). Anything else raises
    WebhookVerificationError. A `secret` that is not a whsec_ secret raises ValueError (a configuration error).
    """
    key = _signing_key(secret)
    if isinstance(body, str):
        payload = body.encode("utf-8")
    elif isinstance(body, (bytes, bytearray, memoryview)):
        payload = bytes(body)
    else:
        raise TypeError(
            f"body must be the raw request body (bytes or str), not {type(body).__name__}: verify before parsing"
        )

    lowered = {str(name).lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    given = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signatures}
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}", code="missing_header")

    timestamp = str(timestamp).strip()
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 15):
        raise WebhookVerificationError(
            f"webhook-timestamp {timestamp[:40]!r} is not a Unix time in seconds", code="invalid_timestamp"
        )
    offset = int(timestamp) - _seconds(now)
    if offset < -tolerance:
        raise WebhookVerificationError(
            f"the message was signed {-offset:.0f} s ago, more than the {tolerance:g} s allowed "
            "(a replay, or this machine's clock is wrong)",
            code="timestamp_too_old",
        )
    if offset > tolerance:
        raise WebhookVerificationError(
            f"the message is signed {offset:.0f} s in the future, more than the {tolerance:g} s allowed "
            "(this machine's clock is wrong)",
            code="timestamp_too_new",
        )

    expected = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + payload, hashlib.sha256).digest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in _v1_signatures(str(signatures))):
        raise WebhookVerificationError(
            "no signature matches the secret: a wrong secret, or the body was changed "
            "(verify the raw body bytes as received, before parsing them)",
            code="invalid_signature",
        )

    try:
        message = json.loads(payload)
    except ValueError:
        raise WebhookVerificationError("the signed body is not JSON", code="invalid_body") from None
    if not isinstance(message, dict):
        raise WebhookVerificationError("the signed body is not a JSON object", code="invalid_body")
    return message


def _signing_key(secret: str) -> bytes:
    if not isinstance(secret, str):
        raise TypeError(f"secret must be the endpoint's whsec_... secret (a str), not {type(secret).__name__}")
    encoded = secret.strip().removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret is not a webhook secret: expected whsec_ followed by base64") from None
    if not key:
        raise ValueError("secret is empty: expected whsec_ followed by base64")
    return key


def _v1_signatures(header: str) -> list[bytes]:
    """The decodable `v1` signatures of a webhook-signature header; other versions and malformed entries are skipped."""
    found = []
    for entry in header.split():
        version, _, value = entry.partition(",")
        if version != "v1" or not value:
            continue
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def _seconds(now: datetime | float | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        # A naive datetime is read as UTC, as the Standard Webhooks libraries do.
        return (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).timestamp()
    return float(now)

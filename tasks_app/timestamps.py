"""Timestamps as the API writes them, for everything else that writes one (webhooks, live messages, a heal's
timeline): ISO 8601 in UTC with milliseconds and "Z", Django's JSON encoder's form. One event's time then reads
the same in `GET /api/v1/healing-events/{id}` as in the webhook that announced it, so a subscriber can compare them."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

__all__ = ["timestamp_text"]


def timestamp_text(moment: datetime | None = None) -> str:
    """`moment` (now when omitted) in the API's form, e.g. "2026-11-27T17:30:00.123Z"."""
    return DjangoJSONEncoder().default((moment or timezone.now()).astimezone(UTC))

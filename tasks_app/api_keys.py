"""API keys: created (shown once), looked up by hash, revoked."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from tasks_app.audit import Actor, audit_log
from tasks_app.models import ApiKey


def api_key_create(*, user: AbstractBaseUser, name: str, actor: Actor | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the raw key, which is never stored and cannot be shown again."""
    raw = ApiKey.generate()
    key = ApiKey.objects.create(user=user, name=name or "API key", hint=raw[:10], hashed=ApiKey.hash(raw))
    audit_log(actor=actor or Actor(user=user), action="api_key.create", obj=key, data={"name": key.name})
    return key, raw


def api_key_revoke(*, key: ApiKey, actor: Actor | None = None) -> None:
    if ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        audit_log(actor=actor, action="api_key.revoke", obj=key)


def api_key_authenticate(raw: str) -> ApiKey | None:
    """The active key for `raw`, or None. Marks it used (at most once a minute, to spare writes)."""
    if not raw or not raw.startswith(ApiKey.PREFIX):
        return None
    key = ApiKey.objects.select_related("user").filter(hashed=ApiKey.hash(raw), revoked_at__isnull=True).first()
    if key is None or not key.user.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key

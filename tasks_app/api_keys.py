"""API keys: listed for their owner, created (shown once), looked up by hash, revoked.

The dashboard, the admin and the create_api_key command call these, so who may create or revoke which key, and
what gets audited, is decided here once.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.utils import timezone

from tasks_app.audit import Actor, as_actor, audit_log
from tasks_app.config import InputError
from tasks_app.models import ApiKey

NAME_MAX = ApiKey._meta.get_field("name").max_length
# Staff revoke other people's keys in the admin with this permission, as its "Revoke selected keys" action asks.
REVOKE_ANY = "tasks_app.change_apikey"


def api_keys_for(*, user: AbstractBaseUser) -> QuerySet[ApiKey]:
    """The keys `user` holds, revoked ones included. Only their own, staff too: others' keys are the admin's."""
    return ApiKey.objects.filter(user_id=user.pk)


def api_key_may_create(*, actor: Actor, owner: AbstractBaseUser) -> bool:
    """A key acts as its owner, so people make keys for themselves; only a superuser (or the system) for others."""
    user = actor.user
    if user is None:
        return True  # the system: the create_api_key command, run by whoever holds the server
    return bool(user.is_active and (user.pk == owner.pk or user.is_superuser))


def api_key_may_revoke(*, actor: Actor, key: ApiKey) -> bool:
    """Its owner may revoke a key, and so may staff allowed to change keys; revoking only ever takes access away."""
    user = actor.user
    if user is None:
        return True
    return bool(user.is_active and (key.user_id == user.pk or (user.is_staff and user.has_perm(REVOKE_ANY))))


def api_key_create(*, user: AbstractBaseUser, name: str, actor: Actor | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the raw key, which is never stored and cannot be shown again."""
    actor = actor or Actor(user=user)
    if not api_key_may_create(actor=actor, owner=user):
        raise PermissionDenied("only a superuser can create an API key for someone else")
    name = name.strip()
    if len(name) > NAME_MAX:
        raise InputError("name", f"must be at most {NAME_MAX} characters (it has {len(name)})")
    raw = ApiKey.generate()
    key = ApiKey.objects.create(user=user, name=name or "API key", hint=raw[:10], hashed=ApiKey.hash(raw))
    audit_log(actor=actor, action="api_key.create", obj=key, data={"name": key.name})
    return key, raw


def api_key_revoke(*, key: ApiKey, actor: Actor | None = None) -> bool:
    """Revoke `key` at once (its next request is a 401); False if it already was, which audits nothing."""
    actor = as_actor(actor)
    if not api_key_may_revoke(actor=actor, key=key):
        raise PermissionDenied("only the key's owner or staff allowed to change API keys can revoke it")
    if ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        audit_log(actor=actor, action="api_key.revoke", obj=key)
        return True
    return False


def api_key_still_showable(keys: QuerySet[ApiKey], stashed: dict) -> tuple[ApiKey | None, str]:
    """The key a shown-once page stashed (`{"id", "raw"}`, see tasks_app.shown_once) among `keys`, and its raw
    value, or "" when it must not be shown: gone, or revoked before its page was opened (in another tab), where
    showing it would mislead."""
    key = keys.filter(pk=stashed.get("id", ""), revoked_at=None).first()
    if key is None or key.hashed != ApiKey.hash(stashed.get("raw", "")):
        return key, ""
    return key, stashed["raw"]


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

"""The audit trail: every state change a person, an API key or the system makes."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import models

from tasks_app.models import AuditLog


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user, optionally through an API key; no user means the system itself."""

    user: AbstractBaseUser | None = None
    via: str = ""

    @property
    def label(self) -> str:
        name = self.user.get_username() if self.user is not None else "system"
        return f"{name} via {self.via}" if self.via else name

    @property
    def stored_user(self) -> AbstractBaseUser | None:
        """The user to point a foreign key at: None for the system and for a user not saved (no pk)."""
        return self.user if self.user is not None and self.user.pk else None


SYSTEM = Actor()


def dashboard_actor(request) -> Actor:
    """The signed-in person, acting through the dashboard's pages."""
    return Actor(user=request.user, via="dashboard")


def admin_actor(request) -> Actor:
    """The signed-in staff member, acting through the Django admin."""
    return Actor(user=request.user, via="admin")


def as_actor(actor: Actor | AbstractBaseUser | None) -> Actor:
    if actor is None:
        return SYSTEM
    if isinstance(actor, Actor):
        return actor
    return Actor(user=actor)


def audit_log(
    *,
    actor: Actor | AbstractBaseUser | None,
    action: str,
    obj: models.Model | None = None,
    data: dict | None = None,
    object_type: str = "",
    object_id: str = "",
) -> AuditLog:
    """Record a change of `obj`, or of something that is no row (`object_type` and `object_id`: the demo site,
    an RQ queue)."""
    actor = as_actor(actor)
    if obj is not None:
        object_type, object_id = obj._meta.model_name, str(obj.pk)
    return AuditLog.objects.create(
        actor=actor.stored_user,
        actor_label=actor.label[:150],
        action=action,
        object_type=object_type,
        object_id=object_id,
        data=data or {},
    )

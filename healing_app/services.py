"""Review workflows: approving or rejecting a healed version. The dashboard, the API and the admin call these."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from healing_app.models import HealingEvent, Review
from healing_app.notify import notify
from healing_app.permissions import REVIEW_PERMISSION, can_review
from healing_app.pipeline import event_payload
from healing_app.task_generation import task_generate_enqueue
from tasks_app import services as task_services
from tasks_app.audit import Actor, as_actor, audit_log
from tasks_app.config import InputError
from tasks_app.models import Task

__all__ = ["REVIEW_PERMISSION", "AlreadyDecided", "Superseded", "can_review", "healing_approve", "healing_reject", "task_generate_enqueue"]


class AlreadyDecided(Exception):
    """The event is no longer waiting for review (another reviewer, or the pipeline, got there first)."""

    def __init__(self, event: HealingEvent):
        super().__init__(f"{event.pk} is already {event.status}; nothing was changed")
        self.event = event


class Superseded(Exception):
    """The task's code changed since the heal was generated; deploying it would overwrite that change."""


def healing_approve(*, event: HealingEvent, reviewer: Actor | AbstractBaseUser, comment: str = "") -> HealingEvent:
    """Deploy the healed version. Exactly one of several concurrent approvals wins; the others get AlreadyDecided."""
    actor = as_actor(reviewer)
    _require_reviewer(actor)
    with transaction.atomic():
        event = HealingEvent.objects.select_for_update(of=("self",)).select_related("new_version").get(pk=event.pk)
        if event.status != HealingEvent.Status.PENDING_REVIEW:
            raise AlreadyDecided(event)
        task = Task.objects.select_for_update().get(pk=event.task_id)
        if task.current_version_id != event.original_version_id:
            raise Superseded(
                f"the task's current version changed since {event.pk} was generated; run the task again to heal it afresh"
            )
        # Decided first: version_deploy refuses a draft that is still waiting for review.
        _decide(event, actor=actor, status=HealingEvent.Status.DEPLOYED, decision=Review.Decision.APPROVED, comment=comment)
        task_services.version_deploy(task=task, version=event.new_version, actor=actor, reason=f"approved {event.pk}")
        notify(event_type="healing.deployed", task_id=event.task_id, data=event_payload(event))
    return event


def healing_reject(*, event: HealingEvent, reviewer: Actor | AbstractBaseUser, comment: str) -> HealingEvent:
    """Discard the healed version (it stays as an undeployed draft). A comment says why; the element stays rejected
    for the step, unless the task's code had changed since the heal (it is superseded, and the rejection only clears
    it from the queue)."""
    actor = as_actor(reviewer)
    _require_reviewer(actor)
    if not isinstance(comment, str) or not comment.strip():
        raise InputError("comment", "a comment is required to reject")
    with transaction.atomic():
        event = HealingEvent.objects.select_for_update().get(pk=event.pk)
        if event.status != HealingEvent.Status.PENDING_REVIEW:
            raise AlreadyDecided(event)
        # Whether it is superseded is read under the task's lock: a deploy racing this rejection lands before or after.
        event.task = Task.objects.select_for_update().get(pk=event.task_id)
        _decide(event, actor=actor, status=HealingEvent.Status.REJECTED, decision=Review.Decision.REJECTED, comment=comment,
                superseded=event.superseded)
        notify(event_type="healing.rejected", task_id=event.task_id, data=event_payload(event))
    return event


def _require_reviewer(actor: Actor) -> None:
    if not can_review(actor.user):
        raise PermissionDenied("only reviewers can approve or reject healing events")


def _decide(
    event: HealingEvent, *, actor: Actor, status: str, decision: str, comment: str, superseded: bool = False,
) -> None:
    comment = (comment or "").strip()[: Review.COMMENT_MAX]
    event.transition_to(status, note=f"{decision} by {actor.label}")
    event.reviewer = actor.user
    event.review_comment = comment
    event.decided_at = timezone.now()
    event.save()
    Review.objects.create(event=event, decision=decision, reviewer=actor.user, comment=comment, superseded=superseded)
    audit_log(actor=actor, action=f"healing.{decision}", obj=event,
              data={"comment": comment, **({"superseded": True} if superseded else {})})

"""What happens when a run fails: HealingEvent and its Review, and the webhook endpoints that hear about it."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from tasks_app.crypto import decrypt_secrets, encrypt_secrets
from tasks_app.ids import new_heal_id, new_webhook_id
from tasks_app.models import CodeVersion, Run, Task
from tasks_app.timestamps import timestamp_text


class HealingEvent(models.Model):
    class Status(models.TextChoices):
        TRIGGERED = "triggered", "Triggered"
        HEALING = "healing", "Healing"
        VALIDATING = "validating", "Validating"
        PENDING_REVIEW = "pending_review", "Pending review"
        DEPLOYED = "deployed", "Deployed"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"

    # The lifecycle of DESIGN.md §4, in one place.
    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.TRIGGERED: frozenset({Status.HEALING, Status.FAILED}),
        Status.HEALING: frozenset({Status.VALIDATING, Status.PENDING_REVIEW, Status.DEPLOYED, Status.FAILED}),
        Status.VALIDATING: frozenset({Status.PENDING_REVIEW, Status.DEPLOYED, Status.FAILED}),
        Status.PENDING_REVIEW: frozenset({Status.DEPLOYED, Status.REJECTED}),
        Status.DEPLOYED: frozenset(),
        Status.REJECTED: frozenset(),
        Status.FAILED: frozenset(),
    }
    OPEN = (Status.TRIGGERED, Status.HEALING, Status.VALIDATING)
    FINAL = (Status.DEPLOYED, Status.REJECTED, Status.FAILED)

    id = models.CharField(primary_key=True, max_length=40, default=new_heal_id, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="healing_events")
    run = models.ForeignKey(Run, null=True, on_delete=models.SET_NULL, related_name="healing_events")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.TRIGGERED)
    error_type = models.CharField(max_length=40)
    error_message = models.TextField(blank=True)
    failing_step = models.JSONField(default=dict, blank=True, help_text="line, action, selector, step_key, url")
    step_key = models.CharField(max_length=500, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    agent_kind = models.CharField(max_length=20, blank=True)
    agent_trace = models.JSONField(default=list, blank=True)
    candidate_scores = models.JSONField(default=list, blank=True)
    chosen_element = models.JSONField(null=True, blank=True, help_text="fingerprint of the element the agent chose")
    recovery = models.JSONField(null=True, blank=True, help_text="what the takeover did, for code generation")
    root_cause = models.TextField(blank=True)
    reason = models.TextField(blank=True, help_text="why the event failed or was refused")
    original_version = models.ForeignKey(CodeVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    new_version = models.ForeignKey(CodeVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    validation_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    screenshot = models.TextField(blank=True, help_text="PNG (base64) at the failure")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=6, default=Decimal("0"))
    timings = models.JSONField(default=dict, blank=True)
    timeline = models.JSONField(default=list, blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    review_comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("review_healingevent", "Can approve or reject healing events")]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["task", "-created_at"]),
            models.Index(fields=["task", "step_key", "original_version"]),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def timestamp(self):
        """The seed calls the moment an event was triggered its timestamp."""
        return self.created_at

    @property
    def decided_by(self) -> str | None:
        """Who approved or rejected the heal, for people to read; None when nobody did (an automatic deploy)."""
        if self.reviewer_id:
            return self.reviewer.get_username()
        # The reviewer's account was deleted (the review keeps its row, the user link is cleared).
        return "a user since deleted" if self.reviews.exists() else None

    def to_dict(self) -> dict:
        """The event in the seed's shape: what the API lists, and what webhooks and live pages are sent."""
        return {
            "id": self.pk,
            "task": self.task_id,
            "run": self.run_id,
            "timestamp": self.timestamp,
            "error_type": self.error_type,
            "status": self.status,
            "new_version": self.new_version.number if self.new_version_id else None,
            "original_version": self.original_version.number if self.original_version_id else None,
            "root_cause": self.root_cause,
            "agent": self.agent_kind,
        }

    def can_transition_to(self, status: str) -> bool:
        return status in self.TRANSITIONS.get(self.status, frozenset())

    @property
    def superseded(self) -> bool:
        """The task's current version is no longer the one this heal patched: approving it would overwrite that
        change (healing_approve refuses it), so it can only be rejected."""
        return self.task.current_version_id != self.original_version_id

    @property
    def finished(self) -> bool:
        """Deployed, rejected or failed: nothing more will happen to it."""
        return self.status in self.FINAL

    def transition_to(self, status: str, *, note: str = "") -> None:
        """Move to `status` in memory, recording it on the timeline. The caller saves."""
        if not self.can_transition_to(status):
            raise InvalidTransition(self.status, status)
        self.status = status
        entry = {"status": status, "at": timestamp_text()}
        if note:
            entry["note"] = note
        self.timeline = [*self.timeline, entry]


class InvalidTransition(Exception):
    def __init__(self, current: str, wanted: str):
        super().__init__(f"a healing event cannot go from {current} to {wanted}")
        self.current = current
        self.wanted = wanted


class Review(models.Model):
    COMMENT_MAX = 5000  # characters; the API and the dashboard refuse longer comments, the service cuts them

    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    event = models.ForeignKey(HealingEvent, on_delete=models.CASCADE, related_name="reviews")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    comment = models.TextField(blank=True)
    # A heal rejected after the task's code had changed under it (it could only be rejected): that clears it from the
    # queue and says nothing about its fix, so the element it chose is not held against the step.
    superseded = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.decision}"


class WebhookEndpoint(models.Model):
    EVENT_TYPES = (
        "healing.triggered",
        "healing.pending_review",
        "healing.deployed",
        "healing.rejected",
        "healing.failed",
        "run.failed",
        "run.healed",
        "task.version_deployed",
    )

    id = models.CharField(primary_key=True, max_length=40, default=new_webhook_id, editable=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list, blank=True, help_text="empty means every event type")
    task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.CASCADE, related_name="webhooks")
    # Signing secrets (whsec_…), encrypted at rest: whoever reads the database must not be able to forge our webhooks.
    secret = models.TextField(editable=False)
    previous_secret = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True, help_text="first failure since the last success")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.url} ({self.id})"

    def wants(self, event_type: str, task_id: str | None) -> bool:
        if not self.enabled:
            return False
        if self.event_types and event_type not in self.event_types:
            return False
        return self.task_id is None or self.task_id == task_id

    def set_secret(self, raw: str, *, previous_expires_at=None) -> None:
        """Make `raw` the signing secret; with `previous_expires_at`, the old one keeps signing until then."""
        if previous_expires_at is not None and self.secret:
            self.previous_secret = self.secret
            self.previous_secret_expires_at = previous_expires_at
        else:
            self.previous_secret = ""
            self.previous_secret_expires_at = None
        self.secret = encrypt_secrets({"secret": raw})

    @property
    def current_secret(self) -> str:
        return decrypt_secrets(self.secret).get("secret", "")

    def signing_secrets(self, *, at) -> list[str]:
        """The secrets a message sent at `at` is signed with: the current one, and the previous during its grace period."""
        secrets = [self.current_secret]
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > at:
            secrets.append(decrypt_secrets(self.previous_secret).get("secret", ""))
        return [s for s in secrets if s]

    @property
    def secret_masked(self) -> str:
        raw = self.current_secret
        return f"whsec_••••••••{raw[-4:]}" if raw else "—"


class WebhookDelivery(models.Model):
    """One attempt to deliver one message to one endpoint. Retries share the message id."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Trigger(models.TextChoices):
        EVENT = "event", "Event"
        RETRY = "retry", "Automatic retry"
        REDELIVER = "redeliver", "Redelivery"
        TEST = "test", "Test event"

    # Only these follow the retry schedule; a redelivery or a test is one attempt that a person watches.
    AUTOMATIC = (Trigger.EVENT, Trigger.RETRY)

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=60, db_index=True)
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    attempt = models.PositiveSmallIntegerField(default=1)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.EVENT)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="when this attempt is due")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "message_id", "attempt"], name="unique_delivery_attempt")
        ]
        indexes = [models.Index(fields=["endpoint", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.message_id} #{self.attempt} {self.status}"

    @property
    def is_automatic(self) -> bool:
        return self.trigger in self.AUTOMATIC

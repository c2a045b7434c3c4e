"""What a task is and how it runs: Task, CodeVersion, Run, ElementFingerprint, plus ApiKey and AuditLog."""

from __future__ import annotations

import hashlib
import json
import secrets as pysecrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from tasks_app.config import DEFAULT_CONFIG, merge_config
from tasks_app.crypto import decrypt_secrets, encrypt_secrets
from tasks_app.ids import new_key_id, new_run_id, new_task_id

MAX_INT = 2**31 - 1  # the database's integer range; a larger version or id could only be a 404 anyway

class Task(models.Model):
    class CodeStatus(models.TextChoices):
        READY = "ready", "Ready"
        NEEDS_CODE = "needs_code", "Needs code (no code given and no LLM configured)"
        GENERATING = "generating", "Generating version 1 from the prompt"
        VALIDATING = "validating", "Version 1 is being validated"
        PENDING_REVIEW = "pending_review", "Version 1 waits for review"

    class Agent(models.TextChoices):
        DEFAULT = "", "Deployment default"
        AUTO = "auto", "Auto (LLM when configured)"
        HEURISTIC = "heuristic", "Heuristic"
        LLM = "llm", "LLM"

    id = models.CharField(primary_key=True, max_length=40, default=new_task_id, editable=False)
    name = models.CharField(max_length=200)
    prompt = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    self_healing = models.BooleanField(default=False)
    self_healing_config = models.JSONField(default=dict, blank=True)
    healing_agent = models.CharField(max_length=10, choices=Agent.choices, default="", blank=True)
    monthly_budget_usd = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    code_status = models.CharField(max_length=20, choices=CodeStatus.choices, default=CodeStatus.READY)
    current_version = models.ForeignKey(
        "CodeVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    schedule = models.CharField(max_length=100, blank=True, help_text="cron expression, e.g. '*/15 * * * *'")
    # When `schedule` last changed (None: as made): a minute begun before then is not the schedule's to fire.
    schedule_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["name"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def config(self) -> dict:
        """The full self_healing_config with defaults filled in."""
        return merge_config(self.self_healing_config, None)

    @property
    def secrets(self) -> dict[str, str]:
        return decrypt_secrets(self.secrets_encrypted)

    def set_secrets(self, values: dict[str, str]) -> None:
        self.secrets_encrypted = encrypt_secrets(values)

    @property
    def secret_keys(self) -> list[str]:
        return sorted(self.secrets)


class CodeVersion(models.Model):
    """One immutable version of a task's code. Changes create a new version, never an edit."""

    class Source(models.TextChoices):
        INITIAL = "initial", "Initial"
        HEALED = "healed", "Healed"
        MANUAL = "manual", "Manual"
        ROLLBACK = "rollback", "Rollback"
        GENERATED = "generated", "Generated from the prompt"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    code = models.TextField()
    source = models.CharField(max_length=12, choices=Source.choices)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["task", "number"], name="unique_version_number")]

    def __str__(self) -> str:
        return f"{self.task_id} v{self.number}"

    @property
    def machine_written(self) -> bool:
        """Healed, or generated from the prompt: no person wrote it, so it runs contained (RunSpec.contained)."""
        return self.source in (self.Source.HEALED, self.Source.GENERATED)

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("code versions are immutable; create a new version instead")
        super().save(*args, **kwargs)


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        HEALED = "healed", "Healed"
        FAILED = "failed", "Failed"

    class Purpose(models.TextChoices):
        NORMAL = "normal", "Normal"
        VALIDATION = "validation", "Validation of a machine-written version"

    FINISHED = (Status.SUCCEEDED, Status.HEALED, Status.FAILED)

    id = models.CharField(primary_key=True, max_length=40, default=new_run_id, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(CodeVersion, null=True, on_delete=models.SET_NULL, related_name="runs")
    purpose = models.CharField(max_length=12, choices=Purpose.choices, default=Purpose.NORMAL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    trace = models.JSONField(default=list, blank=True)
    failure = models.JSONField(null=True, blank=True)
    screenshots = models.JSONField(default=list, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set by run_cancel on a running run; its worker sees it within a second and stops the sandbox.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["task", "-created_at"]),
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["-created_at"]),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def effective_params(self) -> dict:
        """What the code gets as `params`: the task's, with the run's own on top (DESIGN §4)."""
        return {**self.task.params, **self.params}

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.finished_at:
            return int((self.finished_at - self.started_at).total_seconds() * 1000)
        return None

    @property
    def output_json(self) -> str | None:
        """The output as the API and the webhooks show it (JSON: Python's repr would print True and 'quotes')."""
        return None if self.output is None else _shown_as_json(self.output)

    @property
    def params_json(self) -> str:
        """The params this run added to its task's, as the API shows them."""
        return _shown_as_json(self.params)


def _shown_as_json(value) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


class ElementFingerprint(models.Model):
    """What the element a step acted on looked like the last time the step succeeded."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="fingerprints")
    step_key = models.CharField(max_length=500)
    line = models.PositiveIntegerField(null=True)
    selector = models.TextField(blank=True)
    properties = models.JSONField(default=dict)
    version = models.ForeignKey(CodeVersion, null=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "step_key"], name="unique_fingerprint_step")]

    def __str__(self) -> str:
        return f"{self.task_id} {self.step_key}"


class ApiKey(models.Model):
    """An API key. Only its SHA-256 is stored; the key itself is shown once, at creation."""

    PREFIX = "ak_"

    id = models.CharField(primary_key=True, max_length=40, default=new_key_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    hint = models.CharField(max_length=16, editable=False, help_text="first characters, to tell keys apart")
    hashed = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @staticmethod
    def hash(raw_key: str) -> str:
        # Keys are 32 random bytes, so a fast hash is enough; no password-style stretching is needed.
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def generate(cls) -> str:
        return cls.PREFIX + pysecrets.token_urlsafe(32)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AuditLog(models.Model):
    """Who did what to which object, and when. Written by services, never edited."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=150, help_text="user name, API key or 'system'")
    action = models.CharField(max_length=60)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=40)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_type} {self.object_id}"


__all__ = ["DEFAULT_CONFIG", "ApiKey", "AuditLog", "CodeVersion", "ElementFingerprint", "Run", "Task"]

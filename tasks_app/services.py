"""Task workflows: create, update, version, deploy, run. Views, the API and the admin all call these."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import django_rq
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from healing_app.codegen import CodeValidationError, validate_task_code
from healing_app.models import HealingEvent
from healing_app.notify import notify
from healing_app.permissions import can_review
from tasks_app.audit import Actor, as_actor, audit_log
from tasks_app.config import InputError, merge_config
from tasks_app.logging import register_secret_values
from tasks_app.models import AuditLog, CodeVersion, ElementFingerprint, Run, Task
from tasks_app.runner.protocol import CANCELLED
from tasks_app.storable import unstorable

_UNSET: Any = object()
NAME_MAX = 200


def task_create(
    *,
    name: str,
    prompt: str = "",
    code: str | None = None,
    params: dict | None = None,
    secrets: dict | None = None,
    self_healing: bool = False,
    self_healing_config: dict | None = None,
    healing_agent: str = "",
    schedule: str = "",
    monthly_budget_usd: Any = None,
    actor: Actor | None = None,
) -> Task:
    fields = task_changes_check(None, {
        "name": name, "prompt": prompt, "params": params, "self_healing": self_healing,
        "self_healing_config": self_healing_config, "healing_agent": healing_agent, "schedule": schedule,
        "monthly_budget_usd": monthly_budget_usd, "secrets": secrets,
        **({"code": code} if code is not None else {}),
    })
    secrets, code = fields.pop("secrets"), fields.pop("code", None)
    task = Task(**fields, owner=actor.stored_user if actor else None)
    task.set_secrets(secrets)
    with transaction.atomic():
        task.code_status = Task.CodeStatus.READY if code is not None else _codeless_status()
        task.save()
        if code is not None:
            version = _version_add(task=task, code=code, source=CodeVersion.Source.INITIAL, author=actor)
            task.current_version = version
            task.save(update_fields=["current_version"])
        audit_log(actor=actor, action="task.create", obj=task, data={"name": task.name})
    if code is None and task.code_status == Task.CodeStatus.GENERATING:
        from healing_app.services import task_generate_enqueue

        task_generate_enqueue(task=task)
    return task


def task_update(*, task: Task, actor: Actor | None = None, **changes: Any) -> Task:
    """Partial update: only the fields given change (task_create's, by name). Config keys given replace
    those keys only; code becomes a new manual version and is deployed."""
    changed = task_changes_check(task, changes)
    new_secrets = changed.pop("secrets", None)
    code = changed.pop("code", _UNSET)

    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        # Forms send every field: only values that differ are changes (and audited as such).
        changed = {field: value for field, value in changed.items() if getattr(task, field) != value}
        if code is not _UNSET and task.current_version is not None and code == task.current_version.code:
            # The code that is deployed already: no new version, and pending heals stay valid (a retried
            # PATCH must not supersede them).
            code = _UNSET
        if not changed and new_secrets is None and code is _UNSET:
            return task  # nothing to change, nothing to audit
        if code is not _UNSET or "prompt" in changed or "params" in changed or new_secrets is not None:
            _require_secrets_holder(task, actor, "change its code, prompt, params or secrets")
        if _review_weakened(task, changed):
            # Machine-written code would then reach the secrets with no person reading it first.
            _require_secrets_holder(task, actor, "let its heals deploy without a reviewer or a validation run")
        for field, value in changed.items():
            setattr(task, field, value)
        if "schedule" in changed:
            task.schedule_changed_at = timezone.now()
        if new_secrets is not None:
            task.set_secrets(new_secrets)
        task.save()
        audit_data = {field: value for field, value in changed.items() if field not in ("params", "monthly_budget_usd")}
        if "params" in changed:
            audit_data["params"] = sorted(changed["params"])  # names only: values may be personal data
        if "monthly_budget_usd" in changed:
            budget = changed["monthly_budget_usd"]
            audit_data["monthly_budget_usd"] = str(budget) if budget is not None else None
        if new_secrets is not None:
            audit_data["secrets"] = sorted(new_secrets)  # names only, never values
        if code is not _UNSET:
            version = _version_add(
                task=task, code=code, source=CodeVersion.Source.MANUAL, author=actor, parent=task.current_version
            )
            _make_current(task=task, version=version)
            audit_data["new_version"] = version.number
        audit_log(actor=actor, action="task.update", obj=task, data=audit_data)
    return task


def _answers_for(task: Task, user, permission: str = "tasks_app.change_task") -> bool:
    """Whether `user` answers for the task: its owner, a reviewer, or staff holding `permission` (a model permission
    alone, granted to someone who is not staff, does not make them answer for others' tasks: README's table)."""
    staff = user.is_staff or user.is_superuser
    return task.owner_id == user.pk or can_review(user) or (staff and user.has_perm(permission))


def _require_secrets_holder(task: Task, actor: Actor | None, what: str) -> None:
    """The code, the prompt and the params decide where a task's secrets are sent (its code reads them, the prompt
    tells an agent holding them what to do and names the site when the params do not): once a task holds secrets,
    only its owner, a reviewer or staff allowed to change tasks may change those, or run it with params of their
    own. Others still see, edit and run it."""
    user = as_actor(actor).user
    if user is None or not task.secret_keys or _answers_for(task, user):
        return
    raise PermissionDenied(f"the task holds secrets: only its owner, a reviewer or staff may {what}")


def _review_weakened(task: Task, changed: dict[str, Any]) -> bool:
    """Whether the changes let heals deploy with less checking than before: without a reviewer (auto_deploy) or
    without a validation run. The config counts while healing is off too (or switching healing off, weakening
    the config and leaving the owner to switch healing back on would get round this), and so does turning
    healing on when the config already says so."""

    def unchecked(config: dict) -> tuple[bool, bool]:
        return config["auto_deploy"], not config["validation_required"]

    before = unchecked(task.config)
    after = unchecked(changed.get("self_healing_config", task.config))
    if any(now and not then for then, now in zip(before, after)):
        return True
    healing_turned_on = changed.get("self_healing", task.self_healing) and not task.self_healing
    return bool(healing_turned_on and any(after))


def task_changes_check(task: Task | None, changes: dict[str, Any]) -> dict[str, Any]:
    """The cleaned values of a task's fields (all of a new task's, or some of an existing one's), and the task they
    make has code or a prompt to write it from; InputError names the first bad one."""
    cleaned = {field: task_field_check(task, field, value) for field, value in changes.items()}
    task_code_or_prompt_check(task, cleaned)
    return cleaned


def task_field_check(task: Task | None, field: str, value: Any) -> Any:
    """The cleaned value of one field of a task; InputError when it is bad. The dashboard's form calls it field
    by field, to show every error next to its field at once."""
    if field == "self_healing_config":
        return merge_config(task.self_healing_config if task is not None else None, value)
    if field == "code":
        code_check(value)
        return value
    if field in _FIELD_CLEANERS:
        return _FIELD_CLEANERS[field](value)
    raise TypeError(f"{field!r} is not a task field")


def task_code_or_prompt_check(task: Task | None, changes: dict[str, Any]) -> None:
    """A task needs code, or a prompt for an LLM to write the code from: without either, nothing could ever
    run it. Without an LLM configured a prompt alone is still taken (the seed creates tasks so); the task then
    waits for code ("needs_code"). `changes` are a new task's fields or an existing one's changes."""
    if task is not None and not {"code", "prompt"} & changes.keys():
        # A change of something else (a rename, a schedule, healing settings) is no time to ask for a prompt:
        # tasks made before this rule may have neither, and must stay editable until someone gives them one.
        return
    has_code = "code" in changes or (task is not None and task.current_version_id is not None)
    prompt = changes.get("prompt", task.prompt if task is not None else "")
    if not has_code and not (isinstance(prompt, str) and prompt.strip()):
        raise InputError("prompt", PROMPT_REQUIRED)


PROMPT_REQUIRED = "required when there is no code: the code is written from it"


class StateConflict(Exception):
    """The request is sound but the object's state does not allow it now (the API answers 409 with `code`)."""

    code = "conflict"


class TaskBusy(StateConflict):
    """The task is running or healing right now; deleting it would pull the history from under that work."""

    code = "task_busy"


class RunNotCancellable(StateConflict):
    """The run has ended already, or validates a machine-written version (and ends by itself)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def task_busy_reason(task: Task) -> str | None:
    """Why the task cannot be deleted now, or None. A run's code keeps acting on its site until it ends (a
    form gets sent), so the task goes once its runs and heals are done; queued runs go with it unstarted."""
    running = task.runs.filter(status=Run.Status.RUNNING).values_list("pk", flat=True).first()
    if running:
        return f"{running} is running; cancel it, or delete the task when it has ended"
    healing = HealingEvent.objects.filter(task=task, status__in=HealingEvent.OPEN).values_list("pk", flat=True).first()
    if healing:
        return f"{healing} is still healing the task; delete it when that heal has ended"
    return None


def task_delete(*, task: Task, actor: Actor | None = None) -> None:
    """Delete the task with its whole history (runs, heals, reviews, versions; the audit log stays) and the
    webhook endpoints filtered to it, which could never fire again (the audit entry names them). A person
    must own it, be a reviewer, or hold the admin's delete permission; TaskBusy while it runs or heals."""
    actor = as_actor(actor)
    user = actor.user
    if user is not None and not _answers_for(task, user, "tasks_app.delete_task"):
        raise PermissionDenied("only the task's owner, a reviewer or staff allowed to delete tasks can delete it")
    with transaction.atomic():
        Task.objects.select_for_update().filter(pk=task.pk).exists()
        if (busy := task_busy_reason(task)) is not None:
            raise TaskBusy(busy)
        webhook_endpoints = sorted(task.webhooks.values_list("pk", flat=True))
        audit_log(actor=actor, action="task.delete", obj=task, data={"name": task.name, "webhook_endpoints": webhook_endpoints})
        task.delete()


def version_create(
    *, task: Task, code: str, source: str, actor: Actor | None = None, parent: CodeVersion | None = None, note: str = ""
) -> CodeVersion:
    """Add a version without deploying it (healed drafts, generated code waiting for review)."""
    code_check(code)
    with transaction.atomic():
        Task.objects.select_for_update().filter(pk=task.pk).exists()
        return _version_add(task=task, code=code, source=source, author=actor, parent=parent, note=note)


_ONCE_VALIDATED = "it is deployed or put up for review once validated"


class DraftNotDeployable(Exception):
    """The version is a heal's draft that may not be deployed by hand: a heal still at work deploys it or
    puts it up for review itself once validated; approving its heal deploys a draft waiting for review; a
    rejected or failed heal's draft is kept for inspection only."""

    _WHY = {
        "healing": ("heal_in_progress", "is the draft of a heal still at work ({event}); " + _ONCE_VALIDATED),
        "validating": ("heal_in_progress", "is the draft of a heal still being validated ({event}); " + _ONCE_VALIDATED),
        "pending_review": ("awaiting_review", "is a healed draft waiting for review in {event}; approve that event to deploy it"),
        "rejected": ("discarded", "is a healed draft a reviewer rejected in {event}; it is kept for inspection only"),
        "failed": ("discarded", "is the draft of a heal that failed ({event}); it is kept for inspection only"),
    }

    def __init__(self, version: CodeVersion, event_id: str, event_status: str):
        self.code, why = self._WHY[event_status]
        super().__init__(f"version {version.number} " + why.format(event=event_id))
        self.event_id = event_id


def heal_drafts(task: Task) -> dict[int, tuple[str, str]]:
    """The task's versions that version_deploy refuses, as version id -> (heal id, heal status): drafts of
    heals still at work, waiting for review (deployed by approving them), rejected or failed (kept for
    inspection)."""
    return {
        version_id: (event_id, status)
        for version_id, event_id, status in HealingEvent.objects.filter(
            task=task, status__in=list(DraftNotDeployable._WHY), new_version__isnull=False
        ).values_list("new_version_id", "pk", "status")
    }


def version_deploy(*, task: Task, version: CodeVersion, actor: Actor | None = None, reason: str = "") -> Task:
    """Make `version` current. Rolling back to an earlier version creates no new code.

    A person needs the reviewer permission (the system deploys validated heals itself). A heal's draft
    is refused while its heal waits for review (approving it records the review, deploying it here would
    not) and once its heal was rejected or failed. Deploying the current version changes nothing.
    """
    if version.task_id != task.pk:
        raise InputError("version", "belongs to another task")
    actor = as_actor(actor)
    if actor.user is not None and not can_review(actor.user):
        raise PermissionDenied("only reviewers can deploy a version")
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        if task.current_version_id == version.pk:
            return task
        if draft := heal_drafts(task).get(version.pk):
            raise DraftNotDeployable(version, *draft)
        previous = task.current_version.number if task.current_version_id else None
        _make_current(task=task, version=version)
        audit_log(
            actor=actor,
            action="version.deploy",
            obj=task,
            data={"version": version.number, "previous_version": previous, "reason": reason},
        )
    return task


def run_create(
    *,
    task: Task,
    actor: Actor | None = None,
    params: dict | None = None,
    version: CodeVersion | None = None,
    purpose: str = Run.Purpose.NORMAL,
) -> Run:
    """Create a queued run of `version` (default: the current one) without starting it."""
    version = version or task.current_version
    if version is None:
        raise InputError("code", "the task has no code yet; give it code or configure an LLM to write it")
    if version.task_id != task.pk:
        raise InputError("version", "belongs to another task")
    if params:
        _require_secrets_holder(task, actor, "run it with params of your own")
    if purpose == Run.Purpose.NORMAL and version.pk != task.current_version_id:
        _check_runnable_by_hand(task, version, actor)
    run = Run.objects.create(
        task=task,
        version=version,
        purpose=purpose,
        params=_clean_params(params),
        requested_by=actor.stored_user if actor else None,
    )
    if purpose == Run.Purpose.NORMAL:
        audit_log(actor=actor, action="run.enqueue", obj=run, data={"version": version.number})
    return run


def _check_runnable_by_hand(task: Task, version: CodeVersion, actor: Actor | None) -> None:
    """A version other than the current one may run for real only once people have let it: machine-written
    code nobody has accepted yet (a heal's draft, a generated version 1 waiting for review) runs only in its
    validation run, kept to the task's sites. And the code decides where the secrets go, so on a task holding
    secrets only those who may change its code pick another version."""
    _require_secrets_holder(task, actor, "run a version other than the current one")
    if draft := heal_drafts(task).get(version.pk):
        raise InputError("version", str(DraftNotDeployable(version, *draft)))
    if version.source == CodeVersion.Source.GENERATED and not _ever_deployed(task, version):
        raise InputError("version", f"version {version.number} was generated from the prompt and nobody has deployed "
                                    "it yet; deploy it to run it")


def _ever_deployed(task: Task, version: CodeVersion) -> bool:
    # Every deploy of a version is in the audit log (version_deploy), and the log is never edited.
    return AuditLog.objects.filter(
        action="version.deploy", object_type="task", object_id=task.pk, data__version=version.number
    ).exists()


def run_enqueue(
    *,
    task: Task,
    actor: Actor | None = None,
    params: dict | None = None,
    version: CodeVersion | None = None,
    purpose: str = Run.Purpose.NORMAL,
) -> Run:
    """Create a queued run and put it on the `runs` queue once the row is committed.

    Robust: with Redis away the run is still created and queued, and maintenance enqueues its job once
    Redis is back (runs_requeue_missing). Failing the request instead would have the caller retry, and
    the run would happen twice."""
    with transaction.atomic():
        run = run_create(task=task, actor=actor, params=params, version=version, purpose=purpose)
        transaction.on_commit(lambda: run_job_enqueue(run.pk), robust=True)
        notify(event_type="run.queued", task_id=task.pk, data={"run": run.pk, "status": run.status})
    return run


def run_cancel(*, run: Run, actor: Actor | None = None) -> Run:
    """Stop a run. A queued run ends at once, unstarted; a running one is stopped by its worker within a
    second or two (its sandbox is killed, whatever the page was doing). It ends `failed` with error type
    `cancelled`, which is never healed. The person who started it, the task's owner, a reviewer or staff
    allowed to change tasks may cancel it; the validation run of a machine-written version ends by itself."""
    from tasks_app.execution import run_fail

    actor = as_actor(actor)
    user = actor.user
    if user is not None and not run_cancel_allowed(run, user):
        raise PermissionDenied("only who started the run, the task's owner, a reviewer or staff allowed to change tasks can cancel it")
    if run.purpose == Run.Purpose.VALIDATION:
        raise RunNotCancellable(f"{run.pk} validates a machine-written version and ends by itself", code="validation_run")
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status in Run.FINISHED:
            raise RunNotCancellable(f"{run.pk} has already finished ({run.status})", code="run_finished")
        if run.cancel_requested_at is not None:
            return run  # asked already; its worker is stopping it
        audit_log(actor=actor, action="run.cancel", obj=run, data={"status": run.status})
        if run.status == Run.Status.QUEUED:
            by = user.get_username() if user is not None else "the system"
            run_fail(run, f"cancelled by {by} before it started", error_type=CANCELLED, only_if_status=Run.Status.QUEUED)
        else:
            run.cancel_requested_at = timezone.now()
            run.cancel_requested_by = actor.stored_user
            run.save(update_fields=["cancel_requested_at", "cancel_requested_by"])
            # Open pages show "cancelling…" until its worker has stopped it (a broadcast-only kind).
            notify(event_type="run.cancel_requested", task_id=run.task_id, data={"run": run.pk, "status": run.status})
    run.refresh_from_db()
    return run


def run_cancel_allowed(run: Run, user) -> bool:
    """Whether `user` may cancel the run (the dashboard shows Cancel only then)."""
    return run.requested_by_id == user.pk or _answers_for(run.task, user)


def run_job_id(run_id: str) -> str:
    return f"run-{run_id}"


def run_job_enqueue(run_id: str) -> None:
    # The job id is derived from the run so maintenance can tell whether its job still exists;
    # the job itself claims the run with a conditional update, so a duplicate job does nothing.
    django_rq.get_queue("runs").enqueue(
        "tasks_app.jobs.run_task", run_id, job_id=run_job_id(run_id), job_timeout=_run_job_timeout()
    )


def _run_job_timeout() -> int:
    """Longer than the longest legitimate run: its wall clock, the agents' hand-over budget (the wall clock
    stops meanwhile) and the retries of storing its result, plus start-up. RQ's timeout interrupts the job
    wherever it is, so it must only ever fire on a job that is truly stuck; the sandbox's own limits fire first."""
    from tasks_app.execution import RESULT_STORE_RETRY_S
    from tasks_app.runner import HANDOVER_BUDGET_S

    return int(settings.RUN_WALL_TIMEOUT_S + HANDOVER_BUDGET_S + RESULT_STORE_RETRY_S + 60)


def fingerprints_store(*, task: Task, version: CodeVersion | None, steps: list[dict]) -> int:
    """Remember the element each successful step acted on; later heals look for it."""
    stored = 0
    for step in steps:
        properties = step.get("fingerprint")
        if not properties or step.get("outcome") not in ("ok", "recovered") or not step.get("step_key"):
            continue
        ElementFingerprint.objects.update_or_create(
            task=task,
            step_key=step["step_key"],
            defaults={
                "line": step.get("line"),
                "selector": step.get("selector") or "",
                "properties": properties,
                "version": version,
            },
        )
        stored += 1
    return stored


def task_runtime_secrets(task: Task) -> dict[str, str]:
    """Decrypt a task's secrets for a run, and make sure no log line can print them."""
    secrets = task.secrets
    register_secret_values(secrets.values())
    return secrets


# -- helpers -------------------------------------------------------------------------------------


def _version_add(
    *, task: Task, code: str, source: str, author: Actor | None, parent: CodeVersion | None = None, note: str = ""
) -> CodeVersion:
    last = task.versions.order_by("-number").values_list("number", flat=True).first() or 0
    return CodeVersion.objects.create(
        task=task,
        number=last + 1,
        code=code,
        source=source,
        parent=parent,
        author=author.stored_user if author else None,
        note=note[:500],
    )


def _make_current(*, task: Task, version: CodeVersion) -> None:
    task.current_version = version
    task.code_status = Task.CodeStatus.READY
    task.save(update_fields=["current_version", "code_status", "updated_at"])
    notify(
        event_type="task.version_deployed",
        task_id=task.pk,
        data={"task": task.pk, "version": version.number, "source": version.source},
    )


def code_check(code: Any) -> None:
    """Refuse code that is not a valid task module, naming the line and the reason."""
    if not isinstance(code, str):
        raise InputError("code", "must be a string of Python source")
    try:
        validate_task_code(code)
    except CodeValidationError as exc:
        where = f"line {exc.line}: " if exc.line else ""
        raise InputError("code", f"{where}{exc.reason}") from None


def _codeless_status() -> str:
    from healing_app.agents import llm_configured

    return Task.CodeStatus.GENERATING if llm_configured() else Task.CodeStatus.NEEDS_CODE


def _clean_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InputError("name", "is required")
    if len(name) > NAME_MAX:
        raise InputError("name", f"must be at most {NAME_MAX} characters")
    return name.strip()


def _clean_text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(field, "must be a string")
    if len(value) > 20_000:
        raise InputError(field, "must be at most 20000 characters")
    return value


def _clean_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(field, "must be true or false")
    return value


def _clean_params(params: Any) -> dict:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InputError("params", "must be an object")
    problem = unstorable(params)
    if problem is not None:
        raise InputError(f"params.{problem[0]}", problem[1])
    if "secrets" in params:
        raise InputError("params.secrets", "send secrets in the write-only `secrets` field, not in params")
    size = len(json.dumps(params, ensure_ascii=False, separators=(",", ":"), default=str).encode())
    if size > PARAMS_MAX_BYTES:
        raise InputError("params", f"must be at most {PARAMS_MAX_BYTES // 1024} KB as JSON (these are {-(-size // 1024)} KB)")
    return params


# Params are a task's inputs (a base URL, names, ids), shown on every page and API list of tasks and copied into
# each run: like the secrets (50 of 8192 characters), far below the code's 256 KB and the output's 1 MB.
PARAMS_MAX_BYTES = 64 * 1024


# Secret names appear in code (params["secrets"]["password"]) and in the LLM agent's placeholders,
# so they are identifiers; values are bounded so that one task cannot fill the table.
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
MAX_SECRETS = 50
SECRET_VALUE_MAX = 8192


def _clean_secrets(secrets: Any) -> dict[str, str]:
    if secrets is None:
        return {}
    if not isinstance(secrets, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()):
        raise InputError("secrets", "must be an object of string names to string values")
    if len(secrets) > MAX_SECRETS:
        raise InputError("secrets", f"at most {MAX_SECRETS} secrets per task")
    for name, value in secrets.items():
        if not SECRET_NAME.fullmatch(name):
            shown = name[:40] + ("…" if len(name) > 40 else "")
            raise InputError(
                "secrets", f"name {shown!r} must start with a letter or _ and have at most 64 letters, digits, _ . or -"
            )
        if len(value) > SECRET_VALUE_MAX:
            raise InputError(f"secrets.{name}", f"must be at most {SECRET_VALUE_MAX} characters")
    return secrets


def _clean_agent(value: Any) -> str:
    if value in (None, ""):
        return ""
    if value not in Task.Agent.values:
        raise InputError("healing_agent", "must be one of auto, heuristic, llm")
    return value


def _clean_schedule(value: Any) -> str:
    if value in (None, ""):
        return ""
    from tasks_app.cron import CronError, next_fire

    if not isinstance(value, str):
        raise InputError("schedule", "must be a cron expression string")
    try:
        next_fire(value, timezone.now())
    except CronError as exc:
        raise InputError("schedule", str(exc)) from None
    return value.strip()


def _clean_budget(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InputError("monthly_budget_usd", "must be an amount of US dollars") from None
    if not (amount.is_finite() and Decimal(0) <= amount < Decimal(1_000_000)):
        raise InputError("monthly_budget_usd", "must be between 0 and 999999.9999")
    # Refused rather than rounded: 0.00004 would otherwise become a budget of 0, which means "no LLM spend".
    if amount != amount.quantize(_BUDGET_STEP):
        raise InputError("monthly_budget_usd", "must have at most 4 decimal places")
    return abs(amount.quantize(_BUDGET_STEP))  # abs: -0.0 is stored and shown as 0.0000


_BUDGET_STEP = Decimal("0.0001")  # the column's precision


_FIELD_CLEANERS = {
    "name": _clean_name,
    "prompt": lambda value: _clean_text(value, "prompt"),
    "params": _clean_params,
    "secrets": _clean_secrets,
    "self_healing": lambda value: _clean_bool(value, "self_healing"),
    "healing_agent": _clean_agent,
    "schedule": _clean_schedule,
    "monthly_budget_usd": _clean_budget,
}

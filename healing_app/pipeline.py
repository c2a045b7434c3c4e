"""The healing state machine: takeover → evaluate → generate → validate → deploy | review | failed.

The takeover runs inside the run's own job while the sandboxed child waits at its failing step. The
later steps run as jobs on the `healing` queue; each one locks its event row and checks the state it
expects first, so a job that runs twice does nothing the second time.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from urllib.parse import urlparse

import django_rq
from django.db import transaction
from django.utils import timezone

from healing_app import codegen, costs, sites
from healing_app.agents import agent_for
from healing_app.agents.base import TakeoverContext, TakeoverOutcome
from healing_app.models import HealingEvent
from healing_app.notify import notify
from tasks_app import services as task_services
from tasks_app.models import CodeVersion, ElementFingerprint, Run, Task
from tasks_app.runner.protocol import CANCELLED
from tasks_app.timestamps import timestamp_text

logger = logging.getLogger(__name__)
Status = HealingEvent.Status


# -- 1. takeover (inside the run job) --------------------------------------------------------------


def takeover(*, run: Run, failure: dict, handover) -> None:
    """Let an agent complete the paused step, recording everything on the run's healing event."""
    task = run.task
    agent = agent_for(task)
    event = _event_for_failure(run=run, failure=failure, agent_kind=agent.kind)
    if event.status == Status.FAILED:  # max_attempts used up: the event says so; the run fails as it is
        handover.abort(event.reason)
        return
    _begin_healing(event, agent.kind)
    context = TakeoverContext(
        task_id=task.pk,
        prompt=task.prompt,
        code=run.version.code,
        failure=failure,
        stored_fingerprint=_stored_fingerprint(task, failure.get("step_key")),
        rejected_elements=_rejected_elements(task, failure.get("step_key")),
        rejected_paths=_rejected_paths(task, failure.get("step_key")),
        secret_keys=task.secret_keys,
        allowed_hosts=_allowed_hosts(task, run),
        params=run.effective_params,
        **_later_steps(run.version, failure.get("line")),
    )
    started = time.monotonic()
    kind = agent.kind
    try:
        outcome = agent.take_over(context, handover)
        kind = agent.kind  # the LLM agent becomes "heuristic" when it hands the takeover over
    except Exception as exc:  # an agent bug must fail the heal, not the worker
        logger.exception("the %s agent crashed during the takeover of %s", kind, run.pk)
        outcome = TakeoverOutcome(recovered=False, reason=f"the {kind} agent failed: {type(exc).__name__}: {exc}")
    elapsed_ms = int((time.monotonic() - started) * 1000)
    _record_takeover(event=event, failure=failure, agent_kind=kind, outcome=outcome, elapsed_ms=elapsed_ms)
    if not outcome.recovered:
        handover.abort(outcome.reason)


def _event_for_failure(*, run: Run, failure: dict, agent_kind: str) -> HealingEvent:
    """The run's event: created on its first failure; later failures of the same run join it."""
    existing = HealingEvent.objects.filter(run=run).first()
    if existing is not None:
        return existing
    task, step_key = run.task, failure.get("step_key") or ""
    # A heal whose run a person cancelled did not get its chance: it does not use up an attempt.
    used = (
        HealingEvent.objects.filter(task=task, step_key=step_key, original_version=run.version)
        .exclude(run__error_type=CANCELLED)
        .count()
    )
    max_attempts = task.config["max_attempts"]
    event = HealingEvent(
        task=task,
        run=run,
        error_type=failure["type"],
        error_message=(failure.get("message") or "")[:5000],
        failing_step={k: failure.get(k) for k in ("line", "action", "selector", "step_key", "url", "http_status")},
        step_key=step_key,
        attempt=used + 1,
        agent_kind=agent_kind,  # the agent taking over; the takeover's record names the one that finished
        original_version=run.version,
        screenshot=failure.get("screenshot_png_b64") or "",
        timeline=[{"status": Status.TRIGGERED, "at": timestamp_text()}],
    )
    if used >= max_attempts:
        event.transition_to(Status.FAILED, note="max attempts")
        event.reason = (
            f"max_attempts ({max_attempts}) already used for this step on version {run.version.number}; "
            "no new heal loop was started"
        )
    with transaction.atomic():
        event.save()
        _announce(event, "healing.failed" if event.status == Status.FAILED else "healing.triggered")
    return event


def _begin_healing(event: HealingEvent, agent_kind: str) -> None:
    """The agent is at work from now on (a takeover may wait for a slow page for a while): say so."""
    with transaction.atomic():
        event = HealingEvent.objects.select_for_update().get(pk=event.pk)
        if event.status != Status.TRIGGERED:
            return  # a later failure of the same run: its event is healing already
        event.transition_to(Status.HEALING, note=f"{agent_kind} agent took over")
        event.save()
        _announce(event, "healing.healing")


def _record_takeover(*, event: HealingEvent, failure: dict, agent_kind: str, outcome: TakeoverOutcome, elapsed_ms: int) -> None:
    failed_now = False
    with transaction.atomic():
        event = HealingEvent.objects.select_for_update().get(pk=event.pk)
        event.agent_kind = agent_kind
        event.agent_trace = [*event.agent_trace, {"failure": _failure_summary(failure), "steps": outcome.trace}]
        event.candidate_scores = outcome.candidates or event.candidate_scores
        event.chosen_element = outcome.chosen_element or event.chosen_element
        _add_cost(event, outcome.prompt_tokens, outcome.completion_tokens)
        event.timings = {**event.timings, "takeover_ms": event.timings.get("takeover_ms", 0) + elapsed_ms}
        if outcome.recovered:
            event.recovery = [*(event.recovery or []), outcome.recovery, *outcome.also]
        elif event.status == Status.HEALING:
            event.reason = outcome.reason
            event.transition_to(Status.FAILED, note=outcome.reason)
            failed_now = True
        event.save()
        # healing.failed (a webhook) once, by whoever failed the event; otherwise pages just show the new trace.
        _announce(event, "healing.failed" if failed_now else "healing.healing")


# -- 2. after the run: evaluate and generate ----------------------------------------------------------


def after_run(*, run: Run) -> None:
    """Called once a run has finished. Moves its event on, or finishes a validation."""
    if run.purpose == Run.Purpose.VALIDATION:
        validation_finished(run=run)
        return
    # A takeover that never recorded its outcome (its worker died mid-takeover) leaves its event
    # "triggered"; the run's end is the last chance to close it.
    for event in HealingEvent.objects.filter(run=run, status__in=(Status.TRIGGERED, Status.HEALING)):
        if run.status == Run.Status.HEALED and event.status == Status.HEALING:
            # robust: with Redis away, maintenance resumes the heal (heals_resume_stalled).
            transaction.on_commit(lambda event_id=event.pk: heal_generate_enqueue(event_id), robust=True)
        else:
            _fail(event, f"the run did not complete after the takeover: {run.error_message[:300]}")


def heal_generate_job_id(event_id: str) -> str:
    # Derived from the event, so maintenance can tell whether the job is still queued or running.
    return f"heal-generate-{event_id}"


# Set on a generate job enqueued again because the worker running it died: if that one dies too, the heal fails.
RESUMED_AFTER_WORKER_DIED = "resumed_after_worker_died"


def heal_generate_enqueue(event_id: str, *, after_worker_died: bool = False) -> None:
    _enqueue("healing", "healing_app.jobs.heal_generate", event_id, job_id=heal_generate_job_id(event_id),
             meta={RESUMED_AFTER_WORKER_DIED: True} if after_worker_died else None)


def heal_fail(event_id: str, reason: str) -> None:
    """Close an open heal that cannot go on (maintenance: its generate job crashed)."""
    _fail(HealingEvent.objects.get(pk=event_id), reason)


def heal_generate(event_id: str) -> None:
    """Evaluate the takeover, name the root cause and write the new version (a draft until deployed)."""
    event = HealingEvent.objects.select_related("task", "original_version", "run").filter(pk=event_id).first()
    if event is None or event.status != Status.HEALING:
        return  # already done by an earlier run of this job (or deleted with its task)
    if event.new_version_id:
        _validate_or_decide(event)  # an earlier run stored the version and stopped before going on
        return
    divergence = _path_divergence(event)
    if divergence:
        _fail(event, divergence)
        return
    agent = agent_for(event.task)
    started = time.monotonic()
    try:
        patch = agent.write_patch(
            code=event.original_version.code,
            recoveries=event.recovery or [],
            failure=event.failing_step | {"type": event.error_type, "message": event.error_message},
            prompt=event.task.prompt,
        )
    except (codegen.PatchError, ValueError) as exc:
        _fail(event, f"could not write a patch: {exc}")
        return
    # Counted before any refusal below: the model is paid for a patch the gate refuses too, and the budgets
    # must see it, or a model that keeps writing refused patches is never stopped.
    _add_cost(event, patch.prompt_tokens, patch.completion_tokens)
    if patch.trace:  # the patch's own requests (their ids), after the takeovers'
        event.agent_trace = [*event.agent_trace, {"stage": "patch", "steps": patch.trace}]
    HealingEvent.objects.filter(pk=event.pk).update(
        prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens, cost_usd=event.cost_usd,
        agent_trace=event.agent_trace,
    )
    if patch.code is None:
        HealingEvent.objects.filter(pk=event.pk).update(root_cause=patch.root_cause)
        _fail(event, "no code change needed: " + patch.root_cause)
        return
    violations = codegen.check_generated_code(
        patch.code, original=event.original_version.code, allowed_domains=_allowed_hosts(event.task, event.run)
    )
    if violations:
        _fail(event, "generated code refused by the safety gate: " + "; ".join(violations))
        return
    with transaction.atomic():
        event = HealingEvent.objects.select_for_update().get(pk=event.pk)
        if event.status != Status.HEALING or event.new_version_id:
            return
        Task.objects.select_for_update().filter(pk=event.task_id).exists()  # one heal of the task at a time here
        twin = _same_fix(event, patch.code)
        if twin is not None:
            HealingEvent.objects.filter(pk=event.pk).update(root_cause=patch.root_cause)
            if twin.status == Status.REJECTED:
                _fail(event, f"a reviewer rejected the same fix in {twin.pk}; no second version")
            else:
                _fail(event, f"the same fix is already {twin.get_status_display().lower()} in {twin.pk}; no second version")
            return
        version = task_services.version_create(
            task=event.task,
            code=patch.code,
            source=CodeVersion.Source.HEALED,
            parent=event.original_version,
            note=f"healed by {event.pk}",
        )
        event.new_version = version
        event.root_cause = patch.root_cause
        event.timings = {**event.timings, "generate_ms": int((time.monotonic() - started) * 1000)}
        event.save()
    _validate_or_decide(event)


def _same_fix(event: HealingEvent, code: str) -> HealingEvent | None:
    """Another heal of the same version whose draft is this code (timeouts aside: codegen.fix_shape), still
    being validated or reviewed, or rejected: a task that keeps failing the same way gets one review, not one
    a run, and a rejection sticks whatever the agent changed (one that only cleared a superseded heal from the queue,
    after the version was rolled back to, is no verdict)."""
    shape = codegen.fix_shape(code)
    others = (
        HealingEvent.objects.filter(
            task_id=event.task_id,
            original_version_id=event.original_version_id,
            status__in=(Status.VALIDATING, Status.PENDING_REVIEW, Status.REJECTED),
            new_version__isnull=False,
        )
        .exclude(pk=event.pk)
        .exclude(reviews__superseded=True)
        .select_related("new_version")
    )
    return next((other for other in others if codegen.fix_shape(other.new_version.code) == shape), None)


def _validate_or_decide(event: HealingEvent) -> None:
    if event.task.config["validation_required"]:
        _start_validation(event)
    else:
        _decide(event)


def _path_divergence(event: HealingEvent) -> str | None:
    """A heal that takes the run to pages the task never visited is a wrong heal, however well it ran.

    Compares, step by step, the page each step ran on in the healed run with the last run of the same
    version that succeeded without help. A look-alike button in another form is caught here.
    """
    usual = (
        Run.objects.filter(task=event.task, version=event.original_version, status=Run.Status.SUCCEEDED)
        .order_by("-created_at")
        .values_list("trace", "params")
        .first()
    )
    if not usual or not usual[0] or event.run is None:
        return None
    usual_paths = _step_paths(usual[0], {**event.task.params, **usual[1]})
    # A page that moved is expected on its new path; that is the heal itself, not a divergence.
    moved = {r["old_path"]: r["new_path"] for r in event.recovery or [] if r and r.get("kind") == "url"}
    for key, now in _step_paths(event.run.trace, event.run.effective_params).items():
        before = usual_paths.get(key)
        if before and now and not {moved.get(path, path) for path in before} & set(now):
            return (
                f"wrong heal refused: after the takeover, line {key[0]} ran on {' in '.join(now)}, "
                f"where the task's successful runs are on {' in '.join(before)}"
            )
    return None


def _step_paths(trace: list[dict], params: dict) -> dict[tuple, tuple[str, ...]]:
    """The page path of each step that ran (and, for a step inside an iframe, the path of the page the frame
    shows), keyed by line, action and how often that pair ran before (a loop's second pass is a step of its own;
    a recovered step carries its new selector in its step key, so the selector is left out). A path segment that
    is one of the run's params reads as that param's name: `/users/42` and `/users/7` are the same page of runs
    for different users."""
    by_value = {str(value): "{" + name + "}" for name, value in params.items()
                if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip("/")}
    seen: Counter[tuple] = Counter()
    paths: dict[tuple, tuple[str, ...]] = {}
    for step in trace:
        if step.get("outcome") == "error":
            continue
        pair = (step.get("line"), step.get("action"))
        urls = (step.get("url"), step.get("frame_url"))
        paths[(*pair, seen[pair])] = tuple(
            "/".join(by_value.get(segment, segment) for segment in urlparse(url).path.split("/")) for url in urls if url
        )
        seen[pair] += 1
    return paths


# -- 3. validation -----------------------------------------------------------------------------------


def _start_validation(event: HealingEvent) -> None:
    with transaction.atomic():
        event = HealingEvent.objects.select_for_update(of=("self",)).select_related("task", "new_version", "run").get(pk=event.pk)
        if event.status != Status.HEALING or event.validation_run_id:
            return
        run = task_services.run_enqueue(
            task=event.task, version=event.new_version, params=event.run.params if event.run else {}, purpose=Run.Purpose.VALIDATION
        )
        event.validation_run = run
        event.transition_to(Status.VALIDATING, note=f"validation run {run.pk}")
        event.save()
        _announce(event, "healing.validating")


def validation_hosts(run: Run) -> list[str]:
    """Where a validation run may navigate: the hosts of the task's params and of the pages its heal's run
    went through (a login on another domain included), since the code it validates is not reviewed yet."""
    healed = HealingEvent.objects.filter(validation_run=run).values_list("run__trace", flat=True).first() or []
    params = run.effective_params
    start = sites.start_url(params, run.task.prompt)  # a generated version 1 may know its site from the prompt only
    return sites.hosts_of([*params.values(), start, *(step.get("url") for step in healed)])


def secret_hosts(run: Run) -> list[str]:
    """Where an agent may type the task's secrets during a hand-over: the task's own sites (the hosts of its
    params, of the URL it starts at and of the URLs its code names), each with its subdomains, a leading www.
    dropped (www.shop.example signs in at login.shop.example). A single sign-on host elsewhere is allowed by
    putting its URL in the params. Not the pages the run was sent to: a redirect chose those."""
    params = run.effective_params
    urls = [*params.values(), sites.start_url(params, run.task.prompt), *codegen.urls_in_code(run.version.code)]
    return [host.removeprefix("www.") for host in sites.hosts_of(urls)]


def validation_frame_hosts(run: Run) -> list[str]:
    """Hosts a validation run's iframes may load from on top: those of the frames the agent closed a banner in
    (a consent tool's), without which the new version's handler has nothing to click. Frames only: the page,
    not the code, chose them."""
    recoveries = HealingEvent.objects.filter(validation_run=run).values_list("recovery", flat=True).first()
    return sites.hosts_of(
        recovery.get("frame_url") for recovery in recoveries or []
        if isinstance(recovery, dict) and recovery.get("kind") == "layer"
    )


def validation_finished(*, run: Run) -> None:
    event = HealingEvent.objects.filter(validation_run=run).select_related("run").first()
    if event is None:
        from healing_app.task_generation import generated_validation_finished

        generated_validation_finished(run=run)  # a generated version 1 has no heal behind it
        return
    if event.status != Status.VALIDATING:
        return
    healed_output = event.run.output if event.run else None
    if run.status != Run.Status.SUCCEEDED:
        _fail(event, f"validation run {run.pk} {run.status}: {run.error_type or ''} {run.error_message[:300]}".strip())
    elif run.output != healed_output:
        _fail(event, f"validation output {_short(run.output)} differs from the healed run's {_short(healed_output)}")
    else:
        _decide(event)


# -- 4. deploy or review -----------------------------------------------------------------------------


def _decide(event: HealingEvent) -> None:
    """Deploy a validated version with auto_deploy, exactly once; otherwise put it in front of a reviewer."""
    with transaction.atomic():
        event = HealingEvent.objects.select_for_update(of=("self",)).select_related("task", "new_version").get(pk=event.pk)
        if event.status not in (Status.HEALING, Status.VALIDATING):
            return
        task = Task.objects.select_for_update().get(pk=event.task_id)
        if task.current_version_id != event.original_version_id:
            event.reason = "superseded: the task's current version changed while this heal ran"
            event.transition_to(Status.FAILED, note=event.reason)
            event.save()
            kind = "healing.failed"
        elif task.config["auto_deploy"]:
            # Decided first, in the same transaction: version_deploy refuses the draft of a heal still at work.
            event.transition_to(Status.DEPLOYED, note="auto-deployed")
            event.decided_at = timezone.now()
            event.save()
            task_services.version_deploy(task=task, version=event.new_version, reason=f"auto-deploy of {event.pk}")
            kind = "healing.deployed"
        else:
            event.transition_to(Status.PENDING_REVIEW)
            event.save()
            kind = "healing.pending_review"
        _announce(event, kind)


# -- helpers -----------------------------------------------------------------------------------------


def _fail(event: HealingEvent, reason: str) -> None:
    with transaction.atomic():
        event = HealingEvent.objects.select_for_update().get(pk=event.pk)
        if not event.can_transition_to(Status.FAILED):
            return
        event.reason = reason[:2000]
        event.transition_to(Status.FAILED, note=reason[:200])
        event.save()
        _announce(event, "healing.failed")


def _announce(event: HealingEvent, kind: str) -> None:
    """Call inside the transaction that made the change, so its webhook deliveries commit with it (notify)."""
    notify(event_type=kind, task_id=event.task_id, data=event_payload(event))


def event_payload(event: HealingEvent) -> dict:
    """What live pages and webhooks receive: the API's summary (JSON-ready), its id also as `event`, and
    the reason a heal failed or was refused."""
    summary = event.to_dict()
    return {"event": event.pk, **summary, "timestamp": timestamp_text(summary["timestamp"]), "reason": event.reason}


def _add_cost(event: HealingEvent, prompt_tokens: int, completion_tokens: int) -> None:
    """Tokens and their price, added to what the event already spent."""
    if not (prompt_tokens or completion_tokens):
        return
    event.prompt_tokens += prompt_tokens
    event.completion_tokens += completion_tokens
    event.cost_usd += costs.cost_usd(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def _enqueue(queue: str, func, *args, job_id: str | None = None, meta: dict | None = None) -> None:
    django_rq.get_queue(queue).enqueue(func, *args, job_id=job_id, meta=meta)


def _stored_fingerprint(task: Task, step_key: str | None) -> dict | None:
    if not step_key:
        return None
    row = ElementFingerprint.objects.filter(task=task, step_key=step_key).first()
    return row.properties if row else None


def _later_steps(version: CodeVersion, line: int | None) -> dict:
    """What the steps after `line` acted on when they last succeeded: TakeoverContext's `later_texts` and
    `later_elements`."""
    rows = (
        ElementFingerprint.objects.filter(task_id=version.task_id, version=version, line__gt=line or 0)
        .order_by("line")
        .values_list("selector", "properties")[:20]
    )
    return {
        "later_texts": {selector: text for selector, properties in rows
                        if (text := str(properties.get("text") or "").strip())},
        "later_elements": [properties for _, properties in rows if properties],
    }


def _rejections(task: Task, step_key: str | None):
    """The step's heals that a reviewer rejected as wrong (not the ones only cleared from the queue as superseded)."""
    return (HealingEvent.objects.filter(task=task, step_key=step_key or "", status=Status.REJECTED)
            .exclude(reviews__superseded=True))


def _rejected_elements(task: Task, step_key: str | None) -> list[dict]:
    rows = _rejections(task, step_key).exclude(chosen_element=None)
    return [row.chosen_element for row in rows]


def _rejected_paths(task: Task, step_key: str | None) -> list[str]:
    """Where rejected heals of this step said its page had moved."""
    recorded = _rejections(task, step_key).exclude(recovery=None).values_list("recovery", flat=True)
    return [r["new_path"] for recoveries in recorded for r in recoveries if r and r.get("kind") == "url"]


def _allowed_hosts(task: Task, run: Run | None) -> list[str]:
    """The task's own domains: hosts of any URL in its params (base_url and friends)."""
    return sites.hosts_of((run.effective_params if run else task.params).values())


def _failure_summary(failure: dict) -> dict:
    return {k: failure.get(k) for k in ("type", "message", "line", "action", "selector", "url", "http_status")}


def _short(value) -> str:
    """A run's output as a reviewer reads it elsewhere (JSON, not Python's repr), cut to a line."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) < 120 else text[:117] + "..."

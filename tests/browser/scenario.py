"""Realistic dashboard data made through the real models, state transitions and broadcasts.

The full heal pipeline (runner, agent, codegen) is tested elsewhere; dashboard tests need events
in every state, made quickly and in any process: pytest (view tests), `manage.py shell` or an RQ
worker (browser tests and benchmarks enqueue `event_pending_make` on the "healing" queue).
"""

from __future__ import annotations

import base64
import struct
import zlib
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from healing_app.models import HealingEvent
from healing_app.notify import notify
from healing_app.pipeline import event_payload
from tasks_app import services
from tasks_app.models import CodeVersion, Run, Task

Status = HealingEvent.Status

CODE_V1 = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", params["name"])
    page.fill("#email", params["email"])
    page.fill("#message", "Hello from Anchor")
    page.click("#submit")
    return {"confirmation": page.inner_text(".confirmation")}
'''

OLD_SELECTOR = "#submit"
NEW_SELECTOR = "button[data-test=send]"


def healed_code(code: str) -> str:
    return code.replace(f'"{OLD_SELECTOR}"', f'"{NEW_SELECTOR}"')


def task_make(name: str = "Contact form", *, auto_deploy: bool = False) -> Task:
    return services.task_create(
        name=name,
        prompt="Fill out the contact form on the demo site",
        code=CODE_V1,
        params={"base_url": "http://127.0.0.1:8000/demo-site", "name": "Ada", "email": "ada@example.com"},
        self_healing=True,
        self_healing_config={"auto_deploy": auto_deploy, "validation_required": True},
    )


def event_pending_make(task_id: str, *, screenshot_b64: str | None = None, final: str = Status.PENDING_REVIEW) -> str:
    """A broken run healed by the heuristic agent, validated, and waiting for review (or `final`).

    Each transition is its own transaction, so every open dashboard sees each state as it lands.
    Returns the event id (RQ keeps it as the job result).
    """
    task = Task.objects.select_related("current_version").get(pk=task_id)
    original = task.current_version
    now = timezone.now()
    run = Run.objects.create(
        task=task,
        version=original,
        status=Run.Status.HEALED,
        started_at=now,
        finished_at=now,
        output={"confirmation": "Thanks, Ada!"},
        trace=_trace(original.code),
    )
    failing = {"line": _line_of(original.code, OLD_SELECTOR), "action": "click", "selector": OLD_SELECTOR,
               "step_key": f"click:{OLD_SELECTOR}", "url": task.params.get("base_url", "") + "/contact", "http_status": 200}
    with transaction.atomic():
        event = HealingEvent.objects.create(
            task=task,
            run=run,
            error_type="element_not_found",
            error_message=f"TimeoutError: waiting for locator('{OLD_SELECTOR}') to be visible (5000 ms)",
            failing_step=failing,
            step_key=failing["step_key"],
            original_version=original,
            screenshot=screenshot_b64 if screenshot_b64 is not None else tiny_png_b64(),
            timeline=[{"status": Status.TRIGGERED, "at": timezone.now().isoformat()}],
        )
        _announce(event, "healing.triggered")
    with transaction.atomic():
        event.transition_to(Status.HEALING, note="heuristic agent took over")
        event.agent_kind = "heuristic"
        event.agent_trace = [{"failure": failing, "steps": _agent_steps()}]
        event.candidate_scores = _candidates()
        event.chosen_element = _candidates()[0]
        event.save()
        _announce(event, "healing.healing")
    if final == Status.FAILED:
        with transaction.atomic():
            event.reason = "locator abstained: two candidates scored alike"
            event.transition_to(Status.FAILED, note=event.reason)
            event.save()
            _announce(event, "healing.failed")
        return str(event.pk)
    with transaction.atomic():
        version = services.version_create(
            task=task, code=healed_code(original.code), source=CodeVersion.Source.HEALED, parent=original,
            note=f"healed by {event.pk}",
        )
        validation = Run.objects.create(
            task=task, version=version, purpose=Run.Purpose.VALIDATION, status=Run.Status.SUCCEEDED,
            started_at=now, finished_at=timezone.now(), output={"confirmation": "Thanks, Ada!"},
            trace=_trace(version.code),
        )
        event.new_version = version
        event.validation_run = validation
        event.root_cause = (
            f"`{OLD_SELECTOR}` on line {failing['line']} no longer matches; the button is now `{NEW_SELECTOR}`"
        )
        event.prompt_tokens, event.completion_tokens, event.cost_usd = 0, 0, Decimal(0)
        event.transition_to(Status.VALIDATING, note=f"validation run {validation.pk}")
        event.save()
        _announce(event, "healing.validating")
    if final == Status.VALIDATING:
        return str(event.pk)
    with transaction.atomic():
        if final == Status.DEPLOYED:
            event.transition_to(Status.DEPLOYED, note="auto-deployed")
            event.decided_at = timezone.now()
            event.save()  # decided first, as the pipeline does: version_deploy refuses a heal's draft at work
            services.version_deploy(task=task, version=version, reason=f"auto-deploy of {event.pk}")
            kind = "healing.deployed"
        else:
            event.transition_to(Status.PENDING_REVIEW)
            kind = "healing.pending_review"
        event.save()
        _announce(event, kind)
    return str(event.pk)


def tiny_png_b64(width: int = 4, height: int = 3) -> str:
    """A valid, solid-grey PNG: enough for the screenshot plumbing, without a browser."""
    raw = b"".join(b"\x00" + b"\x99\x99\x99" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def _announce(event: HealingEvent, kind: str) -> None:
    notify(event_type=kind, task_id=event.task_id, data=event_payload(event))


def _line_of(code: str, needle: str) -> int:
    return next((i for i, line in enumerate(code.splitlines(), 1) if needle in line), 1)


def _trace(code: str) -> list[dict]:
    steps = []
    for i, (action, selector) in enumerate(
        [("goto", None), ("fill", "#name"), ("fill", "#email"), ("fill", "#message"),
         ("click", OLD_SELECTOR if OLD_SELECTOR in code else NEW_SELECTOR)]
    ):
        outcome = "recovered" if selector == OLD_SELECTOR else "ok"
        steps.append({
            "index": i, "line": i + 2, "action": action, "selector": selector, "args": {}, "url": "http://127.0.0.1:8000/demo-site/contact",
            "started_ms": i * 120.0, "duration_ms": 80.0 + i * 10, "outcome": outcome, "error": None, "step_key": f"{action}:{selector}",
            "recovery": {"how": "retry", "selector": NEW_SELECTOR, "original_selector": OLD_SELECTOR} if outcome == "recovered" else None,
        })
    return steps


def _candidates() -> list[dict]:
    return [
        {"tag": "BUTTON", "text": "Send", "data_testid": "send", "type": "submit", "score": 0.9132},
        {"tag": "BUTTON", "text": "Reset", "type": "reset", "score": 0.4121},
        {"tag": "A", "text": "Contact sales", "href": "/sales", "score": 0.1873},
    ]


def _agent_steps() -> list[dict]:
    at = timezone.now().timestamp()
    return [
        {"at": round(at, 3), "action": "observe", "elements": 42, "url": "http://127.0.0.1:8000/demo-site/contact"},
        {"at": round(at + 0.05, 3), "action": "locate", "target_from": "stored fingerprint", "candidates": 42, "excluded": 0,
         "best": {"tag": "BUTTON", "text": "Send", "score": 0.9132}},
        {"at": round(at + 0.2, 3), "action": "retry_step", "selector": NEW_SELECTOR, "ok": True},
    ]


def event_validation_passes(event_id: str) -> str:
    """A validating heal's validation passes and it goes to review."""
    with transaction.atomic():
        event = HealingEvent.objects.get(pk=event_id)
        event.transition_to(Status.PENDING_REVIEW)
        event.save()
        _announce(event, "healing.pending_review")
    return str(event.pk)


def run_steps_play(task_id: str, *, delay_s: float = 0.4, another_run_after: int | None = None,
                   hold_s: float = 0.0, run_id: str | None = None) -> str:
    """A run that executes step by step the way the runner reports it: run.started, run.step…, run.finished.

    `another_run_after`: after that many steps another run of the task is queued (the runs card is re-fetched);
    `hold_s`: how long the run stays running after its last step; `run_id`: a run made by run_queued_make."""
    import time

    from healing_app import broadcast
    from tasks_app.execution import run_announce, run_step_record

    task = Task.objects.select_related("current_version").get(pk=task_id)
    if run_id is None:
        run = Run.objects.create(task=task, version=task.current_version)
    else:
        run = Run.objects.get(pk=run_id)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, started_at=timezone.now())
    run.refresh_from_db()
    broadcast.publish(kind="run.started", task_id=task.pk, data={"run": run.pk, "status": run.status})
    steps = _trace(task.current_version.code)
    for number, step in enumerate(steps, 1):
        time.sleep(delay_s)
        run_step_record(run, {**step, "outcome": "ok", "recovery": None})
        if number == another_run_after:
            queued = services.run_create(task=task)  # left queued: no worker is to run it
            broadcast.publish(kind="run.queued", task_id=task.pk, data={"run": queued.pk, "status": queued.status})
    time.sleep(hold_s)
    if another_run_after is not None:
        Run.objects.filter(pk=queued.pk).delete()  # before maintenance would enqueue it again as lost
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.SUCCEEDED, finished_at=timezone.now(), trace=steps, output={"confirmation": "Thanks, Ada!"}
    )
    run.refresh_from_db()
    run_announce(run)
    return str(run.pk)


# -- small entry points for jobs (RQ passes plain arguments and keeps plain results) ----------------


def task_make_id(name: str) -> str:
    return str(task_make(name).pk)


def run_queued_make(task_id: str) -> str:
    """A queued run of the task that no worker will pick up (run_steps_play plays it)."""
    task = Task.objects.select_related("current_version").get(pk=task_id)
    return str(Run.objects.create(task=task, version=task.current_version).pk)


def events_bulk_make(task_id: str, count: int, *, status: str, error_type: str, days_ago: int = 400) -> int:
    """Many old events at once, for paging and filters (no transitions: they are history, not news)."""
    import datetime as dt

    now = timezone.now()
    HealingEvent.objects.bulk_create(
        HealingEvent(task_id=task_id, status=status, error_type=error_type, root_cause=f"bulk {i}",
                     created_at=now - dt.timedelta(days=days_ago, minutes=i))
        for i in range(count)
    )
    return count


def event_approve_as(event_id: str, username: str) -> str:
    from django.contrib.auth import get_user_model

    from healing_app.services import healing_approve

    reviewer = get_user_model().objects.get(username=username)
    return str(healing_approve(event=HealingEvent.objects.get(pk=event_id), reviewer=reviewer).status)


def users_make(users: list, *, reviewers: list[str]) -> list[str]:
    """Users (username, password); those named in `reviewers` join the reviewers group."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    made = []
    for username, password in users:
        user = get_user_model().objects.create_user(username, password=password)
        if username in reviewers:
            user.groups.add(Group.objects.get(name="reviewers"))
        made.append(user.get_username())
    return made


def event_reject_as(event_id: str, username: str, comment: str) -> str:
    from django.contrib.auth import get_user_model

    from healing_app.services import healing_reject

    reviewer = get_user_model().objects.get(username=username)
    return str(healing_reject(event=HealingEvent.objects.get(pk=event_id), reviewer=reviewer, comment=comment).status)


def task_code_edit(task_id: str) -> int:
    """A person saves new code for the task (a new current version); returns its number."""
    task = Task.objects.get(pk=task_id)
    task = services.task_update(task=task, code=task.current_version.code + "\n# edited by hand\n")
    return task.current_version.number

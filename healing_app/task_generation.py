"""Version 1 of a task from its prompt: the LLM looks at the site through a sandboxed run and writes the code.

    task_create(name=..., prompt=..., params={"base_url": ...})   # no code, LLM configured
      → code_status "generating", task_generate_enqueue(task=task) → RQ "healing" queue
      → task_generate(task_id=...): a tiny probe task opens the start page in the sandbox and pauses
        there (a deliberate missing element, so the runner's hand-over opens); the model explores
        read-only (open pages and follow links of the task's own sites) and calls write_code
      → the code passes validate_task_code and the safety gate (with up to two chances to fix what
        the gate refused), becomes CodeVersion v1 (source "generated")
      → with auto_deploy: code_status "validating", a validation run, then deployed if it succeeds
        (generated_validation_finished; "pending_review" if it fails, or at once without validation_required);
        without auto_deploy: code_status "pending_review" for a person.

Exploring never clicks buttons or submits forms, so generating code has no side effect on the site.
Failures (no LLM answer, gate refusals, budget) leave the task at "needs_code"; the audit log entry
"task.generate" says why and carries the tokens and USD spent either way.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import django_rq
from django.conf import settings
from django.db import transaction

from healing_app import codegen, costs, sites
from healing_app.agents import prompts
from healing_app.agents.llm import LLMAgent
from healing_app.agents.llm_chat import (
    Chat,
    Limits,
    LLMUnavailable,
    Stopped,
    append_tool_reply,
    assistant_dict,
    clip,
    flat_secrets,
    nonce,
    page_view,
    placeholders_to_params,
    stub_old_pages,
    tool,
    tool_arguments,
    trace_entry,
)
from tasks_app.audit import audit_log
from tasks_app.models import CodeVersion, Run, Task

logger = logging.getLogger(__name__)

PROBE_CODE = """def run(page, params):
    page.goto(params["start_url"])
    # Pause on the start page: the code writer takes over through the hand-over channel.
    page.click("#anchor-explore-pause", timeout=300)
"""
MAX_GATE_REPAIRS = 2
EXPLORE_WALL_S = 60.0
JOB_TIMEOUT_S = 300

GENERATE_TOOLS = [
    tool("goto", "Open a page of the task's own sites.", {"url": {"type": "string"}}, ("url",)),
    tool(
        "open_link",
        "Follow a link (an <a> element with an href) of the current page.",
        {"ref": {"type": "integer"}},
        ("ref",),
    ),
    tool(
        "write_code",
        "Submit version 1 of the task code, with a short note for the reviewer.",
        {"code": {"type": "string"}, "notes": {"type": "string"}},
        ("code",),
    ),
    tool(
        "give_up",
        "Stop: the prompt cannot be turned into code for this site.",
        {"reason": {"type": "string"}},
        ("reason",),
    ),
]


@dataclass
class Generated:
    code: str | None
    notes: str = ""
    reason: str = ""  # why there is no code
    prompt_tokens: int = 0
    completion_tokens: int = 0
    trace: list[dict] = field(default_factory=list)


# -- the service and its job ------------------------------------------------------------------------


def task_generate_job_id(task_id: str) -> str:
    # Derived from the task, so maintenance can tell whether the job is still queued or running.
    return f"generate-{task_id}"


def task_generate_enqueue(*, task: Task, after_worker_died: bool = False) -> None:
    """Queue the generation of version 1 on the `healing` queue, once the task row is committed.

    Robust: with Redis away the task is still created, "generating", and maintenance enqueues the job
    once Redis is back (generations_resume_stalled)."""
    from healing_app.pipeline import RESUMED_AFTER_WORKER_DIED

    transaction.on_commit(
        lambda: django_rq.get_queue("healing").enqueue(
            "healing_app.task_generation.task_generate_job",
            task.pk,
            job_id=task_generate_job_id(task.pk),
            job_timeout=JOB_TIMEOUT_S,
            meta={RESUMED_AFTER_WORKER_DIED: True} if after_worker_died else None,
        ),
        robust=True,
    )


def task_generate_fail(task_id: str, reason: str) -> Task:
    """End a generation that cannot go on (maintenance: its job crashed): the task needs code, and says why."""
    return _finish(Task.objects.get(pk=task_id), Generated(code=None, reason=reason))


def task_generate_job(task_id: str) -> str:
    return task_generate(task_id=task_id).code_status


Explorer = Callable[[Callable[[Any], Generated]], Generated]


def task_generate(*, task_id: str, explore: Explorer | None = None, client: Any = None) -> Task:
    """Write version 1 of a task that has none. Safe to run twice: a task with a version is left alone.

    `explore(work)` opens the start page and calls `work(handover)`; by default it is a sandboxed run
    in the shared browser pool.
    """
    task = Task.objects.get(pk=task_id)
    if task.code_status != Task.CodeStatus.GENERATING or task.versions.exists():
        return task
    budget = costs.budget_exceeded(task)
    if budget:
        return _finish(task, Generated(code=None, reason=budget))
    start_url = start_url_for(task)
    if not start_url:
        return _finish(
            task,
            Generated(code=None, reason="no start URL: give the task a base_url param or name the site in the prompt"),
        )
    allowed = allowed_hosts_for(task, start_url)
    writer = CodeWriter(
        agent=LLMAgent(client=client, fallback=None, secrets=flat_secrets(task.secrets)),
        prompt=task.prompt,
        params=task.params,
        secret_keys=task.secret_keys,
        allowed_hosts=allowed,
    )
    explore = explore or (lambda work: explore_in_sandbox(start_url=start_url, allowed_hosts=allowed, work=work))
    written: list[Generated] = []

    def write(handover) -> Generated:
        written.append(writer.write(handover))
        return written[-1]

    try:
        generated = explore(write)
    except Exception as exc:  # noqa: BLE001 - the runner failed: the task must still leave "generating"
        logger.exception("exploring the site for %s failed", task.pk)
        spent = written[-1] if written else Generated(code=None)  # what the model cost until then still counts
        generated = Generated(
            code=None, reason=f"could not explore the site: {type(exc).__name__}: {clip(str(exc), 200)}",
            prompt_tokens=spent.prompt_tokens, completion_tokens=spent.completion_tokens, trace=spent.trace,
        )
    return _finish(task, generated)


def _finish(task: Task, generated: Generated) -> Task:
    from tasks_app import services as task_services

    usd = costs.cost_usd(prompt_tokens=generated.prompt_tokens, completion_tokens=generated.completion_tokens)
    data = {
        "ok": generated.code is not None,
        "model": settings.OPENAI_MODEL,
        "prompt_tokens": generated.prompt_tokens,
        "completion_tokens": generated.completion_tokens,
        "cost_usd": str(usd),
        "reason": generated.reason,
        "notes": clip(generated.notes, 1000),
        "trace": generated.trace[-40:],
    }
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        if task.code_status != Task.CodeStatus.GENERATING or task.versions.exists():
            return task  # another run of this job finished first
        if generated.code is None:
            task.code_status = Task.CodeStatus.NEEDS_CODE
            task.save(update_fields=["code_status", "updated_at"])
            audit_log(actor=None, action=costs.GENERATION_ACTION, obj=task, data=data)
            logger.info("no code generated for %s: %s", task.pk, generated.reason)
            return task
        version = task_services.version_create(
            task=task,
            code=generated.code,
            source=CodeVersion.Source.GENERATED,
            note=clip(f"generated from the prompt by {settings.OPENAI_MODEL}. {generated.notes}", 500),
        )
        data["version"] = version.number
        audit_log(actor=None, action=costs.GENERATION_ACTION, obj=task, data=data)
        if task.config["auto_deploy"] and task.config["validation_required"]:
            # Deployed only once a run of it succeeds (generated_validation_finished), as a healed version is.
            task.code_status = Task.CodeStatus.VALIDATING
            task.save(update_fields=["code_status", "updated_at"])
            task_services.run_enqueue(task=task, version=version, purpose=Run.Purpose.VALIDATION)
        elif task.config["auto_deploy"]:
            task_services.version_deploy(task=task, version=version, reason="auto-deploy of the generated version 1")
        else:
            task.code_status = Task.CodeStatus.PENDING_REVIEW
            task.save(update_fields=["code_status", "updated_at"])
    task.refresh_from_db()
    return task


def generated_validation_finished(*, run: Run) -> None:
    """A validation run of a generated version 1 ended: deploy it if the run succeeded, else leave it to a
    reviewer (pending review), saying why in the audit log."""
    from tasks_app import services as task_services

    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=run.task_id)
        if task.code_status != Task.CodeStatus.VALIDATING or task.current_version_id:
            return  # already decided (the job ran twice), or a person deployed a version meanwhile
        if run.status == Run.Status.SUCCEEDED:
            task_services.version_deploy(
                task=task, version=run.version, reason=f"auto-deploy of the generated version 1 after validation run {run.pk}"
            )
            return
        task.code_status = Task.CodeStatus.PENDING_REVIEW
        task.save(update_fields=["code_status", "updated_at"])
        why = f"validation run {run.pk} {run.status}: {run.error_type} {run.error_message[:300]}".strip()
        audit_log(actor=None, action="task.generated_validation_failed", obj=task, data={"reason": why})


# -- where to start and where the task may go -------------------------------------------------------

def start_url_for(task: Task) -> str | None:
    return sites.start_url(task.params or {}, task.prompt or "")


def allowed_hosts_for(task: Task, start_url: str) -> list[str]:
    return sites.hosts_of([*(task.params or {}).values(), start_url])


# -- exploring in the sandbox -----------------------------------------------------------------------


def explore_in_sandbox(*, start_url: str, allowed_hosts: list[str], work: Callable[[Any], Generated]) -> Generated:
    """Open `start_url` in a sandboxed run and let `work` use the paused page through the hand-over."""
    from tasks_app.execution import browser_pool
    from tasks_app.runner.protocol import RunSpec
    from tasks_app.runner.sandbox import execute

    box: dict[str, Generated] = {}

    def on_handover(failure, handover) -> None:
        try:
            box["result"] = work(handover)
        except Exception as exc:  # noqa: BLE001 - reported as the reason, the sandbox run just ends
            logger.exception("the code writer failed")
            box["result"] = Generated(
                code=None, reason=f"the code writer failed: {type(exc).__name__}: {clip(str(exc), 200)}"
            )
        finally:
            handover.abort("exploration finished")

    spec = RunSpec(
        code=PROBE_CODE,
        params={"start_url": start_url},
        handover_on=["element_not_found", "timeout"],
        wall_timeout_s=EXPLORE_WALL_S,
        allowed_hosts=allowed_hosts,
    )
    result = execute(spec, on_handover=on_handover, browser=browser_pool(), handover_timeout_s=Limits().max_seconds * 2)
    if "result" in box:
        return box["result"]
    error = f"{result.error_type or ''} {clip(result.error_message or '', 300)}".strip()
    return Generated(code=None, reason=f"could not open {start_url}: {error}")


# -- the model's side -------------------------------------------------------------------------------


@dataclass
class CodeWriter:
    agent: LLMAgent
    prompt: str
    params: dict
    secret_keys: list[str]
    allowed_hosts: list[str]

    def write(self, handover) -> Generated:
        """Explore through `handover` and write the code. Never raises: whatever goes wrong, the result says why and
        keeps the tokens spent until then (they count against the budgets)."""
        limits = self.agent.limits
        trace: list[dict] = []
        deadline = time.monotonic() + limits.max_seconds
        chat = Chat(self.agent, deadline=deadline, trace=trace, stop=getattr(handover, "stopped", None))

        def result(**kwargs) -> Generated:
            return Generated(
                prompt_tokens=chat.prompt_tokens, completion_tokens=chat.completion_tokens, trace=trace, **kwargs
            )

        self.handover, self.trace, self.nonce = handover, trace, nonce()
        try:
            return self._write(chat, deadline, result)
        except Stopped as exc:
            return result(code=None, reason=f"the exploration was stopped: {exc}")
        except LLMUnavailable as exc:
            return result(code=None, reason=f"the LLM was unavailable: {exc}")
        except Exception as exc:  # noqa: BLE001 - a page or an answer we did not foresee: the task still needs code
            logger.exception("the code writer failed")
            return result(code=None, reason=f"the code writer failed: {type(exc).__name__}: {clip(str(exc), 200)}")

    def _write(self, chat: Chat, deadline: float, result: Callable[..., Generated]) -> Generated:
        limits = self.agent.limits
        fence, trace = self.nonce, self.trace
        page = self._observe()
        messages: list[dict] = [
            {
                "role": "system",
                "content": prompts.GENERATE_SYSTEM.format(
                    allowed_hosts=", ".join(self.allowed_hosts), secret_keys=", ".join(self.secret_keys) or "(none)"
                ),
            },
            {
                "role": "user",
                "content": prompts.GENERATE_USER.format(
                    prompt=self.prompt or "(none)",
                    params=json.dumps({k: v for k, v in self.params.items() if k != "secrets"}, ensure_ascii=False),
                ),
            },
            {"role": "user", "content": prompts.TAKEOVER_PAGE.format(page=prompts.untrusted_block(fence, page))},
        ]
        page_messages = [2]
        repairs = 0
        for _ in range(limits.max_steps):
            if chat.tokens_total >= limits.max_tokens:
                return result(code=None, reason=f"token budget used up ({chat.tokens_total} tokens)")
            stub_old_pages(messages, page_messages)
            message = chat.complete(messages, tools=GENERATE_TOOLS)
            messages.append(assistant_dict(message))
            if not message.tool_calls:
                messages.append(
                    {"role": "user", "content": "Answer with a tool call: write_code, goto, open_link or give_up."}
                )
                continue
            for call in message.tool_calls:
                # One reply may hold many calls (eight slow page loads): the time budget holds within a reply too.
                if time.monotonic() >= deadline:
                    return result(code=None, reason=f"time budget used up ({limits.max_seconds:.0f} s)")
                name = clip(call.function.name, 80)
                args = tool_arguments(call)
                if args is None:
                    reply: dict = {"ok": False, "error": "arguments must be a JSON object"}
                elif name == "write_code":
                    code, violations = self._check(str(args.get("code") or ""))
                    trace.append(trace_entry("write_code", ok=not violations, violations=violations or None))
                    if not violations:
                        return result(code=code, notes=str(args.get("notes") or ""))
                    repairs += 1
                    if repairs > MAX_GATE_REPAIRS:
                        return result(
                            code=None, reason="generated code refused by the safety gate: " + "; ".join(violations)
                        )
                    reply = {
                        "ok": False,
                        "refused": True,
                        "error": "refused by the safety gate: "
                        + "; ".join(violations)
                        + ". Fix it and call write_code again.",
                    }
                elif name == "give_up":
                    trace.append(trace_entry("give_up", reason=clip(str(args.get("reason") or ""), 300)))
                    return result(code=None, reason=f"the model gave up: {clip(str(args.get('reason') or ''), 300)}")
                elif name in ("goto", "open_link"):
                    reply = self._navigate(name, args)
                else:
                    reply = {"ok": False, "error": f"unknown tool {name!r}"}
                append_tool_reply(messages, page_messages, call_id=call.id, reply=reply)
        return result(code=None, reason=f"no code within {limits.max_steps} model steps")

    def _observe(self) -> dict:
        obs = self.handover.observe()
        self.url = obs.get("url") or ""
        self.elements = {e.get("ref"): e for e in obs.get("elements") or []}
        return self.agent.scrub_secrets(page_view(obs, self.agent.limits, keep_refs=[]))

    def _navigate(self, name: str, args: dict) -> dict:
        if name == "goto":
            url = urljoin(self.url, str(args.get("url") or ""))
        else:
            element = self.elements.get(args.get("ref"))
            if element is None or not element.get("href"):
                return {"ok": False, "error": "open_link needs the ref of a link (an element with an href)"}
            url = urljoin(self.url, element["href"])
        if not sites.on_sites(url, self.allowed_hosts):
            reason = f"{clip(url, 120)} is not on the task's sites ({', '.join(self.allowed_hosts)})"
            logger.warning("code writer navigation refused: %s", reason)
            self.trace.append(trace_entry("refused", tool=name, category="leaves_allowed_hosts", reason=reason))
            return {"ok": False, "refused": True, "error": f"refused: {reason}"}
        # Following a link is a navigation to its href: no click, so no script of the site runs for it.
        answer = self.handover.goto(url)
        self.trace.append(
            trace_entry("tool_call", tool=name, url=clip(url, 300), ok=bool(answer.get("ok")), status=answer.get("status"))
        )
        view = self._observe()
        return {
            "ok": bool(answer.get("ok")),
            "status": answer.get("status"),
            "error": answer.get("error"),
            "page": prompts.untrusted_block(self.nonce, view),
        }

    def _check(self, code: str) -> tuple[str, list[str]]:
        code = placeholders_to_params(code)
        violations = codegen.check_generated_code(code, original=None, allowed_domains=self.allowed_hosts)
        return code, violations

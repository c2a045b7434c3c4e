"""Dashboard pages for tasks: the list, one task (config, versions, diff, rollback, runs, heals), Run now.

Thin: reads are a few bounded queries here, every change goes through tasks_app.services. The live
parts of the task page are re-fetched through `task_part` when the websocket says they changed.
"""

from __future__ import annotations

import copy
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from healing_app.diffing import render_diff
from healing_app.models import HealingEvent
from healing_app.services import can_review
from tasks_app import services
from tasks_app.audit import dashboard_actor
from tasks_app.config import FAILURE_TYPES, InputError
from tasks_app.forms import DeployForm, DiffForm, HealingConfigForm, TaskForm
from tasks_app.ids import object_or_404
from tasks_app.models import AuditLog, CodeVersion, Run, Task
from tasks_app.scheduling import schedule_next_run

TASK_PARTS = {
    "versions": "tasks/_versions.html",
    "runs": "tasks/_runs.html",
    "events": "tasks/_events.html",
    "code": "tasks/_code.html",  # the current version's code: a deploy changes it while the page is open
    "diff": "tasks/_diff.html",  # the default comparison, current version and the one before: so does that
}
RUNS_SHOWN = 15
VERSIONS_SHOWN = 50
EVENTS_SHOWN = 20


@require_GET
@login_required
def task_list(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()[:200]
    tasks = Task.objects.select_related("current_version").only(
        "id", "name", "self_healing", "created_at", "current_version__number"
    )
    if q:
        tasks = tasks.filter(Q(pk=q) | Q(name__icontains=q))
    # The task's own runs: a validation run tries a draft, not the code the task runs.
    latest_run = Run.objects.filter(task=OuterRef("pk"), purpose=Run.Purpose.NORMAL).order_by("-created_at")
    # By name: Task has an index on name (none on created_at), so a page never sorts all 10k tasks.
    page = Paginator(tasks.order_by("name", "id"), 50).get_page(request.GET.get("page"))
    # Annotate only the page's rows, so the list costs the same with 10 or 10k tasks.
    ids = [task.pk for task in page.object_list]
    extra = {
        row["pk"]: row
        for row in Task.objects.filter(pk__in=ids)
        .annotate(
            last_run_status=Subquery(latest_run.values("status")[:1]),
            last_run_at=Subquery(latest_run.values("created_at")[:1]),
            pending=Count("healing_events", filter=Q(healing_events__status=HealingEvent.Status.PENDING_REVIEW)),
        )
        .values("pk", "last_run_status", "last_run_at", "pending")
    }
    rows = [(task, extra.get(task.pk, {})) for task in page.object_list]
    return render(request, "tasks/list.html", {"page": page, "rows": rows, "q": q})


@require_GET
@login_required
def task_detail(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _task_or_404(task_id)
    context = _task_context(request, task)
    context["config_form"] = HealingConfigForm.for_task(task)
    return render(request, "tasks/detail.html", context)


@require_GET
@login_required
def task_part(request: HttpRequest, task_id: str, part: str) -> HttpResponse:
    if part not in TASK_PARTS:
        raise Http404("no such part")
    task = _task_or_404(task_id)
    return render(request, TASK_PARTS[part], _task_context(request, task, part=part))


@require_http_methods(["GET", "POST"])
@login_required
def task_new(request: HttpRequest) -> HttpResponse:
    """A new task: a prompt and, if it is at hand, its code (without code an LLM, when configured, writes it)."""
    form = TaskForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            task = services.task_create(actor=dashboard_actor(request), **form.service_changes())
        except InputError as exc:
            form.add_error(None, form.errors_for(exc))
        else:
            messages.success(request, f"Task {task.name} created.")
            return redirect("task-detail", task_id=task.pk)
    return _task_form_page(request, form, task=None)


@require_http_methods(["GET", "POST"])
@login_required
def task_edit(request: HttpRequest, task_id: str) -> HttpResponse:
    """Name, prompt, code, params, secrets, schedule and healing settings; changed code becomes a new version."""
    task = _task_or_404(task_id)
    # The form gets its own copy: validating writes the submitted values onto its instance, and the page and
    # the service want the task as it is stored (a refused new name must not title the page).
    form = TaskForm(request.POST or None, instance=copy.copy(task))
    if request.method == "POST" and form.is_valid():
        try:
            services.task_update(task=task, actor=dashboard_actor(request), **form.service_changes())
        except InputError as exc:
            form.add_error(None, form.errors_for(exc))
        except PermissionDenied as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Task saved.")
            return redirect("task-detail", task_id=task.pk)
    return _task_form_page(request, form, task=task)


def _task_form_page(request: HttpRequest, form: TaskForm, *, task: Task | None) -> HttpResponse:
    status = 400 if form.is_bound else 200  # a bound form shown again has errors
    return render(request, "tasks/form.html", {"form": form, "task": task}, status=status)


@require_POST
@login_required
def task_config(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _task_or_404(task_id)
    form = HealingConfigForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            services.task_update(task=task, actor=dashboard_actor(request), **form.service_kwargs())
        except InputError as exc:
            form.add_service_error(exc.field, exc.message)
        except PermissionDenied as exc:  # review switched off on a task holding secrets, by someone else
            form.add_error(None, str(exc))
            status = 403
        else:
            messages.success(request, "Healing settings saved.")
            return redirect(reverse("task-detail", args=[task.pk]) + "#config")
    context = _task_context(request, task)
    context["config_form"] = form
    return render(request, "tasks/detail.html", context, status=status)


@require_POST
@login_required
def task_run(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _task_or_404(task_id)
    try:
        run = services.run_enqueue(task=task, actor=dashboard_actor(request))
    except InputError as exc:
        # Messages show at the top of the page: jumping down to the Runs card would scroll this one out of sight.
        messages.error(request, f"Not started: {exc.message}")
        return redirect("task-detail", task_id=task.pk)
    messages.success(request, f"Run {run.pk} queued; its steps appear below as they happen.")
    return redirect(reverse("task-detail", args=[task.pk]) + "#runs")


@require_POST
@login_required
def task_deploy(request: HttpRequest, task_id: str) -> HttpResponse:
    """Make an earlier (or any) version current: a rollback. Deploying code is a reviewer's call."""
    if not can_review(request.user):
        raise PermissionDenied("only reviewers can deploy a version")
    task = _task_or_404(task_id)
    form = DeployForm(request.POST)
    version = CodeVersion.objects.filter(task=task, number=form.cleaned_data["version"]).first() if form.is_valid() else None
    if version is None:
        messages.error(request, "No such version of this task.")
    elif version.pk == task.current_version_id:
        messages.info(request, f"Version {version.number} is already current; nothing changed.")
    else:
        try:
            services.version_deploy(task=task, version=version, actor=dashboard_actor(request), reason="deployed from the task page")
        except services.DraftNotDeployable as exc:
            messages.error(request, f"Not deployed: {exc}.")
        else:
            messages.success(request, f"Version {version.number} is now current.")
    return redirect(reverse("task-detail", args=[task.pk]) + "#versions")


@require_GET
@login_required
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    """One run: what it did step by step, its output or error, and the heals it started; live while it runs."""
    return render(request, "tasks/run.html", _run_context(request, run_id))


@require_GET
@login_required
def run_part(request: HttpRequest, run_id: str) -> HttpResponse:
    return render(request, "tasks/_run_part.html", _run_context(request, run_id))


def _run_context(request: HttpRequest, run_id: str) -> dict:
    runs = Run.objects.select_related("task", "version", "requested_by").defer("screenshots", "version__code")
    run = object_or_404(runs, run_id, what="run")
    events = list(run.healing_events.only("id", "status", "run_id").order_by("created_at"))
    return {
        "run": run,
        "events": events,
        "not_healed_because": "" if events else _not_healed_because(run),
        "scheduled_for": _scheduled_for(run),
        "cancellable": _cancellable([run], request.user),
    }


def _scheduled_for(run: Run) -> dict | None:
    """The schedule that started `run` and for which minute (None for runs someone asked for): a run nobody
    asked for is otherwise just "started by the system". Read from the firing's audit entry, which keeps the
    schedule as it was then."""
    if run.requested_by_id is not None or run.purpose != Run.Purpose.NORMAL:
        return None
    fired = AuditLog.objects.filter(
        object_type="task", object_id=run.task_id, action="run.scheduled", data__run=run.pk
    ).values_list("data", flat=True).first()
    if not fired:
        return None
    return {"minute": datetime.fromisoformat(fired["minute"]), "schedule": fired.get("schedule", "")}


def _not_healed_because(run: Run) -> str:
    """Why a run that failed in a way a heal could mend has no heal, when its task's settings are why: else the
    page says "Heals —" and the user wonders whether healing broke."""
    if run.status != Run.Status.FAILED or run.purpose != Run.Purpose.NORMAL or run.error_type not in FAILURE_TYPES:
        return ""
    if not run.task.self_healing:
        return "self-healing is off for this task"
    trigger_on = run.task.config["trigger_on"]
    if run.error_type not in trigger_on:
        healed = ", ".join(kind.replace("_", " ") for kind in trigger_on) or "no"
        return f"this task heals only {healed} failures (its trigger_on)"
    return ""


def _cancellable(runs: list[Run], user) -> set[str]:
    """The runs shown with a Cancel button: queued or running ones (not a heal's validation) the user may cancel."""
    active = (Run.Status.QUEUED, Run.Status.RUNNING)
    return {
        run.pk for run in runs
        if run.status in active and run.purpose == Run.Purpose.NORMAL and services.run_cancel_allowed(run, user)
    }


@require_POST
@login_required
def run_cancel(request: HttpRequest, run_id: str) -> HttpResponse:
    run = object_or_404(Run.objects.select_related("task"), run_id, what="run")
    try:
        run = services.run_cancel(run=run, actor=dashboard_actor(request))
    except services.RunNotCancellable as exc:
        messages.info(request, f"Not cancelled: {exc}.")
    else:
        if run.status == Run.Status.FAILED:
            messages.success(request, f"Run {run.pk} cancelled before it started.")
        else:
            messages.success(request, f"Run {run.pk} is being cancelled; it stops within a few seconds.")
    if request.POST.get("back_to") == "run":  # cancelled on the run's own page, which follows it live
        return redirect("run-detail", run_id=run.pk)
    return redirect(reverse("task-detail", args=[run.task_id]) + f"#run-{run.pk}")


# -- helpers -------------------------------------------------------------------------------------


def _task_or_404(task_id: str) -> Task:
    return object_or_404(Task.objects.select_related("current_version"), task_id, what="task")


def _task_context(request: HttpRequest, task: Task, *, part: str | None = None) -> dict:
    """What the task page shows; a fragment request loads only its own part."""
    context: dict = {"task": task, "can_review": can_review(request.user)}
    if part in (None, "versions"):
        context["versions"] = list(
            task.versions.select_related("author", "parent").defer("code", "parent__code").order_by("-number")[:VERSIONS_SHOWN]
        )
        # Versions version_deploy refuses (heals' drafts) link to their heal instead of a deploy button.
        drafts = services.heal_drafts(task)
        for version in context["versions"]:
            event_id, status = drafts.get(version.pk, (None, None))
            version.heal = {"id": event_id, "status": status} if event_id else None
    if part in (None, "runs"):
        context["runs"] = list(
            task.runs.select_related("version").defer("screenshots", "version__code").order_by("-created_at")[:RUNS_SHOWN]
        )
        for run in context["runs"]:
            run.task = task  # the one already loaded, for the permission check below
        context["cancellable"] = _cancellable(context["runs"], request.user)
    if part in (None, "events"):
        context["events"] = list(
            task.healing_events.select_related("new_version")
            .only("id", "created_at", "status", "error_type", "agent_kind", "root_cause", "task_id", "new_version__number")
            .order_by("-created_at")[:EVENTS_SHOWN]
        )
    if part is None:
        context.update(_diff_context(request, task, version_count=len(context["versions"])))
        context["next_scheduled_run"] = schedule_next_run(task)
    elif part == "diff":
        context.update(_diff_context(request, task, version_count=task.versions.count()))
    return context


def _diff_context(request: HttpRequest, task: Task, *, version_count: int) -> dict:
    chosen = {"a", "b"} <= set(request.GET)  # by the reader: the comparison stays put instead of following deploys
    return {"version_count": version_count, "diff_chosen": chosen, **_comparison(request, task, chosen, version_count)}


def _comparison(request: HttpRequest, task: Task, chosen: bool, version_count: int) -> dict:
    if chosen:
        form = DiffForm(request.GET)
    elif version_count < 2:
        return {"diff_form": None, "version_diff": None}  # nothing to compare: no form pre-filled "v1 → v1"
    else:
        form = DiffForm(initial=_default_pair(task))
    if not form.is_bound or not form.is_valid():
        return {"diff_form": form, "version_diff": None}
    a, b = form.cleaned_data["a"], form.cleaned_data["b"]
    codes = dict(task.versions.filter(number__in=[a, b]).values_list("number", "code"))
    if a not in codes or b not in codes:
        form.add_error(None, "Both versions must exist for this task.")
        return {"diff_form": form, "version_diff": None}
    return {"diff_form": form, "version_diff": render_diff(codes[a], codes[b], context=6), "diff_pair": (a, b)}


def _default_pair(task: Task) -> dict:
    """The current version and the one before it; when v1 is current, v1 and the draft after it (a heal's)."""
    current = task.current_version.number if task.current_version_id else 1
    return {"a": current - 1, "b": current} if current > 1 else {"a": 1, "b": 2}

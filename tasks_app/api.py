"""REST endpoints for tasks, their code versions and their runs. Thin: each one calls a service.

`request.auth` is the calling API key (see anchor_site/api.py); changes are audited under its owner.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest
from ninja import Path, Query, Router, Status

from tasks_app import services
from tasks_app.api_schemas import (
    CONFLICTING_ERRORS,
    ERRORS,
    REFUSABLE_ERRORS,
    DeployIn,
    DiffOut,
    NoBodyIn,
    RunCreateIn,
    RunOut,
    RunPage,
    RunStartedOut,
    TaskCreateIn,
    TaskOut,
    TaskPage,
    TaskUpdateIn,
    VersionOut,
    VersionPage,
    clean_body,
    diff_out,
    paginate,
    task_out,
    version_out,
)
from tasks_app.config import InputError
from tasks_app.ids import object_or_404
from tasks_app.models import MAX_INT, CodeVersion, Run, Task

tasks_router = Router(tags=["tasks"])
runs_router = Router(tags=["runs"])

Limit = Query(20, ge=1, le=100, description="page size")
Cursor = Query(None, max_length=500, description="`next_cursor` of the previous page")
VersionNumber = Path(..., ge=1, le=MAX_INT)


def get_task(task_id: str) -> Task:
    return object_or_404(Task.objects.select_related("current_version"), task_id, what="task")


def _get_version(task: Task, number: int) -> CodeVersion:
    version = task.versions.select_related("parent", "author").filter(number=number).first()
    if version is None:
        raise Http404(f"task {task.pk} has no version {number}")
    return version


# -- tasks ---------------------------------------------------------------------------------------------


@tasks_router.post("", response={201: TaskOut, **ERRORS}, summary="Create a task")
def task_create(request: HttpRequest, payload: TaskCreateIn):
    task = services.task_create(actor=request.auth.actor, **clean_body(payload))
    return Status(201, task_out(task))


@tasks_router.get("", response={200: TaskPage, **ERRORS}, summary="List tasks, newest first")
def task_list(request: HttpRequest, cursor: str | None = Cursor, limit: int = Limit):
    rows, next_cursor = paginate(
        request, Task.objects.select_related("current_version"), order_field="created_at", cursor=cursor, limit=limit
    )
    return {"data": [task_out(task) for task in rows], "next_cursor": next_cursor}


@tasks_router.get("/{task_id}", response={200: TaskOut, **ERRORS}, summary="Get a task")
def task_get(request: HttpRequest, task_id: str):
    return task_out(get_task(task_id))


@tasks_router.patch("/{task_id}", response={200: TaskOut, **REFUSABLE_ERRORS}, summary="Update a task (partial)")
def task_update(request: HttpRequest, task_id: str, payload: TaskUpdateIn):
    task = services.task_update(task=get_task(task_id), actor=request.auth.actor, **clean_body(payload))
    return task_out(Task.objects.select_related("current_version").get(pk=task.pk))


@tasks_router.delete("/{task_id}", response={204: None, **CONFLICTING_ERRORS}, summary="Delete a task")
def task_delete(request: HttpRequest, task_id: str):
    services.task_delete(task=get_task(task_id), actor=request.auth.actor)
    return Status(204, None)


# -- versions ------------------------------------------------------------------------------------------


@tasks_router.get("/{task_id}/versions", response={200: VersionPage, **ERRORS}, summary="List code versions")
def version_list(request: HttpRequest, task_id: str, cursor: str | None = Cursor, limit: int = Limit):
    task = get_task(task_id)
    rows, next_cursor = paginate(
        request, task.versions.select_related("parent", "author"), order_field="number", cursor=cursor, limit=limit
    )
    current = task.current_version_id
    return {
        "data": [version_out(v, current_version_id=current, with_code=False) for v in rows],
        "next_cursor": next_cursor,
    }


@tasks_router.get("/{task_id}/versions/{number}", response={200: VersionOut, **ERRORS}, summary="Get a code version")
def version_get(request: HttpRequest, task_id: str, number: int = VersionNumber):
    task = get_task(task_id)
    return version_out(_get_version(task, number), current_version_id=task.current_version_id, with_code=True)


@tasks_router.get(
    "/{task_id}/versions/{number}/diff",
    response={200: DiffOut, **ERRORS},
    summary="Diff a version against another (by default its parent)",
)
def version_diff(
    request: HttpRequest,
    task_id: str,
    number: int = VersionNumber,
    against: int | None = Query(None, ge=1, le=MAX_INT, description="the older version; default: the parent (a first version: no code)"),
):
    task = get_task(task_id)
    new = _get_version(task, number)
    if against is None:
        if not new.parent_id:
            return diff_out(None, new)  # a first version: all of its code is new
        against = new.parent.number
    return diff_out(_get_version(task, against), new)


@tasks_router.post(
    "/{task_id}/versions/{number}/deploy",
    response={200: TaskOut, **CONFLICTING_ERRORS},
    summary="Make a version current (rollback or roll forward)",
)
def version_deploy(request: HttpRequest, task_id: str, number: int = VersionNumber, payload: DeployIn | None = None):
    task = get_task(task_id)
    version = _get_version(task, number)
    reason = clean_body(payload).get("reason") or "deployed through the API"
    task = services.version_deploy(task=task, version=version, actor=request.auth.actor, reason=reason)
    return task_out(Task.objects.select_related("current_version").get(pk=task.pk))


# -- runs ----------------------------------------------------------------------------------------------


@tasks_router.post(
    "/{task_id}/runs",
    response={202: RunStartedOut, **REFUSABLE_ERRORS},
    summary="Start a run; it is queued and runs in the background",
)
def run_start(request: HttpRequest, task_id: str, payload: RunCreateIn | None = None):
    task = get_task(task_id)
    data = clean_body(payload)
    version = None
    if "version" in data:
        version = task.versions.filter(number=data["version"]).first()
        if version is None:
            raise InputError("version", f"task {task.pk} has no version {data['version']}")
    run = services.run_enqueue(task=task, actor=request.auth.actor, params=data.get("params"), version=version)
    return Status(202, {"id": run.pk, "status": run.status})


@tasks_router.get("/{task_id}/runs", response={200: RunPage, **ERRORS}, summary="List a task's runs, newest first")
def run_list(request: HttpRequest, task_id: str, cursor: str | None = Cursor, limit: int = Limit):
    task = get_task(task_id)
    rows, next_cursor = paginate(
        request,
        task.runs.select_related("version").prefetch_related("healing_events"),
        order_field="created_at",
        cursor=cursor,
        limit=limit,
    )
    return {"data": [run_out(run) for run in rows], "next_cursor": next_cursor}


@runs_router.get("/{run_id}", response={200: RunOut, **ERRORS}, summary="Get a run")
def run_get(request: HttpRequest, run_id: str):
    run = object_or_404(Run.objects.select_related("version").prefetch_related("healing_events"), run_id, what="run")
    return run_out(run)


@runs_router.post(
    "/{run_id}/cancel",
    response={202: RunOut, **CONFLICTING_ERRORS},
    summary="Cancel a run: a queued one ends at once, a running one within a few seconds",
)
def run_cancel(request: HttpRequest, run_id: str, payload: NoBodyIn | None = None):
    clean_body(payload)
    run = object_or_404(Run.objects.select_related("task"), run_id, what="run")
    run = services.run_cancel(run=run, actor=request.auth.actor)
    return Status(202, run_out(run))


def run_out(run: Run) -> dict:
    events = list(run.healing_events.all())
    error_type = run.error_type or None
    if run.status == Run.Status.HEALED and events:
        error_type = events[0].error_type  # the failure that was healed, as the run.healed webhook says
    return {
        "id": run.pk,
        "task": run.task_id,
        "status": run.status,
        "purpose": run.purpose,
        "version": run.version.number if run.version_id else None,
        "params": run.params,
        "output": run.output,
        "error_type": error_type,
        "error_message": run.error_message or None,
        "trace": run.trace,
        "healing_event": events[0].pk if events else None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "cancel_requested_at": run.cancel_requested_at,
        "duration_ms": run.duration_ms,
    }

"""Functions the reliability tests call inside the cluster's control process (see control.py).

They go through the product's services, like the API and the dashboard do, and return plain JSON.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Count

from healing_app.models import HealingEvent, Review
from tasks_app import services
from tasks_app.api_keys import api_key_create
from tasks_app.models import AuditLog, CodeVersion, Run, Task


def reviewer_make(username: str = "rita", password: str = "pw-rita-123!") -> dict:
    """A reviewer with a password (for the dashboard) and an API key; returns the raw key."""
    from healing_app.permissions import reviewers_group

    user, _ = get_user_model().objects.get_or_create(username=username)
    user.set_password(password)
    user.save()
    user.groups.add(reviewers_group())
    _, raw = api_key_create(user=user, name=f"reliability {username}")
    return {"user": user.pk, "key": raw}


def task_make(
    *,
    name: str,
    code: str,
    params: dict,
    secrets: dict | None = None,
    self_healing: bool = False,
    config: dict | None = None,
    healing_agent: str = "",
    schedule: str = "",
) -> str:
    task = services.task_create(
        name=name,
        prompt=f"reliability scenario: {name}",
        code=code,
        params=params,
        secrets=secrets,
        self_healing=self_healing,
        self_healing_config=config or {},
        healing_agent=healing_agent,
        schedule=schedule,
    )
    return task.pk


def runs_enqueue(task_id: str, count: int = 1, params: dict | None = None) -> list[str]:
    task = Task.objects.get(pk=task_id)
    return [services.run_enqueue(task=task, params=params).pk for _ in range(count)]


def runs_create_without_jobs(task_id: str, count: int) -> list[str]:
    """Queued rows whose RQ job was never pushed: what a Redis restart leaves behind."""
    task = Task.objects.get(pk=task_id)
    return [services.run_create(task=task).pk for _ in range(count)]


def run_jobs_push(run_ids: list[str]) -> None:
    for run_id in run_ids:
        services.run_job_enqueue(run_id)


def runs_state(run_ids: list[str]) -> dict[str, dict]:
    rows = Run.objects.filter(pk__in=run_ids).values(
        "id", "status", "error_type", "error_message", "attempts", "purpose", "created_at", "started_at", "finished_at", "output", "timings"
    )
    out = {}
    for row in rows:
        started, finished, created = row["started_at"], row["finished_at"], row["created_at"]
        row["run_s"] = (finished - started).total_seconds() if started and finished else None
        row["queue_to_finish_s"] = (finished - created).total_seconds() if finished else None
        out[row["id"]] = row
    return out


def run_get(run_id: str) -> dict:
    return runs_state([run_id])[run_id]


def status_counts(task_id: str | None = None) -> dict[str, int]:
    qs = Run.objects.all() if task_id is None else Run.objects.filter(task_id=task_id)
    return {row["status"]: row["n"] for row in qs.values("status").annotate(n=Count("id"))}


def task_state(task_id: str) -> dict:
    """Everything a scenario asserts about one task: runs, heal events, versions, deploys."""
    task = Task.objects.select_related("current_version").get(pk=task_id)
    events = list(
        HealingEvent.objects.filter(task=task).order_by("created_at").values(
            "id", "status", "reason", "run_id", "validation_run_id", "new_version_id", "original_version_id", "timeline"
        )
    )
    for event in events:
        event["statuses"] = [entry["status"] for entry in event.pop("timeline")]
    deploys = list(
        AuditLog.objects.filter(action="version.deploy", object_id=task.pk).order_by("created_at", "id").values("data", "actor_label")
    )
    return {
        "current_version": task.current_version.number if task.current_version_id else None,
        "current_version_id": task.current_version_id,
        "versions": list(CodeVersion.objects.filter(task=task).order_by("number").values("id", "number", "source", "note")),
        "runs": list(Run.objects.filter(task=task).order_by("created_at").values("id", "status", "purpose", "error_type", "attempts")),
        "events": events,
        "deploys": deploys,
        "reviews": list(Review.objects.filter(event__task=task).values("event_id", "decision")),
    }


def stuck(task_ids: list[str] | None = None) -> dict:
    """Rows that a finished scenario must not leave behind: unfinished runs and heal events still open."""
    runs = Run.objects.filter(status__in=[Run.Status.QUEUED, Run.Status.RUNNING])
    events = HealingEvent.objects.filter(status__in=HealingEvent.OPEN)
    if task_ids is not None:
        runs, events = runs.filter(task_id__in=task_ids), events.filter(task_id__in=task_ids)
    return {
        "runs": list(runs.values("id", "status", "task_id")),
        "events": list(events.values("id", "status", "task_id")),
    }


def event_wait_state(event_id: str) -> str:
    return HealingEvent.objects.get(pk=event_id).status


def version_manual(task_id: str, code: str) -> int:
    """A person changes the code by hand (a new version, deployed at once)."""
    task = Task.objects.get(pk=task_id)
    task = services.task_update(task=task, code=code)
    return task.current_version.number


def maintenance_now() -> dict:
    from tasks_app.maintenance import maintenance_tick

    return maintenance_tick()


def runs_enqueue_named(task_id: str, names: list[str]) -> list[str]:
    """One run per name, each posting its own name to the contact form (so the site can count each run)."""
    task = Task.objects.get(pk=task_id)
    return [services.run_enqueue(task=task, params={"name": name}).pk for name in names]


def version_draft(task_id: str, code: str) -> int:
    """A new version that is not deployed (as a person preparing a rollout, or a generated draft)."""
    task = Task.objects.get(pk=task_id)
    return services.version_create(task=task, code=code, source=CodeVersion.Source.MANUAL).number


def audit(task_id: str) -> list[dict]:
    return list(AuditLog.objects.filter(object_id=task_id).order_by("created_at", "id").values("action", "data", "actor_label"))


def data_dump(task_id: str) -> str:
    """Everything stored about a task, as text: to search for secrets that should never be stored in clear."""
    import json

    from tasks_app.models import ElementFingerprint

    rows = {
        "task": list(Task.objects.filter(pk=task_id).values()),
        "versions": list(CodeVersion.objects.filter(task_id=task_id).values()),
        "runs": list(Run.objects.filter(task_id=task_id).values()),
        "events": list(HealingEvent.objects.filter(task_id=task_id).values()),
        "fingerprints": list(ElementFingerprint.objects.filter(task_id=task_id).values()),
        "audit": list(AuditLog.objects.values()),
    }
    return json.dumps(rows, default=str)


def schedule_report(task_id: str) -> dict:
    """The minutes a scheduled task fired for, and its runs."""
    task = Task.objects.get(pk=task_id)
    minutes = list(
        AuditLog.objects.filter(action="run.scheduled", object_id=task_id).order_by("created_at").values_list("data__minute", flat=True)
    )
    runs = list(Run.objects.filter(task=task).values("id", "status", "error_type", "created_at"))
    return {"created_at": task.created_at.isoformat(), "minutes": minutes, "runs": runs}

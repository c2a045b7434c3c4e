"""Running a task: claim the run, execute it in the sandbox, store what happened, hand failures to healing."""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.expressions import RawSQL
from django.utils import timezone

from healing_app import broadcast
from healing_app.notify import notify
from tasks_app.models import Run
from tasks_app.runner.protocol import CANCELLED, RunResult, RunSpec
from tasks_app.services import fingerprints_store, task_runtime_secrets
from tasks_app.storable import storable, unstorable

logger = logging.getLogger(__name__)
HEARTBEAT_EVERY_S = 10
# How soon a running run notices run_cancel: one primary-key query a second per running run.
CANCEL_POLL_S = 1.0
RESULT_STORE_RETRY_S = 120
_pool = None


def browser_pool():
    """This process's Chromium, started on first use and reused by every run (each gets a fresh context)."""
    global _pool
    if _pool is None:
        from tasks_app.runner.browser import BrowserPool

        _pool = BrowserPool(executable_path=settings.CHROMIUM_PATH or None)
        atexit.register(_pool.close)
    return _pool


def run_claim(run_id: str) -> Run | None:
    """Move a queued run to running. Only one worker can win; a duplicate or stale job gets None."""
    now = timezone.now()
    # One transaction: with the database gone between the claim and the read, the run stays queued (and runs
    # later) instead of sitting "running" with nothing running it until the reaper fails it as lost.
    with transaction.atomic():
        claimed = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(
            status=Run.Status.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1
        )
        if not claimed:
            return None
        run = Run.objects.select_related("task", "version").get(pk=run_id)
    broadcast.publish(kind="run.started", task_id=run.task_id, data={"run": run.pk, "status": run.status})
    return run


def run_execute(run: Run, *, browser=None, on_step_extra=None) -> RunResult:
    """Execute the run's code version in the sandbox; with healing on, failures pause for an agent."""
    from healing_app import pipeline
    from tasks_app.runner.sandbox import execute

    task = run.task
    healing_on = run.purpose == Run.Purpose.NORMAL and task.self_healing
    spec = RunSpec(
        code=run.version.code,
        params=run.effective_params,
        secrets=task_runtime_secrets(task),
        handover_on=list(task.config["trigger_on"]) if healing_on else [],
        # Machine-written code runs here before anyone has read it: keep it on the sites the task uses.
        allowed_hosts=pipeline.validation_hosts(run) if run.purpose == Run.Purpose.VALIDATION else None,
        frame_hosts=pipeline.validation_frame_hosts(run) if run.purpose == Run.Purpose.VALIDATION else [],
        contained=run.version.machine_written,
        secret_hosts=pipeline.secret_hosts(run) if healing_on else None,
        wall_timeout_s=settings.RUN_WALL_TIMEOUT_S,
        action_timeout_ms=settings.RUN_ACTION_TIMEOUT_MS,
    )

    def on_step(step) -> None:
        _reconnect_if_dropped(ping=False)
        run_step_record(run, step.to_dict())
        if on_step_extra is not None:
            on_step_extra(step)

    def on_handover(failure, handover) -> None:
        _reconnect_if_dropped(ping=True)
        pipeline.takeover(run=run, failure=failure.to_dict(), handover=handover)

    cancelled = threading.Event()
    with _Heartbeat(run.pk, cancelled):
        return execute(spec, on_handover=on_handover if healing_on else None, on_step=on_step, browser=browser,
                       cancel=cancelled)


def _reconnect_if_dropped(*, ping: bool) -> None:
    """The database may drop this thread's connection while the sandbox runs (a restart, a failover, an idle
    timeout). Nothing between two steps would notice: every later step failed to be recorded, and the takeover's
    first query failed the agent's work, so the run ended unhealed and without a heal event. A connection that
    failed (or, with `ping`, does not answer) is closed; the next query opens a new one."""
    if connection.connection is None or connection.in_atomic_block:
        return
    if (ping or connection.errors_occurred) and not connection.is_usable():
        connection.close()


LIVE_TRACE_STEPS = 50  # more than most tasks take; the stored trace is rewritten with each


def run_step_record(run: Run, step: dict) -> None:
    """A step the running run just took: sent to open pages, and its first LIVE_TRACE_STEPS steps kept at once, with
    the heartbeat (one update), so that a page opened mid-run shows the steps done so far and a run whose worker dies
    keeps how far it got. Each append rewrites the stored trace, so a run of thousands of steps (a scraping loop)
    would write its trace thousands of times: its later steps are stored when it ends."""
    live = step.get("index", 0) < LIVE_TRACE_STEPS
    Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
        heartbeat_at=timezone.now(), **({"trace": _trace_with(step)} if live else {})
    )
    broadcast.publish(kind="run.step", task_id=run.task_id, data={"run": run.pk, "step": step})


def _trace_with(step: dict) -> RawSQL:
    """The run's trace with `step` appended, in the database (the step is all that travels)."""
    value = json.dumps(storable(step))
    if connection.vendor == "postgresql":
        return RawSQL("COALESCE(trace, '[]'::jsonb) || jsonb_build_array(%s::jsonb)", (value,))
    return RawSQL("json_insert(COALESCE(trace, '[]'), '$[#]', json(%s))", (value,))  # SQLite


def run_finish(run: Run, result: RunResult) -> Run:
    """Store the result, remember the elements that worked, and move any healing on."""
    from healing_app import pipeline

    steps = storable([step.to_dict() for step in result.steps])  # page text may hold a NUL
    status, output, error_type, error_message = result.status, result.output, result.error_type, result.error_message
    if error_type == CANCELLED:
        # The sandbox only knows that it was stopped; the run knows who asked.
        by = Run.objects.filter(pk=run.pk).values_list("cancel_requested_by__username", flat=True).first()
        error_message = f"cancelled by {by or 'the system'} while it ran"
    if (problem := unstorable(output)) is not None:
        # The task's own result cannot be kept as it is; changing it would hide that, so the run fails.
        path, why = problem
        status, output, error_type = Run.Status.FAILED, None, "script_error"
        error_message = f"run() returned output the database cannot store: output{'.' + path if path else ''} {why}"
    with transaction.atomic():
        updated = Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
            status=status,
            output=output,
            error_type=error_type or "",
            error_message=storable(error_message or "")[:10_000],
            trace=steps,
            failure=storable(result.failure.to_dict()) if result.failure else None,
            screenshots=storable(result.screenshots),
            timings=storable({**result.timings, "duration_ms": result.duration_ms}),
            finished_at=timezone.now(),
        )
        if not updated:
            stored = Run.objects.filter(pk=run.pk).first()
            if stored is None:
                # Its task was deleted in the moment between the run's start and the check for running runs.
                logger.warning("run %s finished after its task was deleted; result dropped", run.pk)
                return run
            # The stale-run reaper declared this run lost while it ran; its verdict stands. A takeover that began
            # after that verdict left its heal open, and only a run's end closes it (after_run: safe to repeat).
            logger.warning("run %s finished after it was declared lost; result dropped", run.pk)
            pipeline.after_run(run=stored)
            return stored
        run.refresh_from_db()
        if run.status in (Run.Status.SUCCEEDED, Run.Status.HEALED):
            fingerprints_store(task=run.task, version=run.version, steps=steps)
        run_announce(run)
        pipeline.after_run(run=run)
    return run


def run_finish_retrying(run: Run, result: RunResult) -> Run:
    """run_finish, retried while the database is unreachable, so a run that completed during a database
    outage keeps its result instead of being reaped as lost. The heartbeat goes on meanwhile."""
    from django.db import InterfaceError, OperationalError, close_old_connections

    deadline = time.monotonic() + RESULT_STORE_RETRY_S
    with _Heartbeat(run.pk):
        while True:
            try:
                return run_finish(run, result)
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() > deadline:
                    raise
                logger.warning("storing the result of %s failed, retrying: %s", run.pk, exc)
                close_old_connections()
                time.sleep(1)


def run_fail(run: Run, reason: str, *, error_type: str = "script_error", stale_before=None,
             only_if_status: str = Run.Status.RUNNING) -> None:
    """End a run without a result of its own: the runner failed, its worker was lost, or it was cancelled
    before it started. Only while it is still in `only_if_status` (running, or queued for a cancel).

    With `stale_before`, only if its heartbeat is still older than that: a run whose worker beat again
    since maintenance looked (after a database outage, say) is alive and keeps its result.
    """
    from healing_app import pipeline

    still_running = Run.objects.filter(pk=run.pk, status=only_if_status)
    if stale_before is not None:
        still_running = still_running.filter(heartbeat_at__lt=stale_before)
    with transaction.atomic():
        if not still_running.update(
            status=Run.Status.FAILED, error_type=error_type, error_message=storable(reason)[:10_000],
            finished_at=timezone.now(),
        ):
            return
        run.refresh_from_db()
        run_announce(run)
        pipeline.after_run(run=run)


def run_announce(run: Run) -> None:
    data = {"run": run.pk, "task": run.task_id, "status": run.status, "error_type": run.error_type, "purpose": run.purpose}
    if run.status == Run.Status.HEALED:
        # The run succeeded in the end; what a receiver wants to know is which failure was healed, and where.
        healed = run.healing_events.values_list("pk", "error_type").first()
        if healed is not None:
            data["healing_event"], data["error_type"] = healed
    if run.status == Run.Status.FAILED:
        notify(event_type="run.failed", task_id=run.task_id, data=data)
    elif run.status == Run.Status.HEALED:
        notify(event_type="run.healed", task_id=run.task_id, data=data)
    else:
        notify(event_type="run.finished", task_id=run.task_id, data=data)


class _Heartbeat:
    """Touch the run's heartbeat while it executes, so a killed worker's runs are recognisable as lost.
    With `cancelled`, also look for run_cancel's request, on entering and then every second, and set it when
    there is one (asked between the claim and the start, the sandbox starts and the code never runs)."""

    def __init__(self, run_id: str, cancelled: threading.Event | None = None):
        self.run_id = run_id
        self.cancelled = cancelled
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{run_id}")

    def __enter__(self):
        self._look_for_cancel()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=2)

    def _look_for_cancel(self) -> None:
        if self.cancelled is not None and not self.cancelled.is_set() and Run.objects.filter(
            pk=self.run_id, cancel_requested_at__isnull=False
        ).exists():
            self.cancelled.set()

    def _beat(self) -> None:
        from django.db import close_old_connections, connection

        # Several beats per stale window: one late beat must not make a healthy run look lost.
        every = max(1.0, min(HEARTBEAT_EVERY_S, settings.RUN_STALE_AFTER_S / 3))
        last_beat = time.monotonic()
        try:
            while not self.stop.wait(CANCEL_POLL_S if self.cancelled is not None else every):
                try:
                    self._look_for_cancel()
                    if time.monotonic() - last_beat >= every:
                        Run.objects.filter(pk=self.run_id, status=Run.Status.RUNNING).update(heartbeat_at=timezone.now())
                        last_beat = time.monotonic()
                except Exception as exc:  # the database may be away for a moment; keep beating when it is back
                    logger.warning("heartbeat for %s missed: %s", self.run_id, exc)
                    close_old_connections()
        finally:
            # This thread's own connection: a persistent one (CONN_MAX_AGE) would outlive the thread, one per run.
            connection.close()

"""Run task code in a sandboxed child process and collect its result (the parent side).

    result = execute(spec, on_handover=agent, on_step=print, browser=pool)

The child (harness.py) runs with:
  * a clean environment (PATH, HOME, LANG, TMPDIR only): no settings, DATABASE_URL or API keys;
  * its own temp working directory, removed afterwards;
  * its own session / process group, and — when the worker is root — its own fresh unprivileged
    uid. RLIMIT_NPROC is enforced per uid for non-root users, so a fork bomb hits the limit; the
    uid also names every process of the run, so `kill -9 -1` as that uid stops even processes that
    left the process group; and the child cannot read the worker's /proc/<pid>/environ or memory
    (nor can it under the worker's own uid: AnchorWorker makes itself non-dumpable);
  * RLIMIT_CPU, RLIMIT_DATA (not RLIMIT_AS: Chromium reserves huge address ranges), RLIMIT_FSIZE,
    RLIMIT_CORE=0 set in preexec;
  * a wall-clock watchdog that kills the whole process group and uid (extended while a hand-over
    is in progress, up to handover_timeout_s).
Only spec.secrets reach the child, as params["secrets"], through the control socket (never argv
or the environment).
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .browser import BrowserPool, die_with_parent, kill_group, kill_uid, remove_files_of_uid
from .protocol import (
    CANCELLED,
    FAILURE_TYPES,
    SCRIPT_ERROR,
    STATUS_FAILED,
    STATUS_HEALED,
    STATUS_SUCCEEDED,
    Channel,
    Failure,
    MalformedMessage,
    RunResult,
    RunSpec,
    Step,
    mask_secrets,
    secret_values,
)
from .zygote import Zygote

logger = logging.getLogger(__name__)

ROOT = str(Path(__file__).resolve().parents[2])
# The total time agents may hold a run's page, on top of its wall clock (which stops meanwhile).
HANDOVER_BUDGET_S = 300.0
MEMORY_MB = int(os.environ.get("ANCHOR_RUNNER_MEMORY_MB", "2048"))
FSIZE_MB = 256
NPROC = 128  # processes + threads of one run's uid: the harness, its driver, their threads
READY_TIMEOUT_S = 30
SPARE_NICE = 10
LOG_TAIL_BYTES = 64 * 1024
# The steps one run may report, as the worker holds them all until the run ends: far past what a run takes (about
# 100 a second), and a bound on what task code that writes forged steps to the channel can make the worker hold.
MAX_STEPS = 100_000
MAX_TRACE_BYTES = 32 * 1024 * 1024
STEP_LIMIT = "step limit"
_BOOT = (
    "import sys; sys.path.insert(0, {root!r}); "
    "from tasks_app.runner.harness import main; main(sys.argv[1:])"
)
_SIGNAL_REASONS = {
    signal.SIGXCPU: "the task exceeded its CPU time limit",
    signal.SIGXFSZ: "the task exceeded the file size limit",
    signal.SIGSEGV: "the sandbox crashed (segmentation fault)",
    signal.SIGKILL: "the sandbox was killed",
}


class RunnerError(RuntimeError):
    """The runner itself failed (browser or child could not start) before any task code ran. `execute` tries
    once more on a fresh browser; after that the run fails as `runner_error` (tasks_app.jobs)."""


class HandoverError(RuntimeError):
    """A hand-over command failed, or the hand-over is already closed."""


def _limits(memory_mb: int, nice: int = 0) -> Callable[[], None]:
    def apply() -> None:
        die_with_parent()
        if nice:
            os.nice(nice)  # a warm spare must not slow down the run in progress
        resource.setrlimit(resource.RLIMIT_CPU, (600, 610))  # tightened to the spec in the harness
        data = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (data, data))
        fsize = FSIZE_MB * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class Child:
    """One sandboxed harness process (parent-side handle)."""

    def __init__(self, proc: Any, chan: Channel, uid: int | None, workdir: str, log: Any) -> None:
        self.proc = proc
        self.chan = chan
        self.uid = uid
        self.workdir = workdir
        self.log = log
        self.spawned_at = time.perf_counter()
        self.ready: dict | None = None
        self.connected: dict | None = None
        self.connect_sent = False
        self._cleaned = False

    def tell_connect(self) -> None:
        """Ask a warm child to connect to the browser and open its context now (between runs)."""
        if not self.connect_sent:
            self.connect_sent = True
            try:
                self.chan.send({"t": "connect"})
            except OSError:
                pass

    def wait_connected(self, timeout: float = READY_TIMEOUT_S) -> None:
        self.wait_ready(timeout)
        self.tell_connect()
        if self.connected is None:
            try:
                msg = self.chan.recv(timeout=timeout)
            except (TimeoutError, OSError, ValueError) as exc:
                raise RunnerError(f"sandbox did not connect: {exc!r}") from exc
            if not msg or msg.get("t") != "connected":
                if msg and msg.get("t") == "infra_error":
                    raise RunnerError(msg.get("error") or "sandbox did not connect")
                raise RunnerError(f"sandbox did not connect: {self.logs_tail()[-2000:]}")
            self.connected = msg

    def promote(self) -> None:
        """A spare becomes the run in progress: back to normal CPU priority (needs root)."""
        if self.uid is not None:
            try:
                os.setpriority(os.PRIO_USER, self.uid, os.getpriority(os.PRIO_PROCESS, 0))
            except OSError:
                pass

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict:
        if self.ready is None:
            try:
                msg = self.chan.recv(timeout=timeout)
            except (TimeoutError, OSError, ValueError) as exc:
                raise RunnerError(f"sandbox did not start: {exc!r}; {self.logs_tail()[-2000:]}") from exc
            if not msg or msg.get("t") != "ready":
                raise RunnerError(f"sandbox did not start: {self.logs_tail()[-2000:]}")
            self.ready = msg
        return self.ready

    def kill(self) -> None:
        kill_group(self.proc.pid)
        kill_uid(self.uid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def logs_tail(self) -> str:
        try:
            self.log.flush()
            size = self.log.seek(0, os.SEEK_END)
            self.log.seek(max(0, size - LOG_TAIL_BYTES))
            return self.log.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def cleanup(self) -> str:
        """Kill whatever is left of the run, remove its directory and its files in the shared temp
        directories; returns the log tail."""
        if self._cleaned:
            return ""
        self._cleaned = True
        self.kill()
        remove_files_of_uid(self.uid)
        logs = self.logs_tail()
        self.chan.close()
        try:
            self.log.close()
        except OSError:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)
        return logs


def spawn_child(cdp_url: str, *, memory_mb: int | None = None, spare: bool = False,
                zygote: Zygote | None = None) -> Child:
    """Start a harness process; it warms up (driver start) on its own and waits for orders.

    With a zygote (the pool's fork server) the child is forked from an interpreter that has
    already imported Playwright; otherwise a fresh interpreter is started.
    """
    from .browser import allocate_uid

    uid = allocate_uid()
    workdir = tempfile.mkdtemp(prefix="anchor-run-")
    if uid is not None:
        os.chown(workdir, uid, uid)
    os.chmod(workdir, 0o700)
    parent_sock, child_sock = socket.socketpair()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the Child
    args = ["--cdp", cdp_url, "--nproc", str(NPROC)]
    if uid is not None:
        args += ["--uid", str(uid)]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    nice = SPARE_NICE if spare and uid is not None else 0
    try:
        proc: Any = None
        if zygote is not None and zygote.alive():
            try:
                proc = zygote.spawn(ctrl_fd=child_sock.fileno(), log_fd=log.fileno(), workdir=workdir, env=env,
                                    args=args, memory_mb=memory_mb or MEMORY_MB, nice=nice)
            except OSError:
                proc = None
        if proc is None:
            cmd = [sys.executable, "-E", "-s", "-B", "-u", "-c", _BOOT.format(root=ROOT),
                   "--fd", str(child_sock.fileno()), *args]
            proc = subprocess.Popen(
                cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=[child_sock.fileno()], start_new_session=True,
                preexec_fn=_limits(memory_mb or MEMORY_MB, nice),  # noqa: PLW1509 - resource limits need it
            )
    finally:
        child_sock.close()
    return Child(proc, Channel(parent_sock), uid, workdir, log)


class _Watchdog(threading.Thread):
    """Kills the child at the deadline, or as soon as `cancel` is set; the deadline stops running while a
    hand-over is open."""

    def __init__(self, child: Child, wall_s: float, handover_budget_s: float,
                 cancel: threading.Event | None = None) -> None:
        super().__init__(daemon=True)
        self.child = child
        self.cancel = cancel
        self.deadline = time.monotonic() + wall_s
        self.handover_budget_s = handover_budget_s
        self.paused_at: float | None = None
        self.fired = False
        self.reason = ""
        # Set when the child is killed, so that an agent waiting on something else (a model's answer, a
        # back-off) stops at once instead of finding out at its next command.
        self.stopped = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def pause(self) -> None:
        with self._lock:
            self.paused_at = time.monotonic()

    def resume(self) -> None:
        with self._lock:
            if self.paused_at is not None:
                spent = time.monotonic() - self.paused_at
                self.deadline += spent
                self.handover_budget_s -= spent
                self.paused_at = None

    def stop(self) -> None:
        self._stop.set()

    def fire(self, reason: str) -> None:
        self.fired = True
        self.reason = reason
        try:
            self.child.kill()  # first: an agent told to stop before the child died could let it report its own end
        finally:
            self.stopped.set()  # even if the kill failed, or took its seconds

    def run(self) -> None:
        while not self._stop.wait(0.05):
            with self._lock:
                now = time.monotonic()
                if self.cancel is not None and self.cancel.is_set():
                    expired, reason = True, "cancelled"
                elif self.paused_at is not None:
                    expired = now - self.paused_at > self.handover_budget_s
                    reason = "the recovery did not finish in time"
                else:
                    expired = now > self.deadline
                    reason = "wall-clock limit"
            if expired:
                self.fire(reason)
                return


class Handover:
    """Parent-side handle on a run paused at a failing call; given to the on_handover callback.

    Every method sends one command to the child and returns its answer. The hand-over ends with
    retry_step() succeeding, resume() or abort(); afterwards methods raise HandoverError.
    `trace` records the commands (secrets masked) for the healing event's agent trace.
    `stopped` is set the moment the run is stopped underneath the agent (cancelled, or out of time).
    """

    def __init__(self, chan: Channel, failure: Failure, secrets: dict, masks: list[str], n: int,
                 command_timeout_s: float = 120.0, stopped: threading.Event | None = None) -> None:
        self._chan = chan
        self.stopped = stopped or threading.Event()
        self.failure = failure
        self._secret_keys = set(_flat_keys(secrets))
        self._masks = masks
        self.n = n
        self.outcome: str | None = None  # "retried" | "resumed" | "aborted"
        self.recovery: dict = {}
        self.trace: list[dict] = []
        self._ids = 0
        self._timeout = command_timeout_s

    @property
    def closed(self) -> bool:
        return self.outcome is not None

    def _cmd(self, op: str, **kwargs: Any) -> dict:
        if self.outcome is not None:
            raise HandoverError(f"hand-over already ended ({self.outcome})")
        self._ids += 1
        cid = self._ids
        t0 = time.perf_counter()
        args = {k: v for k, v in kwargs.items() if v is not None}
        try:
            self._chan.send({"t": "cmd", "id": cid, "op": op, **args})
            while True:
                msg = self._chan.recv(timeout=self._timeout)
                if msg is None:
                    self.outcome = self.outcome or "aborted"  # so an agent sees at once that the run is gone
                    raise HandoverError("the run ended (sandbox stopped)")
                if msg.get("t") == "reply" and msg.get("id") == cid:
                    break
        except (OSError, TimeoutError, ValueError) as exc:
            self.outcome = self.outcome or "aborted"
            raise HandoverError(f"hand-over channel failed: {exc!r}") from exc
        reply = {k: v for k, v in msg.items() if k not in ("t", "id")}
        entry = {"op": op, "args": mask_secrets(args, self._masks), "ok": reply.get("ok", False),
                 "error": reply.get("error"), "ms": round((time.perf_counter() - t0) * 1000, 1)}
        self.trace.append(entry)
        return reply

    def observe(self, *, frame: str | None = None) -> dict:
        """The page's state and elements; with `frame` (a selector for an iframe), the frame's, and its text."""
        r = self._cmd("observe", frame=frame)
        if not r.get("ok"):
            raise HandoverError(r.get("error") or "observe failed")
        return r["value"]

    def act(self, action: str, *, ref: int | None = None, selector: str | None = None, value: Any = None,
            timeout_ms: int | None = None, frame: str | None = None) -> dict:
        r = self._cmd("act", action=action, ref=ref, selector=selector, value=value, timeout_ms=timeout_ms, frame=frame)
        return {"ok": r.get("ok", False), "error": r.get("error"), "value": r.get("value")}

    def fill_secret(self, *, ref: int | None = None, selector: str | None = None, secret_key: str,
                    timeout_ms: int | None = None) -> dict:
        if secret_key not in self._secret_keys:
            return {"ok": False, "error": f"no secret named {secret_key!r}"}
        r = self._cmd("fill_secret", ref=ref, selector=selector, secret_key=secret_key, timeout_ms=timeout_ms)
        return {"ok": r.get("ok", False), "error": r.get("error")}

    def goto(self, url: str, *, timeout_ms: int | None = None) -> dict:
        r = self._cmd("goto", url=url, timeout_ms=timeout_ms)
        return {"ok": r.get("ok", False), "status": r.get("status"), "url": r.get("url"), "error": r.get("error")}

    def wait(self, *, load_state: str | None = None, selector: str | None = None, loads_after: int | None = None,
             timeout_ms: int | None = None) -> dict:
        """Until the page reaches `load_state`, `selector` finds a visible element, or the page has loaded a document
        since it had loaded `loads_after` (a failure's `loads_at_start`: the answer to a form it submitted, say)."""
        r = self._cmd("wait", load_state=load_state, selector=selector, loads_after=loads_after, timeout_ms=timeout_ms)
        return {"ok": r.get("ok", False), "url": r.get("url"), "error": r.get("error")}

    def screenshot(self) -> str:
        r = self._cmd("screenshot")
        if not r.get("ok"):
            raise HandoverError(r.get("error") or "screenshot failed")
        return r["value"]

    def selector_for(self, ref: int, *, frame: str | None = None, keep: str | None = None) -> list[dict]:
        """Unique selectors for the element `ref`, best first; `keep` first when it finds exactly that element."""
        r = self._cmd("selector_for", ref=ref, frame=frame, keep=keep)
        if not r.get("ok"):
            raise HandoverError(r.get("error") or "selector_for failed")
        return r["value"]

    def scroll(self, *, dy: int) -> int | None:
        """Turn the mouse wheel by `dy` pixels; the page's vertical scroll position after it (None: it failed)."""
        r = self._cmd("scroll", dy=dy)
        return r.get("value") if r.get("ok") else None

    def covering_layer(self, *, selector: str) -> dict | None:
        """The layer drawn over the element `selector` finds (a banner, a modal), as `covered_by` describes it."""
        r = self._cmd("covering_layer", selector=selector)
        return r.get("value") if r.get("ok") else None

    def retry_step(self, *, selector: str | None = None, url: str | None = None,
                   timeout_ms: int | None = None) -> dict:
        r = self._cmd("retry_step", selector=selector, url=url, timeout=timeout_ms)
        if r.get("ok"):
            self.outcome = "retried"
            self.recovery = {k: v for k, v in (("selector", selector), ("url", url), ("timeout_ms", timeout_ms)) if v}
        return {"ok": r.get("ok", False), "value": r.get("value"), "error": r.get("error")}

    def resume(self, value: Any = None) -> None:
        self._cmd("resume", value=value)
        self.outcome = "resumed"
        self.recovery = {"value": value}

    def abort(self, reason: str = "aborted") -> None:
        if self.outcome is None:
            self._cmd("abort", reason=reason)
            self.outcome = "aborted"

    def summary(self) -> dict:
        return {"n": self.n, "failure_type": self.failure.type, "step_key": self.failure.step_key,
                "outcome": self.outcome, "recovery": mask_secrets(self.recovery, self._masks),
                "commands": self.trace}


def _flat_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.append(key)
        if isinstance(v, dict):
            out.extend(_flat_keys(v, key + "."))
    return out


def execute(
    spec: RunSpec,
    *,
    on_handover: Callable[[Failure, Handover], None] | None = None,
    on_step: Callable[[Step], None] | None = None,
    browser: BrowserPool | None = None,
    handover_timeout_s: float = HANDOVER_BUDGET_S,
    cancel: threading.Event | None = None,
) -> RunResult:
    """Run spec.code in a sandboxed child; never raises for anything the task does.

    Raises RunnerError only when the runner itself cannot work (Chromium or the child won't start).
    Without `browser`, a Chromium is started for this run and stopped after it (the cold path).
    Setting `cancel` stops the run: the child is killed and the result says it was cancelled.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    own_pool: BrowserPool | None = None
    if browser is None:
        own_pool = BrowserPool(prewarm=False).start()
        timings["browser_start_ms"] = own_pool.last_start_ms
        pool = own_pool
    else:
        pool = browser.start()
    with pool.run_lock:
        result, logs = _execute_in(pool, own_pool, spec, on_handover, on_step, handover_timeout_s, timings, cancel)
    result.logs = mask_secrets(logs, secret_values(spec.secrets))[-LOG_TAIL_BYTES:]
    result.duration_ms = round((time.perf_counter() - t0) * 1000, 1)
    timings["total_ms"] = result.duration_ms
    result.timings = {**timings, **result.timings}
    return result


def _execute_in(pool: BrowserPool, own_pool: BrowserPool | None, spec: RunSpec, on_handover: Any, on_step: Any,
                handover_timeout_s: float, timings: dict, cancel: threading.Event | None) -> tuple[RunResult, str]:
    logs = ""
    result: RunResult | None = None
    try:
        for attempt in (1, 2):
            child: Child | None = None
            clean = False
            try:
                child = pool.acquire()
                t = time.perf_counter()
                ready = child.wait_ready()
                timings["ready_wait_ms"] = round((time.perf_counter() - t) * 1000, 1)
                timings["child_startup_ms"] = round((time.perf_counter() - child.spawned_at) * 1000, 1)
                timings.update(ready.get("timings", {}))
                result, clean = _drive(child, spec, on_handover, on_step, handover_timeout_s, timings, cancel)
                break
            except RunnerError:
                # Raised only before any task code ran (the child or its browser session did not
                # come up): a fresh browser and child get one more chance.
                if attempt == 2:
                    raise
                timings["runner_retries"] = 1
                if own_pool is not None:
                    own_pool.restart()
            finally:
                t = time.perf_counter()
                try:
                    logs = child.cleanup() if child is not None else ""
                    if own_pool is None:
                        pool.release(clean)  # an unclean run recycles the browser
                except Exception:
                    if result is None:
                        raise
                    # The task code has run (a form may be sent): its result stands, whatever the browser's
                    # recycling did. The browser goes; the next run starts a new one.
                    logger.exception("cleaning up after a run failed; its browser is discarded")
                    pool.close()
                timings["cleanup_ms"] = round((time.perf_counter() - t) * 1000, 1)
    finally:
        if own_pool is not None:
            own_pool.close()
    return result, logs


def _drive(child: Child, spec: RunSpec, on_handover: Any, on_step: Any, handover_timeout_s: float,
           timings: dict, cancel: threading.Event | None) -> tuple[RunResult, bool]:
    masks = secret_values(spec.secrets)
    child_spec = RunSpec.from_dict(spec.to_dict())
    child_spec.handover_on = [t for t in spec.handover_on if t in FAILURE_TYPES] if on_handover else []
    steps: list[Step] = []
    handovers: list[Handover] = []
    result_msg: dict | None = None
    trace_bytes = 0
    closed = False
    task_started = False  # the harness says so before the task's code runs: from then on, anything may be forged
    malformed: str | None = None
    watchdog = _Watchdog(child, spec.wall_timeout_s, handover_timeout_s, cancel)
    t_run = time.perf_counter()
    if cancel is not None and cancel.is_set():
        watchdog.fire("cancelled")  # cancelled while the sandbox started: the task's code never runs
    else:
        try:
            child.chan.send({"t": "spec", "spec": child_spec.to_dict()})
        except OSError:
            pass
        watchdog.start()
    try:
        while True:
            try:
                msg = child.chan.recv(timeout=None if result_msg is None else 5.0)
                kind = msg.get("t") if msg is not None else None
                _check_message(msg, kind, handover_on=child_spec.handover_on, task_started=task_started,
                               result=result_msg)
            except MalformedMessage as exc:
                malformed = mask_secrets(str(exc), masks)
                break
            except (OSError, TimeoutError, ValueError):
                break
            if msg is None:
                break
            if kind == "running":
                task_started = True
            elif kind == "step":
                trace_bytes += child.chan.last_size
                if len(steps) >= MAX_STEPS or trace_bytes > MAX_TRACE_BYTES:
                    watchdog.fire(STEP_LIMIT)
                    break
                # Masked here too, not only in the child: task code shares the child's process and
                # could write to the channel itself. For the same reason the step's place is counted here.
                step = Step.from_dict({**mask_secrets(msg["step"], masks), "index": len(steps)})
                steps.append(step)
                if on_step is not None:
                    _safe_call(on_step, step)
            elif kind == "handover":
                failure = Failure.from_dict(msg["failure"])
                handover = Handover(child.chan, failure, spec.secrets, masks, n=len(handovers) + 1,
                                    stopped=watchdog.stopped)
                handovers.append(handover)
                watchdog.pause()
                try:
                    on_handover(failure, handover)
                except HandoverError:
                    pass
                except Exception as exc:  # noqa: BLE001 - an agent bug must not take the worker down
                    handover.trace.append({"op": "agent_error", "error": mask_secrets(repr(exc), masks)})
                finally:
                    if handover.outcome is None:
                        try:
                            handover.abort("the agent ended without a recovery")
                        except HandoverError:
                            pass
                    watchdog.resume()
            elif kind == "result":
                # Screenshots are base64: a secret's letters may occur in them by chance, and are no leak.
                result_msg = {key: value if key in ("screenshots", "timings") else mask_secrets(value, masks)
                              for key, value in msg["result"].items()}
                timings["run_ms"] = round((time.perf_counter() - t_run) * 1000, 1)
            elif kind == "infra_error":
                raise RunnerError(msg.get("error") or "the sandbox could not start its browser session")
            elif kind == "closed":
                closed = True
                timings["teardown_ms"] = msg.get("teardown_ms", 0)
                break
    finally:
        watchdog.stop()
    recovered = any(h.outcome in ("retried", "resumed") for h in handovers)
    if result_msg is not None and malformed is None:
        result = RunResult(
            status=STATUS_FAILED if result_msg["status"] != "ok" else (STATUS_HEALED if recovered else STATUS_SUCCEEDED),
            output=result_msg.get("output"),
            error_type=result_msg.get("error_type"),
            error_message=result_msg.get("error_message"),
            steps=steps,
            failure=Failure.from_dict(result_msg["failure"]) if result_msg.get("failure") else None,
            screenshots=result_msg.get("screenshots") or [],
            timings=result_msg.get("timings") or {},
            recovered=recovered,
        )
    else:
        result = _abnormal_end(child, spec, watchdog, steps, handovers, recovered, malformed=malformed)
    result.handovers = [h.summary() for h in handovers]
    return result, closed and result_msg is not None and malformed is None and not watchdog.fired


def _check_message(msg: dict | None, kind: Any, *, handover_on: list[str], task_started: bool,
                   result: dict | None) -> None:
    """MalformedMessage unless `msg` is one the harness could have sent: its payload has the fields it needs, and it
    comes when the harness sends it. Task code can write to the channel; what it writes is its own error."""
    if kind == "step":
        step = msg.get("step")  # type: ignore[union-attr]
        Step.from_message({**step, "index": 0} if isinstance(step, dict) else step, "a step")
    elif kind == "handover":
        failure = Failure.from_message(msg.get("failure"), "a hand-over's failure")  # type: ignore[union-attr]
        if failure.type not in handover_on:
            raise MalformedMessage(f"a hand-over of a {failure.type!r} failure, which this run does not hand over")
    elif kind == "result":
        RunResult.from_message(msg.get("result"), "the result")  # type: ignore[union-attr]
    elif kind == "infra_error" and task_started:
        raise MalformedMessage("an infra_error after the task's code started (the harness reports one only before)")
    elif kind == "closed" and result is None:
        raise MalformedMessage("a 'closed' message before the run's result")


def _abnormal_end(child: Child, spec: RunSpec, watchdog: _Watchdog, steps: list[Step],
                  handovers: list[Handover], recovered: bool, *, malformed: str | None = None) -> RunResult:
    """The child died or was killed before reporting, or (`malformed`) wrote to the control channel what the
    harness never sends: say why as precisely as we can."""
    child.kill()
    rc = child.proc.returncode
    pending = next((h.failure for h in reversed(handovers) if h.outcome not in ("retried", "resumed")), None)
    if malformed is not None:
        reason = f"the task wrote to the runner's control channel what the runner never gets from it: {malformed}"
        detail = "malformed_message"
    elif watchdog.fired:
        if watchdog.reason == "cancelled":
            reason, detail = "the run was cancelled while it ran", "cancelled"
        elif watchdog.reason == "wall-clock limit":
            reason = f"the run exceeded its wall-clock limit of {spec.wall_timeout_s:g} s and was stopped"
            detail = "wall_timeout"
        elif watchdog.reason == STEP_LIMIT:
            reason = (f"the task reported more steps than a run may keep ({MAX_STEPS} steps, "
                      f"{MAX_TRACE_BYTES // 2**20} MB) and was stopped")
            detail = "step_limit"
        else:
            reason = "the recovery did not finish in time; the run was stopped"
            detail = "handover_timeout"
    elif rc is not None and rc < 0:
        reason = _SIGNAL_REASONS.get(-rc, f"the sandbox was killed by signal {-rc}")
        detail = {signal.SIGXCPU: "cpu_limit", signal.SIGXFSZ: "file_size_limit"}.get(-rc, "killed")
    else:
        tail = child.logs_tail().strip().splitlines()
        last = mask_secrets(tail[-1], secret_values(spec.secrets)) if tail else ""  # what the code printed last
        if "MemoryError" in last:
            reason, detail = "the task exceeded the sandbox memory limit", "memory_limit"
        else:
            reason = f"the sandbox exited unexpectedly (code {rc})" + (f": {last[:300]}" if last else "")
            detail = "crashed"
    error_type = pending.type if pending is not None and detail == "handover_timeout" else (
        CANCELLED if detail == "cancelled" else SCRIPT_ERROR)
    failure = pending if pending is not None and detail == "handover_timeout" else Failure(
        type=error_type, message=reason, exception="SandboxStopped", details={"reason": detail, "exit_code": rc},
    )
    return RunResult(status=STATUS_FAILED, error_type=error_type, error_message=reason, steps=steps,
                     failure=failure, recovered=recovered)


def _safe_call(fn: Callable, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001, S110 - a broken listener must not break the run
        pass


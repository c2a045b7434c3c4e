"""Chromium for the runner: one browser process per worker, reused across runs, never shared state.

A BrowserPool launches the system Chromium itself (no Playwright in the worker) as an
unprivileged uid, with a DevTools port on 127.0.0.1. Each run's sandboxed child connects over CDP
and opens its own fresh browser context, so runs never share cookies or storage, while the ~0.5 s
Chromium start is paid once per worker. The pool also keeps one warm child ready: a harness process
that has already imported Playwright, started its driver, connected and opened its context, and now
waits for a RunSpec. A run then costs only the task itself.

The browser is recycled (killed and relaunched) after a run that did not end cleanly, when anything
but the start page is left in it, or after `max_runs` runs; the start page is replaced after every run.

Process helpers (unique uids, killing everything a uid owns) live here too: sandbox.py uses them.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sandbox import Child
    from .zygote import Zygote

REQUIRED_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# The quiet, deterministic subset of what Playwright passes to Chromium.
EXTRA_ARGS = [
    "--headless",
    "--disable-field-trial-config",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-back-forward-cache",
    "--disable-breakpad",
    "--disable-component-extensions-with-background-pages",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-hang-monitor",
    "--disable-ipc-flooding-protection",
    "--disable-popup-blocking",
    "--disable-prompt-on-repost",
    "--no-default-browser-check",
    "--no-service-autorun",
    "--password-store=basic",
    "--use-mock-keychain",
    "--metrics-recording-only",
    "--force-color-profile=srgb",
    "--hide-scrollbars",
    "--mute-audio",
    (
        "--disable-features=OptimizationHints,NetworkTimeServiceQuerying,MediaRouter,HttpsUpgrades,"
        "HttpsFirstBalancedModeAutoEnable,PaintHolding,AutofillServerCommunication,Translate"
    ),
]
CHROMIUM_ARGS = REQUIRED_ARGS + EXTRA_ARGS

# Unprivileged uids handed out per run and per browser: none of them exists in /etc/passwd.
UID_BASE = int(os.environ.get("ANCHOR_RUNNER_UID_BASE", "200000"))
UID_SPAN = 800000


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BrowserError(RuntimeError):
    """Chromium could not be started or reached."""


try:  # loaded up front: preexec_fn runs after the uid switch, when /root's Python is unreadable
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _LIBC = None


def hide_from_same_uid() -> None:
    """Make this process non-dumpable: its /proc/<pid>/environ and memory then belong to root, so a
    sandboxed run under the same uid (a worker that is not root has no uid per run) cannot read the
    worker's settings (DATABASE_URL, SECRET_KEY, API keys) from them. Programs it execs are unaffected."""
    if _LIBC is not None:
        _LIBC.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


def die_with_parent() -> None:
    """preexec: SIGKILL this process when its parent dies (a SIGKILLed worker leaves no browser).

    Set after the uid switch (Popen runs preexec_fn after setuid), so it is not cleared by it.
    """
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl: go now
            os._exit(1)


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise BrowserError("Chromium not found: set CHROMIUM_PATH")
    return path


def privileged() -> bool:
    return os.geteuid() == 0


def allocate_uid() -> int | None:
    """A fresh uid owned by no process (None when we are not root and cannot switch uids)."""
    if not privileged():
        return None
    busy = set(_uids_in_use())
    for _ in range(100):
        uid = UID_BASE + random.randrange(UID_SPAN)
        if uid not in busy:
            return uid
    raise BrowserError("no free uid")


def _uids_in_use() -> list[int]:
    out = []
    for pid in _all_pids():
        st = _proc_status(pid)
        if st:
            out.append(st[0])
    return out


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _proc_status(pid: int) -> tuple[int, str] | None:
    """(real uid, state letter) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            uid, state = -1, "?"
            for line in fh:
                if line.startswith("State:"):
                    state = line.split()[1]
                elif line.startswith("Uid:"):
                    uid = int(line.split()[1])
                    break
            return uid, state
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError, IndexError):
        return None


def pids_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is uid."""
    out = []
    for pid in _all_pids():
        st = _proc_status(pid)
        if st and st[0] == uid and st[1] not in ("Z", "X"):
            out.append(pid)
    return out


def kill_uid(uid: int | None, timeout: float = 5.0) -> bool:
    """SIGKILL every process of uid, until none is left (forks racing the kill included).

    `kill -9 -1` run *as* that uid signals all its processes at once, which a process-tree walk
    cannot do against a fork bomb; the /proc scan then confirms. True when nothing is left.
    """
    if uid is None:
        return True
    deadline = time.monotonic() + timeout
    kill = shutil.which("kill") or "/bin/kill"
    while True:
        pids = pids_of_uid(uid)
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        try:
            subprocess.run([kill, "-9", "-1"], user=uid, group=uid, extra_groups=[],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)


# World-writable places where a run's uid can leave files that outlive its working directory.
# The directories of a Debian system that every uid may write in.
_SHARED_TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # noqa: S108 - we clean them, not use them


def remove_files_of_uid(uid: int | None) -> None:
    """Delete what `uid` left in the shared temp directories (after its processes are gone): files
    there would hold memory (/dev/shm) and disk, and could be read by a later run given the same uid."""
    if uid is None:
        return
    for directory in _SHARED_TEMP_DIRS:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def chromium_pids() -> list[int]:
    """Every Chromium process on the machine (used by tests and cleanup checks)."""
    out = []
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv0 = fh.read().split(b"\0", 1)[0]
        except OSError:
            continue
        name = os.path.basename(argv0.decode(errors="replace"))
        st = _proc_status(pid)
        if name in ("chromium", "chrome", "headless_shell", "chrome_crashpad_handler") and st and st[1] not in "ZX":
            out.append(pid)
    return out


class BrowserPool:
    """One Chromium per worker process, plus a warm sandbox child ready for the next run.

    Use as a context manager, or start()/close(). execute() holds `run_lock`, so concurrent
    callers on one pool run one after another (an RQ worker runs jobs one after another anyway).
    """

    def __init__(self, *, executable_path: str | None = None, prewarm: bool = True, max_runs: int = 500,
                 memory_mb: int | None = None, use_zygote: bool | None = None) -> None:
        self.executable_path = executable_path or chromium_path()
        self.prewarm = prewarm
        # The fork server pays off for a pool that serves many runs; a one-run (cold) pool skips it.
        self.use_zygote = prewarm if use_zygote is None else use_zygote
        self.max_runs = max_runs
        self.memory_mb = memory_mb
        self.uid: int | None = None
        self.proc: subprocess.Popen | None = None
        self.profile_dir: str | None = None
        self.cdp_url: str | None = None
        self.port: int | None = None
        self.runs = 0
        self.launches = 0
        self.last_start_ms = 0.0
        self._spare: Child | None = None
        self._zygote: Zygote | None = None
        self._lock = threading.Lock()
        # One run at a time per pool: a second Playwright client on the browser slows every step,
        # and release() recycles the browser when it finds pages it does not expect.
        self.run_lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> BrowserPool:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> BrowserPool:
        with self._lock:
            if self.proc is None or self.proc.poll() is not None:
                self._launch()
            self._ensure_zygote()
            if self.prewarm and self._spare is None:
                self._spawn_spare()
                self._spare.tell_connect()
        return self

    def _launch(self) -> None:
        t0 = time.perf_counter()
        self.uid = allocate_uid()
        self.profile_dir = tempfile.mkdtemp(prefix="anchor-browser-")
        if self.uid is not None:
            os.chown(self.profile_dir, self.uid, self.uid)
        args = [
            self.executable_path,
            *CHROMIUM_ARGS,
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={self.profile_dir}",
            "about:blank",
        ]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.profile_dir, "TMPDIR": self.profile_dir,
               "LANG": "C.UTF-8"}
        kwargs: dict = {}
        if self.uid is not None:
            kwargs.update(user=self.uid, group=self.uid, extra_groups=[])
        self.proc = subprocess.Popen(
            args, env=env, cwd=self.profile_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent,  # noqa: PLW1509
            **kwargs,
        )
        port_file = os.path.join(self.profile_dir, "DevToolsActivePort")
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                self._kill_browser()
                raise BrowserError(f"Chromium exited during start (code {self.proc.returncode})")
            try:
                with open(port_file) as fh:
                    lines = fh.read().split()
                if len(lines) >= 2:
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                self._kill_browser()
                raise BrowserError("Chromium did not open its DevTools port in 20 s")
            time.sleep(0.01)
        self.port = int(lines[0])
        self.cdp_url = f"ws://127.0.0.1:{self.port}{lines[1]}"
        self.launches += 1
        self.runs = 0
        self.last_start_ms = round((time.perf_counter() - t0) * 1000, 1)

    def _kill_browser(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)
            kill_uid(self.uid)
            remove_files_of_uid(self.uid)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.profile_dir:
            shutil.rmtree(self.profile_dir, ignore_errors=True)
        self.proc = None
        self.cdp_url = None

    def _ensure_zygote(self) -> None:
        if not self.use_zygote or (self._zygote is not None and self._zygote.alive()):
            return
        from .sandbox import ROOT
        from .zygote import Zygote

        if self._zygote is not None:
            self._zygote.close()
        self._zygote = Zygote(ROOT)

    def close(self) -> None:
        with self._lock:
            if self._spare is not None:
                self._spare.cleanup()
                self._spare = None
            if self._zygote is not None:
                self._zygote.close()
                self._zygote = None
            self._kill_browser()

    def restart(self) -> None:
        with self._lock:
            if self._spare is not None:
                self._spare.cleanup()
                self._spare = None
            self._kill_browser()
            self._launch()
            if self.prewarm:
                self._spawn_spare()
                self._spare.tell_connect()

    # --- children -----------------------------------------------------------------------------
    def _spawn_spare(self) -> None:
        from .sandbox import spawn_child

        assert self.cdp_url
        self._ensure_zygote()
        self._spare = spawn_child(self.cdp_url, memory_mb=self.memory_mb, spare=True, zygote=self._zygote)

    def wait_warm(self, timeout: float = 30.0) -> bool:
        """Block until the warm child is ready (a worker idle between jobs is in this state)."""
        self.start()
        spare = self._spare
        if spare is None:
            return False
        try:
            spare.wait_connected(timeout)
        except Exception:  # noqa: BLE001 - a broken spare is replaced at acquire()
            return False
        return True

    def acquire(self) -> Child:
        """A child connected to this browser (warm if one was prepared), and prepare the next."""
        from .sandbox import spawn_child

        with self._lock:
            if self.proc is None or self.proc.poll() is not None:
                if self._spare is not None:
                    self._spare.cleanup()
                    self._spare = None
                self._launch()
            child = self._spare
            self._spare = None
            if child is None or child.proc.poll() is not None:
                if child is not None:
                    child.cleanup()
                assert self.cdp_url
                self._ensure_zygote()
                child = spawn_child(self.cdp_url, memory_mb=self.memory_mb, zygote=self._zygote)
            child.promote()
            if self.prewarm:
                self._spawn_spare()
            self.runs += 1
            return child

    def release(self, clean: bool) -> None:
        """After a run: recycle the browser if the run left it in an unknown state, then let the
        warm child connect (it stays off the browser while a run is in progress).

        Task code can reach the raw Browser object, so "unknown" is strict: any target besides the
        start page (a page, a worker, a service worker) recycles the browser, and the start page itself
        is replaced, since script a run planted in it would watch the next run."""
        dirty = not clean or self.runs >= self.max_runs or not self._fresh_start_page()
        if dirty:
            self.restart()
        elif self._spare is not None:
            self._spare.tell_connect()

    def _fresh_start_page(self) -> bool:
        """Swap the start page for a new blank one; False when anything else is left in the browser."""
        targets = self._run_reachable_targets()
        if len(targets) != 1 or targets[0].get("type") != "page":
            return False
        try:
            # PUT: Chromium refuses a GET here, so a web page cannot open targets through this endpoint.
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
            with _NO_PROXY.open(request, timeout=2) as resp:
                fresh = json.loads(resp.read())
            with _NO_PROXY.open(f"http://127.0.0.1:{self.port}/json/close/{targets[0]['id']}", timeout=2):
                pass
        except (OSError, ValueError, KeyError):
            return False
        deadline = time.monotonic() + 2.0  # closing is asynchronous: the old page may linger a moment
        while [t.get("id") for t in self._run_reachable_targets()] != [fresh.get("id")]:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _run_reachable_targets(self) -> list[dict]:
        # Chromium lists its own UI (type "browser_ui", chrome://omnibox-popup...) too; a run cannot touch it.
        return [t for t in self.targets() if t.get("type") != "browser_ui"]

    def targets(self) -> list[dict]:
        if not self.port:
            return []
        try:
            with _NO_PROXY.open(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            return []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

"""A fork server for sandbox children: Python and Playwright are imported once, not once per run.

Importing the harness (Playwright, greenlet, asyncio, ...) costs ~0.45 CPU-seconds, a quarter of
what one run's child costs. The zygote is a root process started by the BrowserPool with a clean
environment; it imports the harness and then only forks. Each fork becomes one run's child: it
makes its own session, applies the resource limits, moves into its working directory with a clean
environment and calls harness.main() (which drops to the run's uid). The zygote stays
single-threaded, holds no secrets, and never runs task code itself.

The worker is not the parent of a forked child, so the zygote reports each child's exit status on
a per-child pipe that the worker passed in (ZygoteProc reads it, Popen-style).
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback

from .browser import die_with_parent

MAX_FDS = 3


def send_fds(sock: socket.socket, payload: bytes, fds: list[int]) -> None:
    sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def recv_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    msg, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_LEN(MAX_FDS * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)


# --- zygote side ----------------------------------------------------------------------------
def serve(fd: int) -> None:
    from . import harness  # noqa: F401 - the whole point: import once, fork many

    sock = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    status_fds: dict[int, int] = {}
    while True:
        try:
            readable, _, _ = select.select([sock, wake_r], [], [], 1.0)
        except InterruptedError:
            readable = []
        if wake_r in readable:
            os.read(wake_r, 4096)
        _reap(status_fds)
        if sock in readable:
            msg, fds = recv_fds(sock)
            if not msg:
                os._exit(0)  # the pool is gone
            req = json.loads(msg)
            ctrl_fd, log_fd, status_fd = fds
            pid = os.fork()
            if pid == 0:
                _child(req, ctrl_fd, log_fd)
            os.close(ctrl_fd)
            os.close(log_fd)
            status_fds[pid] = status_fd
            sock.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def _reap(status_fds: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = status_fds.pop(pid, None)
        if fd is not None:
            try:
                os.write(fd, struct.pack("i", os.waitstatus_to_exitcode(status)))
            except OSError:
                pass
            os.close(fd)


def _child(req: dict, ctrl_fd: int, log_fd: int) -> None:
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.dup2(ctrl_fd, 3)
        os.closerange(4, 65536)  # the zygote's socket, other children's pipes
        from .sandbox import _limits

        _limits(req["memory_mb"], req.get("nice", 0))()
        os.chdir(req["workdir"])
        os.environ.clear()
        os.environ.update(req["env"])
        from .harness import main

        main(["--fd", "3", *req["args"]])
    except BaseException:  # noqa: BLE001
        try:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(70)
    os._exit(0)


# --- worker side ----------------------------------------------------------------------------
class ZygoteProc:
    """The Popen-like handle of a child forked by the zygote.

    Thread-safe: the sandbox's watchdog and the run's own end may kill and wait for a child at the same time,
    and its status pipe must be read and closed exactly once (a second close could hit a descriptor that
    something else has been given since)."""

    def __init__(self, pid: int, status_fd: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._status_fd = status_fd
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                readable, _, _ = select.select([self._status_fd], [], [], 0)
                if readable:
                    self._read_status()
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise subprocess.TimeoutExpired(f"zygote child {self.pid}", timeout or 0)
        try:
            if self.returncode is None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                readable, _, _ = select.select([self._status_fd], [], [], left)
                if not readable:
                    raise subprocess.TimeoutExpired(f"zygote child {self.pid}", timeout or 0)
                self._read_status()
        finally:
            self._lock.release()
        assert self.returncode is not None
        return self.returncode

    def _read_status(self) -> None:
        try:
            data = os.read(self._status_fd, 4)
        except OSError:
            data = b""
        self.returncode = struct.unpack("i", data)[0] if len(data) == 4 else -signal.SIGKILL
        os.close(self._status_fd)


class Zygote:
    """Worker-side handle: start the fork server, ask it for children."""

    def __init__(self, root: str) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        boot = (f"import sys; sys.path.insert(0, {root!r}); "
                f"from tasks_app.runner.zygote import serve; serve(int(sys.argv[1]))")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-E", "-s", "-B", "-u", "-c", boot, str(child.fileno())],
                pass_fds=[child.fileno()], env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd="/", preexec_fn=die_with_parent,  # noqa: PLW1509
            )
        finally:
            child.close()
        self.sock = parent
        self._buf = b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, *, ctrl_fd: int, log_fd: int, workdir: str, env: dict, args: list[str], memory_mb: int,
              nice: int) -> ZygoteProc:
        status_r, status_w = os.pipe()
        req = {"workdir": workdir, "env": env, "args": args, "memory_mb": memory_mb, "nice": nice}
        try:
            send_fds(self.sock, json.dumps(req).encode(), [ctrl_fd, log_fd, status_w])
        finally:
            os.close(status_w)
        self.sock.settimeout(30)
        while b"\n" not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                os.close(status_r)
                raise OSError("zygote exited")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return ZygoteProc(json.loads(line)["pid"], status_r)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

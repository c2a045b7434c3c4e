"""A whole Anchor on one machine, made of real processes, that tests can break piece by piece.

    with cluster_started() as c:        # Redis (its own server), PostgreSQL (through a proxy we can cut),
        c.web_urls                      # two daphne web processes, two AnchorWorker processes,
        c.kill_worker("a")              # and a control process (Django, direct DB connection) for setup
        c.redis.restart()               # and inspection: c.call("tests.reliability.ops.state", task_id)
        c.pg.cut(); c.pg.restore()

Why not tests/browser/live.py's `anchor_started`: it starts one web process and one worker on the
shared Redis, and these tests need several of each, their own Redis server (to restart it) and a
database path they can cut. The small helpers (free ports, waiting for HTTP and for workers,
stopping processes) are reused from there.

Everything lives in a temporary directory (logs included) and a PostgreSQL database made for the
session (`anchor_rel_<token>`), dropped at the end. Set ANCHOR_RELIABILITY_KEEP=1 to keep the logs.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.browser.live import _wait_http, free_port

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("ANCHOR_RELIABILITY_PG", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

# Short enough that every fault scenario ends in well under a minute; see docs/reliability.md.
RUN_STALE_AFTER_S = 6
RUN_REQUEUE_AFTER_S = 8
RUN_WALL_TIMEOUT_S = 20
RUN_ACTION_TIMEOUT_MS = 3000


# -- Redis: our own server, so restarting it disturbs nobody -------------------------------------------


class RedisServer:
    """A redis-server on a free port without persistence: a restart loses every key, as in production
    deployments that run Redis without AOF/RDB."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # like a crash or an OOM kill: nothing is saved (and nothing would be)
            self.process.wait(timeout=10)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
        self.restarts += 1


# -- PostgreSQL: the shared server, reached through a TCP proxy this process can cut -------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the real PostgreSQL. `cut()` drops every connection and refuses new
    ones (clients see "server closed the connection unexpectedly"), `restore()` lets them through again."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.closed = False
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="pg-proxy").start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = (client, server)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, server = pair
        peers = {client: server, server: client}
        try:
            while True:
                readable, _, _ = select.select([client, server], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            self._drop(pair)

    def _drop(self, pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
        for sock in pair:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self) -> None:
        self.up = False
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._drop(pair)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


def pg_execute(sql: str, url: str = PG_ADMIN_URL) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def pg_available() -> bool:
    try:
        pg_execute("select 1")
        return True
    except Exception:
        return False


# -- the control process: Django against the cluster's database, for setup and inspection ---------------


class Control:
    """A long-lived `python -m tests.reliability.control`: calls functions of tests/reliability/ops.py (or
    any importable function) by name and returns their JSON result. Far faster than `manage.py shell`."""

    def __init__(self, env: dict, log: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.control"], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("ab"), start_new_session=True,
        )
        self._lock = threading.Lock()

    def call(self, func: str, *args, timeout: float = 60, **kwargs):
        if "." not in func:
            func = f"tests.reliability.ops.{func}"
        with self._lock:
            assert self.process.stdin and self.process.stdout
            self.process.stdin.write(json.dumps({"func": func, "args": args, "kwargs": kwargs}) + "\n")
            self.process.stdin.flush()
            deadline = time.monotonic() + timeout
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"control call {func} took more than {timeout}s")
                ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
                if not ready:
                    if self.process.poll() is not None:
                        raise RuntimeError(f"the control process exited with {self.process.returncode}")
                    continue
                line = self.process.stdout.readline()
                if not line:
                    raise RuntimeError("the control process closed its output")
                if line.startswith("@@ctl "):
                    reply = json.loads(line[6:])
                    break
        if "error" in reply:
            raise RuntimeError(f"{func} failed in the control process:\n{reply['error']}")
        return reply["result"]

    def stop(self) -> None:
        _stop_group(self.process)


# -- the cluster ----------------------------------------------------------------------------------------


@dataclass
class Cluster:
    workdir: Path
    env: dict[str, str]
    redis: RedisServer
    pg: TcpProxy
    database: str
    control: Control | None = None
    reviewer: dict = field(default_factory=dict)
    model: object = None  # the StalledModel the LLM agent talks to (conftest)
    scheduled_task: str = ""  # a task scheduled every minute while the cluster lives (conftest)
    webs: dict[str, subprocess.Popen] = field(default_factory=dict)
    web_ports: dict[str, int] = field(default_factory=dict)
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    _starts: int = 0

    # processes -------------------------------------------------------------------------------------

    def start_web(self, name: str, *, wait: bool = True) -> None:
        port = self.web_ports.get(name) or free_port()
        self.web_ports[name] = port
        log = self.workdir / f"web-{name}.log"
        self.webs[name] = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "anchor_site.asgi:application"],
            cwd=ROOT, env=self.env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        if wait:
            self.wait_web(name)

    def wait_web(self, name: str) -> None:
        _wait_http(f"{self.url(name)}/accounts/login/", 120, self.webs[name], self.workdir / f"web-{name}.log")

    def start_worker(self, name: str, *, wait: bool = True) -> subprocess.Popen:
        self._starts += 1
        log = self.workdir / f"worker-{name}.log"
        process = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "runs", "healing", "webhooks", "--with-scheduler",
             "--worker-class", "tasks_app.worker.AnchorWorker", "--name", f"rel-{name}-{self._starts}-{uuid.uuid4().hex[:6]}"],
            cwd=ROOT, env=self.env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.workers[name] = process
        if wait:
            self.wait_worker_registered(process, log)
        return process

    def wait_worker_registered(self, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
        from redis import Redis
        from rq import Worker

        connection = Redis.from_url(self.redis.url())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            if any(w.pid == process.pid for w in Worker.all(connection=connection)):
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker {process.pid} did not register:\n{log.read_text(errors='replace')[-3000:]}")

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Kill only the worker process itself (as the OOM killer or a crash would), not its group."""
        process = self.workers[name]
        os.kill(process.pid, sig)
        process.wait(timeout=30)
        return process.pid

    def url(self, web: str = "a") -> str:
        return f"http://127.0.0.1:{self.web_ports[web]}"

    @property
    def web_urls(self) -> list[str]:
        return [self.url(name) for name in self.webs]

    def alive(self) -> dict[str, bool]:
        procs = {**{f"web-{n}": p for n, p in self.webs.items()}, **{f"worker-{n}": p for n, p in self.workers.items()}}
        return {name: p.poll() is None for name, p in procs.items()}

    def ensure(self) -> None:
        """Bring back whatever an earlier scenario broke: Redis, the database path, dead processes."""
        self.pg.restore()
        if not self.redis.ping():
            self.redis.start()
        for name, process in list(self.webs.items()):
            if process.poll() is not None:
                self.start_web(name)
        for name, process in list(self.workers.items()):
            if process.poll() is not None:
                _stop_group(process)
                self.start_worker(name)

    def call(self, func: str, *args, **kwargs):
        assert self.control is not None
        return self.control.call(func, *args, **kwargs)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> dict[str, str]:
        return {path.stem: path.read_text(errors="replace") for path in sorted(self.workdir.glob("*.log"))}

    def wait_for(self, what: str, check, timeout: float, interval: float = 0.3):
        """Poll `check()` until it returns something truthy; fail with `what` and the worker logs if not."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        tails = "\n".join(f"--- {name} ---\n{text[-2500:]}" for name, text in self.logs().items() if name.startswith("worker"))
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{tails}")

    def stop(self) -> None:
        for process in [*self.workers.values(), *self.webs.values()]:
            _stop_group(process)
        if self.control is not None:
            self.control.stop()


def _stop_group(process: subprocess.Popen) -> None:
    """Stop a process we started and everything in its session (RQ's scheduler, Chromium, sandboxes)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group, if any
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=5)


def cluster_env(*, workdir: Path, redis_url: str, database_url: str, token: str, extra: dict | None = None) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "DJANGO_"))}
    for key in ("ANCHOR_TESTING", "TEST_REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "SECURE_HTTPS"):
        env.pop(key, None)
    env.update(
        DJANGO_SETTINGS_MODULE="anchor_site.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CHANNELS_PREFIX=f"anchor-rel-{token[:8]}",
        DEBUG="1",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        ANCHOR_VAR_DIR=str(workdir / "var"),
        WEBHOOKS_ALLOW_PRIVATE="1",
        HEALING_AGENT="heuristic",
        RUN_STALE_AFTER_S=str(RUN_STALE_AFTER_S),
        RUN_REQUEUE_AFTER_S=str(RUN_REQUEUE_AFTER_S),
        RUN_WALL_TIMEOUT_S=str(RUN_WALL_TIMEOUT_S),
        RUN_ACTION_TIMEOUT_MS=str(RUN_ACTION_TIMEOUT_MS),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        **(extra or {}),
    )
    return env


@contextmanager
def cluster_started(*, webs: tuple[str, ...] = ("a", "b"), workers: tuple[str, ...] = ("a", "b"), extra_env: dict | None = None):
    token = uuid.uuid4().hex
    workdir = Path(tempfile.mkdtemp(prefix="anchor-reliability-"))
    database = f"anchor_rel_{token[:12]}"
    redis = RedisServer(workdir)
    pg = TcpProxy(("127.0.0.1", 5432))
    pg_execute(f'CREATE DATABASE "{database}"')
    env = cluster_env(
        workdir=workdir,
        redis_url=redis.url(0),
        database_url=f"postgres://postgres@127.0.0.1:{pg.port}/{database}",
        token=token,
        extra=extra_env,
    )
    cluster = Cluster(workdir=workdir, env=env, redis=redis, pg=pg, database=database)
    try:
        redis.start()
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=600)
        if migrate.returncode:
            raise RuntimeError(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        # The control process talks to PostgreSQL directly, so tests can look at the data while the
        # proxy is cut.
        control_env = {**env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}", "LOG_LEVEL": "WARNING"}
        cluster.control = Control(control_env, workdir / "control.log")
        for name in workers:
            cluster.start_worker(name, wait=False)
        for name in webs:
            cluster.start_web(name, wait=False)
        for name in webs:
            cluster.wait_web(name)
        for name in workers:
            cluster.wait_worker_registered(cluster.workers[name], workdir / f"worker-{name}.log")
        yield cluster
    finally:
        cluster.stop()
        redis.stop()
        pg.close()
        try:
            pg_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        except Exception as exc:  # never hide the test's own failure behind a cleanup error
            print(f"could not drop {database}: {exc}", file=sys.stderr)
        if os.environ.get("ANCHOR_RELIABILITY_KEEP"):
            print(f"reliability logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


__all__ = ["Cluster", "RedisServer", "TcpProxy", "cluster_started", "pg_available"]

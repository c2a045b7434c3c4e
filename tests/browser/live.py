"""Starting a live Anchor (daphne + an RQ worker) in subprocesses; used by tests/browser/conftest.py and bench/.

See tests/browser/conftest.py for why the subprocesses get their own database, Redis db and Channels prefix.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
REDIS_BASE = os.environ.get("ANCHOR_LIVE_REDIS", "redis://127.0.0.1:6379")
LOCK_KEY = "anchor:live-server-lock"

@dataclass
class AnchorLive:
    """A running Anchor: its URL, its environment, and ways to change its data from outside the browser."""

    url: str
    env: dict[str, str]
    redis_url: str
    workdir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def manage(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], check=False, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def shell(self, code: str) -> str:
        """Run Python in a fresh Django process against the live database; returns what it printed."""
        return self.manage("shell", "-c", code)

    def shell_json(self, code: str):
        """Like shell(), for code that ends by printing one JSON value on the last line."""
        return json.loads(self.shell(code).strip().splitlines()[-1])

    def enqueue(self, func: str, *args, queue: str = "healing", timeout: float = 60, **kwargs):
        """Have the live worker run `func(*args, **kwargs)` and return its result."""
        from redis import Redis
        from rq import Queue

        job = Queue(queue, connection=Redis.from_url(self.redis_url)).enqueue(func, *args, **kwargs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = job.get_status(refresh=True)
            if status == "finished":
                return job.return_value()
            if status in ("failed", "stopped", "canceled"):
                raise RuntimeError(f"job {func} {status}: {job.latest_result().exc_string if job.latest_result() else ''}")
            time.sleep(0.05)
        raise TimeoutError(f"job {func} did not finish in {timeout}s; see {self.workdir}/worker.log")

    def enqueue_nowait(self, func: str, *args, queue: str = "healing", **kwargs):
        from redis import Redis
        from rq import Queue

        return Queue(queue, connection=Redis.from_url(self.redis_url)).enqueue(func, *args, **kwargs)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def claim_redis_db(token: str) -> int:
    """Take the first Redis database (10-15) no other live server holds, so concurrent sessions never share queues."""
    from redis import Redis

    for number in range(10, 16):
        redis = Redis.from_url(f"{REDIS_BASE}/{number}")
        if redis.set(LOCK_KEY, token, nx=True, ex=3 * 3600):
            for key in redis.scan_iter(count=1000):  # leftovers of a crashed session; the lock is ours now
                if key != LOCK_KEY.encode():
                    redis.delete(key)
            return number
    raise RuntimeError("no free Redis database in 10-15 for a live server (all locked by other sessions)")


def release_redis_db(number: int, token: str) -> None:
    from redis import Redis

    redis = Redis.from_url(f"{REDIS_BASE}/{number}")
    if redis.get(LOCK_KEY) == token.encode():
        redis.flushdb()


def _wait_http(url: str, timeout: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def _wait_worker(redis_url: str, timeout: float, process: subprocess.Popen, log: Path) -> None:
    from redis import Redis
    from rq import Worker

    connection = Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if Worker.all(connection=connection):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the worker did not register in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def anchor_started(*, database_url: str | None = None, worker: bool = True, migrate: bool = True, extra_env: dict | None = None):
    """Start daphne (and the worker) on a fresh database; yield an AnchorLive; stop everything on exit."""
    token = uuid.uuid4().hex
    workdir = Path(tempfile.mkdtemp(prefix="anchor-live-"))
    redis_db = claim_redis_db(token)
    redis_url = f"{REDIS_BASE}/{redis_db}"
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="anchor_site.settings",
        DATABASE_URL=database_url or os.environ.get("ANCHOR_LIVE_DATABASE_URL") or f"sqlite:///{workdir}/anchor.sqlite3",
        REDIS_URL=redis_url,
        CHANNELS_PREFIX=f"anchor-live-{token[:8]}",
        DEBUG="1",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        ANCHOR_VAR_DIR=str(workdir / "var"),
        ANCHOR_SITE_URL=f"http://127.0.0.1:{port}",
        WEBHOOKS_ALLOW_PRIVATE="1",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
        **(extra_env or {}),
    )
    env.pop("ANCHOR_TESTING", None)
    live = AnchorLive(url=f"http://127.0.0.1:{port}", env=env, redis_url=redis_url, workdir=workdir)
    try:
        if migrate:
            live.manage("migrate", "--no-input", "-v", "0", timeout=600)
        web_log, worker_log = workdir / "daphne.log", workdir / "worker.log"
        live.processes["daphne"] = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "anchor_site.asgi:application"],
            cwd=ROOT, env=env, stdout=web_log.open("wb"), stderr=subprocess.STDOUT,
        )
        if worker:
            live.processes["worker"] = subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", "runs", "healing", "webhooks", "--with-scheduler",
                 "--worker-class", "tasks_app.worker.AnchorWorker"],
                cwd=ROOT, env=env, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT,
            )
        _wait_http(f"{live.url}/accounts/login/", 60, live.processes["daphne"], web_log)
        if worker:
            _wait_worker(redis_url, 60, live.processes["worker"], worker_log)
        yield live
    finally:
        for process in live.processes.values():
            _stop(process)
        release_redis_db(redis_db, token)
        if not os.environ.get("ANCHOR_LIVE_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)

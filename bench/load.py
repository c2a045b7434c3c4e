"""Load: N AnchorWorker processes against Redis and PostgreSQL, a few hundred to a few thousand runs.

    python bench/load.py                          # 2 workers, 300 runs (a few minutes here)
    python bench/load.py --workers 1,2,4          # the scaling table, 100 runs per count (under 10 min here)
    python bench/load.py --runs 2000 --json       # a few thousand runs, machine-readable

For each worker count: start that many `manage.py rqworker runs healing webhooks --with-scheduler
--worker-class tasks_app.worker.AnchorWorker` processes (each warms its Chromium first), enqueue the runs
through `tasks_app.services.run_enqueue` as fast as this process can, and wait until every run has
finished. The task is small and local: open a contact form served by this script, fill a field, click
Send, read the confirmation (4 steps).

Reported per worker count: throughput (finished runs per second, from the first enqueue to the last
finish), queue-to-finish p50/p95 (run.finished_at - run.created_at, so it includes the wait in the queue),
the mean run time inside the worker, errors (runs that ended failed) and lost runs (runs still queued or
running when the wait ended; the goal is zero), the CPU seconds the workers (with their browsers and
sandboxes) spent per run, the share of the machine's CPUs they used, and how busy the machine was in all.
On a shared machine the last two tell whether the workers or the neighbours filled the CPUs.

Services used: Redis at REDIS (default 127.0.0.1:6379) database 13, claimed with a lock key so two
benches never share it and flushed before and after; PostgreSQL at PG (default postgres@127.0.0.1:5432),
in a database `anchor_load_<random>` created for the run and dropped afterwards. Workers run with
DEBUG off and a throwaway SECRET_KEY, as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REDIS = os.environ.get("LOAD_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("LOAD_REDIS_DB", "13"))
PG = os.environ.get("LOAD_PG", "postgres://postgres@127.0.0.1:5432")
LOCK_KEY = "anchor:bench-load-lock"

TASK_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", params["name"])
    page.click("#submit")
    return {"confirmation": page.inner_text(".confirmation")}
'''
CONTACT = (
    b"<html><body><h1>Contact</h1><form method='post' action='/thanks'>"
    b"<label for='name'>Name</label><input id='name' name='name'>"
    b"<button id='submit' type='submit'>Send</button></form></body></html>"
)


# -- the local site --------------------------------------------------------------------------------


class _Site(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    posts = 0
    lock = threading.Lock()

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went first (a run that ended or was stopped); its run reports that itself

    def do_GET(self) -> None:
        self._send(CONTACT)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        name = parse_qs(self.rfile.read(length).decode()).get("name", ["?"])[0]
        with _Site.lock:
            _Site.posts += 1
        self._send(f"<p class='confirmation'>Thanks, {name}!</p>".encode())

    def log_message(self, *args) -> None:
        pass


@contextmanager
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- services --------------------------------------------------------------------------------------


@contextmanager
def redis_db():
    from redis import Redis

    token = uuid.uuid4().hex
    url = f"{REDIS}/{REDIS_DB}"
    connection = Redis.from_url(url)
    if not connection.set(LOCK_KEY, token, nx=True, ex=3 * 3600):
        sys.exit(f"Redis database {REDIS_DB} is in use by another bench/load.py (key {LOCK_KEY}); try later")
    for key in connection.scan_iter(count=1000):
        if key != LOCK_KEY.encode():
            connection.delete(key)
    try:
        yield url
    finally:
        if connection.get(LOCK_KEY) == token.encode():
            connection.flushdb()


@contextmanager
def pg_database():
    import psycopg

    name = f"anchor_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def environment(database_url: str, redis_url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    for key in ("ANCHOR_TESTING", "TEST_REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(key, None)
    env.update(
        DJANGO_SETTINGS_MODULE="anchor_site.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CHANNELS_PREFIX=f"anchor-load-{uuid.uuid4().hex[:6]}",
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="0",
        ANCHOR_VAR_DIR=str(workdir / "var"),
        LOG_LEVEL="WARNING",
        RQ_LOG_LEVEL="WARNING",
        HEALING_AGENT="heuristic",
        PYTHONUNBUFFERED="1",
    )
    return env


# -- workers ---------------------------------------------------------------------------------------


def start_workers(count: int, env: dict, workdir: Path, tag: str) -> list[subprocess.Popen]:
    workers = []
    for i in range(count):
        log = (workdir / f"worker-{tag}-{i}.log").open("ab")
        workers.append(subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "runs", "healing", "webhooks", "--with-scheduler",
             "--worker-class", "tasks_app.worker.AnchorWorker", "--name", f"load-{tag}-{i}-{uuid.uuid4().hex[:4]}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for process in workers:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in workers:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- one measurement -------------------------------------------------------------------------------


def measure(*, workers: int, runs: int, env: dict, workdir: Path, base_url: str, timeout: float) -> dict:
    from django.db import connection

    from tasks_app import services
    from tasks_app.models import Run

    task = services.task_create(name=f"load x{workers}", code=TASK_CODE, params={"base_url": base_url, "name": "Ada"})
    processes = start_workers(workers, env, workdir, f"x{workers}")
    try:
        # Warm-up, not counted: every worker starts its Chromium on its first run.
        warm = [services.run_enqueue(task=task).pk for _ in range(workers * 2)]
        _wait_finished(warm, timeout=180, processes=processes, workdir=workdir)

        started = time.monotonic()
        cpu_before, machine_before = _cpu_seconds([p.pid for p in processes]), _machine_busy()
        run_ids = [services.run_enqueue(task=task, params={"name": f"r{i}"}).pk for i in range(runs)]
        enqueue_s = time.monotonic() - started
        finished = _wait_finished(run_ids, timeout=timeout, processes=processes, workdir=workdir)
        wall = time.monotonic() - started
        workers_cpu = _cpu_seconds([p.pid for p in processes]) - cpu_before
        machine_after = _machine_busy()
    finally:
        stop_workers(processes)
        connection.close()

    rows = list(Run.objects.filter(pk__in=run_ids).values("status", "created_at", "started_at", "finished_at", "timings"))
    done = [r for r in rows if r["finished_at"] is not None]
    queue_to_finish = sorted((r["finished_at"] - r["created_at"]).total_seconds() for r in done)
    in_worker = [(r["finished_at"] - r["started_at"]).total_seconds() for r in done if r["started_at"]]
    first = min(r["created_at"] for r in rows)
    last = max((r["finished_at"] for r in done), default=first)
    span = max((last - first).total_seconds(), 1e-6)
    return {
        "workers": workers,
        "runs": runs,
        "finished": len(done),
        "throughput_per_s": round(len(done) / span, 2),
        "runs_per_min": round(60 * len(done) / span, 1),
        "p50_s": round(_percentile(queue_to_finish, 50), 2),
        "p95_s": round(_percentile(queue_to_finish, 95), 2),
        "run_mean_s": round(statistics.mean(in_worker), 2) if in_worker else None,
        # Of which the sandbox (child, browser context, the task's steps); the rest is the worker's own
        # claim, bookkeeping and storing of the result.
        "sandbox_mean_s": round(statistics.mean(r["timings"].get("total_ms", 0) for r in done) / 1000, 2) if done else None,
        "errors": sum(r["status"] == Run.Status.FAILED for r in rows),
        "lost": runs - len(done),
        # CPU seconds the worker processes, their browsers and sandboxes used per run, and how busy the
        # whole machine was meanwhile (ours and everything else running on it).
        "cpu_per_run_s": round(workers_cpu / max(runs, 1), 2),
        "workers_cpu_share": round(workers_cpu / (wall * (os.cpu_count() or 1)), 2),
        "machine_busy": round((machine_after[0] - machine_before[0]) / max(machine_after[1] - machine_before[1], 1), 2),
        "enqueue_s": round(enqueue_s, 1),
        "wall_s": round(wall, 1),
        "all_finished": finished,
    }


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time of these processes and all their live descendants, including children they have reaped
    (sandbox children reaped by the fork server, renderers reaped by Chromium)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[1] is the parent pid; utime, stime, cutime, cstime are fields 11-14 after the name.
        stats[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / ticks)
    total, frontier, seen = 0.0, list(pids), set()
    while frontier:
        pid = frontier.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        frontier.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _wait_finished(run_ids: list[str], *, timeout: float, processes: list, workdir: Path) -> bool:
    from tasks_app.models import Run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = Run.objects.filter(pk__in=run_ids, status__in=[Run.Status.QUEUED, Run.Status.RUNNING]).count()
        if not left:
            return True
        dead = [p for p in processes if p.poll() is not None]
        if dead:
            logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in workdir.glob("worker-*.log"))
            raise RuntimeError(f"{len(dead)} worker(s) exited:\n{logs}")
        time.sleep(0.5)
    return False


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    k = (len(values) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="2", help="worker counts, comma-separated (e.g. 1,2,4)")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs per worker count (default 300 for one count, 100 each for a table)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for the runs of one count (default: 900, or 3 s a run if more)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    if args.runs is None:
        args.runs = 300 if len(counts) == 1 else 100

    workdir = Path(tempfile.mkdtemp(prefix="anchor-load-"))
    print(f"bench/load.py: {args.runs} runs x workers {counts}; {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; logs in {workdir}", flush=True)
    results = []
    with redis_db() as redis_url, pg_database() as database_url, site() as base_url:
        env = environment(database_url, redis_url, workdir)
        os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SECRET_KEY",
                                               "DEBUG", "ANCHOR_VAR_DIR", "LOG_LEVEL", "CHANNELS_PREFIX")})
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env,
                                 capture_output=True, text=True)
        if migrate.returncode:
            sys.exit(migrate.stderr)
        import django

        django.setup()
        for count in counts:
            result = measure(workers=count, runs=args.runs, env=env, workdir=workdir, base_url=base_url,
                             timeout=args.timeout or max(900.0, 3.0 * args.runs))
            results.append(result)
            print(f"  {count} worker(s): {result['throughput_per_s']} runs/s, p50 {result['p50_s']} s, "
                  f"p95 {result['p95_s']} s, mean run {result['run_mean_s']} s (sandbox {result['sandbox_mean_s']} s), "
                  f"errors {result['errors']}, lost {result['lost']}, enqueued in {result['enqueue_s']} s; "
                  f"{result['cpu_per_run_s']} CPU-s per run, workers used {result['workers_cpu_share']:.0%} of the CPUs, "
                  f"machine {result['machine_busy']:.0%} busy", flush=True)
        posted = _Site.posts

    base = results[0]["throughput_per_s"] if results else 0
    print()
    print("| workers | runs | throughput (runs/s) | runs/min | vs first row | queue→finish p50 | p95 | mean run "
          "| CPU-s per run | workers' CPU share | machine busy | errors | lost |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        speedup = r["throughput_per_s"] / (base or 1)
        print(f"| {r['workers']} | {r['runs']} | {r['throughput_per_s']:.2f} | {r['runs_per_min']:.0f} | "
              f"{speedup:.2f}× | {r['p50_s']:.1f} s | {r['p95_s']:.1f} s | {r['run_mean_s']:.2f} s | "
              f"{r['cpu_per_run_s']:.2f} | {r['workers_cpu_share']:.0%} | {r['machine_busy']:.0%} | {r['errors']} | {r['lost']} |")
    expected_posts = sum(r["runs"] + 2 * r["workers"] for r in results)
    print(f"\nform posts received by the site: {posted} (runs incl. warm-up: {expected_posts}); "
          f"load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        print(json.dumps(results, indent=2))
    if any(r["lost"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()

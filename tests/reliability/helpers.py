"""Small helpers shared by the scenarios: which worker runs a job, a process's memory and descendants."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from tests.reliability.cluster import Cluster
from tests.reliability.sites import CONTACT_CODE

FINISHED = ("succeeded", "healed", "failed")
# A lost run is noticed by the next maintenance pass after RUN_STALE_AFTER_S without a heartbeat.
# Idle workers pass every MAINTENANCE_EVERY_S (15 s); the bound below is what docs/reliability.md states.
MAINTENANCE_EVERY_S = 15
# A job whose worker died counts as abandoned once its RQ heartbeat lapses (AnchorWorker.JOB_HEARTBEAT_TTL_S);
# the next maintenance pass resumes its heal. The bound docs/reliability.md states.
ABANDONED_JOB_BOUND_S = 45 + MAINTENANCE_EVERY_S


def lost_run_bound(cluster: Cluster) -> float:
    return float(cluster.env["RUN_STALE_AFTER_S"]) + MAINTENANCE_EVERY_S


def worker_running(cluster: Cluster, job_id: str, timeout: float = 30) -> str:
    """The name ("a", "b") of the cluster worker whose current job is `job_id`."""
    from redis import Redis
    from rq import Worker

    connection = Redis.from_url(cluster.redis.url())
    by_pid = {process.pid: name for name, process in cluster.workers.items()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in Worker.all(connection=connection):
            if worker.get_current_job_id() == job_id and worker.pid in by_pid:
                return by_pid[worker.pid]
        time.sleep(0.1)
    raise AssertionError(f"no cluster worker is running {job_id}")


def heal_ready_task(c, site, **config) -> str:
    """A self-healing contact-form task that has succeeded once on version 1 of the site (so the
    heal has the element's fingerprint)."""
    task = c.call("task_make", name=f"heal-ready {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                  params={"base_url": site.url, "name": "Ada"}, self_healing=True, config=config)
    [first] = c.call("runs_enqueue", task)
    done = c.wait_for("the version-1 run", lambda: (r := c.call("run_get", first))["status"] in FINISHED and r, 90)
    assert done["status"] == "succeeded", done
    return task


def rss_mb(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:  # exited meanwhile
        return 0.0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> set[int]:
    """Every process whose parent chain leads to `pid`."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; the fields after the last ")" do not.
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return ""

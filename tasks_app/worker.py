"""The RQ worker class Anchor runs: no fork per job (the warm browser survives), plus fault repair."""

from __future__ import annotations

import logging
import threading
import time

import redis
from rq import worker_registration
from rq.worker import SimpleWorker

from tasks_app.runner.browser import hide_from_same_uid

logger = logging.getLogger(__name__)
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class AnchorWorker(SimpleWorker):
    """SimpleWorker runs jobs in its own process, so the Chromium pool stays warm between runs.

    Task code never runs here: the runner executes it in a sandboxed child process. Every
    MAINTENANCE_EVERY_S the worker also repairs what crashed workers and Redis restarts leave behind.
    A Redis restart does not stop the worker: it waits for Redis, registers again and carries on.
    """

    MAINTENANCE_EVERY_S = 15
    REDIS_WAIT_MAX_S = 15
    # How often a running job tells Redis it is alive; it counts as abandoned JOB_HEARTBEAT_TTL_S after the last.
    JOB_HEARTBEAT_EVERY_S = 10
    JOB_HEARTBEAT_TTL_S = 45

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("maintenance_interval", self.MAINTENANCE_EVERY_S)
        super().__init__(*args, **kwargs)
        hide_from_same_uid()
        # The blocking dequeue waits worker_ttl - 15 s; with this TTL it returns every MAINTENANCE_EVERY_S,
        # so an idle worker runs maintenance on time (a lost run is failed within RUN_STALE_AFTER_S + 15 s).
        self.worker_ttl = min(self.worker_ttl, self.MAINTENANCE_EVERY_S + 15)

    def run_maintenance_tasks(self):
        try:
            super().run_maintenance_tasks()
            self._register_again()
        except REDIS_ERRORS as exc:  # RQ's own registry cleaning needs Redis; ours below mostly does not
            logger.warning("RQ maintenance skipped, Redis unavailable: %s", exc)
        from django.db import close_old_connections

        from tasks_app.maintenance import maintenance_tick

        try:
            _close_broken_connections()
            repaired = maintenance_tick()
            if any(repaired.values()):
                logger.info("maintenance: %s", repaired)
        except Exception as exc:  # the database may be away for a while; try again next tick
            logger.warning("maintenance skipped: %s", exc)
        finally:
            close_old_connections()

    # -- Redis restarts ------------------------------------------------------------------------------
    # RQ's work loop survives Redis going away only while it waits for a job; a Redis error anywhere else
    # (storing a finished job's result, the heartbeat between jobs) makes it quit. Anchor's jobs keep their
    # outcome in the database and maintenance re-enqueues what a restart lost, so waiting is safe.

    # -- a worker that dies in the middle of a job ----------------------------------------------------
    # SimpleWorker marks a job as started for its whole timeout (600 s) plus 60 s and never renews the mark:
    # a heal's generate job whose worker was SIGKILLed looked alive for 11 minutes, and maintenance left
    # its heal open all that while (a job still running is not resumed). Renewed every few seconds with a
    # short TTL instead, as RQ's forking Worker does, a dead worker's job is abandoned within
    # JOB_HEARTBEAT_TTL_S, and maintenance resumes its heal or generation at its next pass.

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        return self.JOB_HEARTBEAT_TTL_S

    def perform_job(self, job, queue, execution) -> bool:
        stop = threading.Event()
        beating = threading.Thread(target=self._beat_for, args=(job, execution, stop), daemon=True,
                                   name=f"job-heartbeat-{job.id}")
        beating.start()
        try:
            return super().perform_job(job, queue, execution)
        finally:
            stop.set()
            beating.join(timeout=5)

    def _beat_for(self, job, execution, stop: threading.Event) -> None:
        while not stop.wait(self.JOB_HEARTBEAT_EVERY_S):
            try:
                self.maintain_heartbeats(job, execution)
            except Exception as exc:  # Redis away for a moment: the next beat, or the job's end, catches up
                logger.warning("heartbeat of job %s missed: %s", job.id, exc)

    def execute_job(self, job, queue):
        _close_broken_connections()
        try:
            super().execute_job(job, queue)
        except REDIS_ERRORS as exc:
            logger.warning("Redis unavailable while finishing job %s (its outcome is in the database): %s", job.id, exc)
            self._wait_for_redis()
        finally:
            _close_broken_connections()

    def heartbeat(self, *args, **kwargs):
        return self._or_wait_for_redis(super().heartbeat, *args, **kwargs)

    def check_for_suspension(self, burst: bool):
        return self._or_wait_for_redis(super().check_for_suspension, burst)

    def _or_wait_for_redis(self, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except REDIS_ERRORS as exc:
            logger.warning("Redis unavailable: %s", exc)
            self._wait_for_redis()
            return None

    def _wait_for_redis(self) -> None:
        delay = 1.0
        while not self._stop_requested:
            try:
                self.connection.ping()
            except REDIS_ERRORS:
                time.sleep(delay)
                delay = min(delay * 2, self.REDIS_WAIT_MAX_S)
                continue
            self._register_again()
            return

    def _register_again(self) -> None:
        """A Redis restart without persistence forgets every worker; be visible again (rq info, django-rq)."""
        try:
            if self.connection.sismember(worker_registration.REDIS_WORKER_KEYS, self.key):
                return
            with self.connection.pipeline() as pipeline:
                pipeline.hset(self.key, mapping=self.serialize())
                worker_registration.register(self, pipeline)
                pipeline.expire(self.key, self.worker_ttl + 60)
                pipeline.execute()
            logger.info("Redis is back; worker %s registered again", self.name)
        except REDIS_ERRORS as exc:
            logger.warning("could not register again yet: %s", exc)


def _close_broken_connections() -> None:
    """As Django does around each request: drop database connections that an outage broke (or that are
    too old), so the next job opens a fresh one instead of failing on a dead one long after the database
    is back. Connections inside a transaction (tests running jobs in-process) are left alone."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()

"""The RQ worker class Anchor runs: no fork per job (the warm browser survives), plus fault repair."""

from __future__ import annotations

import logging

from rq.worker import SimpleWorker

logger = logging.getLogger(__name__)


class AnchorWorker(SimpleWorker):
    """SimpleWorker runs jobs in its own process, so the Chromium pool stays warm between runs.

    Task code never runs here: the runner executes it in a sandboxed child process. Every
    MAINTENANCE_EVERY_S the worker also repairs what crashed workers and Redis restarts leave behind.
    """

    MAINTENANCE_EVERY_S = 15

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("maintenance_interval", self.MAINTENANCE_EVERY_S)
        super().__init__(*args, **kwargs)
        # A short TTL makes the blocking dequeue return often enough for maintenance to run while idle.
        self.worker_ttl = min(self.worker_ttl, 35)

    def run_maintenance_tasks(self):
        super().run_maintenance_tasks()
        from django.db import close_old_connections

        from tasks_app.maintenance import maintenance_tick

        try:
            repaired = maintenance_tick()
            if any(repaired.values()):
                logger.info("maintenance: %s", repaired)
        except Exception as exc:  # the database may be away for a while; try again next tick
            logger.warning("maintenance skipped: %s", exc)
        finally:
            close_old_connections()

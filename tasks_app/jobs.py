"""RQ jobs for runs. Thin: fetch by id, call the execution service, safe to run twice."""

from __future__ import annotations

import logging

from tasks_app import execution

logger = logging.getLogger(__name__)


def run_task(run_id: str) -> str:
    run = execution.run_claim(run_id)
    if run is None:
        return "skipped: not queued (already claimed or finished)"
    try:
        result = execution.run_execute(run, browser=execution.browser_pool())
    except Exception as exc:  # the runner itself broke (it already retried on a fresh browser): end the run clearly
        logger.exception("runner failed for %s", run_id)
        execution.run_fail(run, f"the runner failed: {type(exc).__name__}: {exc}", error_type="runner_error")
        return "failed"
    return execution.run_finish_retrying(run, result).status

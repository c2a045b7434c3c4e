"""What Redis still knows of an RQ job: the recovery passes use it to tell a lost job from a waiting one."""

from __future__ import annotations

from rq.job import Job, JobStatus

# A job in one of these states will still run (or is running): queueing it again would run it twice.
LIVE_JOB_STATES = frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED})


def job_and_status(job_id: str, connection) -> tuple[Job | None, JobStatus | None]:
    """The RQ job and its status, or (None, None) when Redis no longer has it."""
    try:
        job = Job.fetch(job_id, connection=connection)
        return job, job.get_status()
    except Exception:  # NoSuchJobError, or a job hash that Redis lost
        return None, None


def job_is_live(job_id: str, connection) -> bool:
    return job_and_status(job_id, connection)[1] in LIVE_JOB_STATES

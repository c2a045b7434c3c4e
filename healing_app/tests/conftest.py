"""Fixtures for healing tests that go end to end: real Redis queues, a real worker, real Chromium."""

from __future__ import annotations

import django_rq
import pytest

QUEUES = ("runs", "healing", "webhooks")


@pytest.fixture
def drain(queues):
    """Process every queued job (runs, heals, validations, webhooks) with the product's worker class, in-process."""
    from tasks_app.worker import AnchorWorker

    def work() -> None:
        worker = AnchorWorker([django_rq.get_queue(name) for name in QUEUES], connection=queues)
        worker.work(burst=True, with_scheduler=False)

    return work

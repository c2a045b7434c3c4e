"""Fixtures for healing tests: real Redis queues and worker for end-to-end tests, and a public-looking webhook
host for tests that save endpoints without sending anything."""

from __future__ import annotations

import ipaddress

import django_rq
import pytest

# Webhook tests save endpoints on this host: the SSRF guard sees a public address, and nothing is ever sent.
PUBLIC_HOST = "hooks.example.test"
PUBLIC_IP = "93.184.215.14"


@pytest.fixture
def public_webhook_host(monkeypatch, settings):
    """PUBLIC_HOST resolves to PUBLIC_IP (other names as usual), webhook jobs are recorded instead of queued
    (the fixture's value, a list of their arguments), and passwords hash fast."""
    from healing_app import ssrf, webhooks

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    real = ssrf.resolve
    monkeypatch.setattr(
        ssrf, "resolve", lambda host, port: [ipaddress.ip_address(PUBLIC_IP)] if host == PUBLIC_HOST else real(host, port)
    )
    jobs: list = []

    class Recording:
        def enqueue(self, func, *args, **kwargs):
            jobs.append(args)

        def enqueue_in(self, delay, func, *args, **kwargs):
            jobs.append(args)

    monkeypatch.setattr(webhooks, "_queue", Recording)
    return jobs

QUEUES = ("runs", "healing", "webhooks")


@pytest.fixture
def drain(queues):
    """Process every queued job (runs, heals, validations, webhooks) with the product's worker class, in-process."""
    from tasks_app.worker import AnchorWorker

    def work() -> None:
        worker = AnchorWorker([django_rq.get_queue(name) for name in QUEUES], connection=queues)
        worker.work(burst=True, with_scheduler=False)

    return work

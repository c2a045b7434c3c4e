"""The real RQ side of webhooks: jobs on Redis, a real worker, scheduled retries, and recovery of lost work.

Each test uses a throwaway queue on the tests' Redis, so no worker listening on `webhooks` sees its jobs.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import django_rq
import pytest
from django.db import connection
from django.utils import timezone
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry
from standardwebhooks import Webhook

from healing_app import webhooks
from healing_app.models import WebhookDelivery
from healing_app.tests.test_webhooks_receiver import Receiver, Reply
from healing_app.webhook_services import webhook_endpoint_create

Status = WebhookDelivery.Status


@pytest.fixture
def scratch_queue(monkeypatch):
    redis = django_rq.get_queue("webhooks").connection
    queue = Queue(f"test-webhooks-{uuid.uuid4().hex}", connection=redis)
    monkeypatch.setattr(webhooks, "_queue", lambda: queue)
    yield queue
    registry = ScheduledJobRegistry(queue=queue)
    for job_id in {*queue.get_job_ids(), *registry.get_job_ids()}:
        job = queue.fetch_job(job_id)
        if job is not None:
            job.delete()
    queue.delete(delete_jobs=True)


@pytest.fixture
def receiver(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    with Receiver() as running:
        yield running


def test_deliveries_go_to_the_webhooks_queue():
    assert webhooks._queue().name == "webhooks"


def test_a_delivery_runs_through_a_real_rq_worker_and_its_retry_is_scheduled_in_redis(
    db, receiver, scratch_queue, django_capture_on_commit_callbacks
):
    receiver.reply(Reply(status=500))
    _, secret = webhook_endpoint_create(actor=None, url=receiver.url())
    with django_capture_on_commit_callbacks(execute=True):
        [delivery] = webhooks.webhooks_fan_out(event_type="run.failed", task_id=None, data={"run": "run_1"})
    [job] = scratch_queue.get_jobs()
    assert (job.id, job.func_name, job.args) == (
        webhooks.delivery_job_id(delivery.pk), "healing_app.webhooks.webhook_deliver", (delivery.pk,)
    )

    # The worker runs in this process and thread, so it sees the test's uncommitted rows; the job's own
    # on_commit callbacks are captured and run here.
    with django_capture_on_commit_callbacks(execute=True):
        SimpleWorker([scratch_queue], connection=scratch_queue.connection).work(burst=True)
    assert connection.in_atomic_block

    Webhook(secret).verify(receiver.requests[0].body, receiver.requests[0].headers)
    retry = WebhookDelivery.objects.get(attempt=2)
    registry = ScheduledJobRegistry(queue=scratch_queue)
    assert registry.get_job_ids() == [webhooks.delivery_job_id(retry.pk)]
    due_in = registry.get_scheduled_time(webhooks.delivery_job_id(retry.pk)) - timezone.now()
    assert timedelta(seconds=3) <= due_in <= timedelta(seconds=7)


def _overdue(endpoint, **fields) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        endpoint=endpoint, message_id=f"msg_{uuid.uuid4().hex[:8]}", event_type="run.failed", payload={"type": "run.failed"},
        next_attempt_at=timezone.now() - timedelta(minutes=5), **fields,
    )


def test_an_overdue_attempt_whose_job_was_lost_is_queued_again(db, receiver, scratch_queue):
    endpoint, _ = webhook_endpoint_create(actor=None, url=receiver.url())
    lost = _overdue(endpoint)

    assert webhooks.webhooks_recover() == {"webhooks_requeued": 1, "webhooks_unstuck": 0}
    assert scratch_queue.get_job_ids() == [webhooks.delivery_job_id(lost.pk)]
    assert webhooks.webhooks_recover()["webhooks_requeued"] == 0  # its job exists now


def test_an_attempt_whose_job_is_still_queued_or_scheduled_is_left_alone(db, receiver, scratch_queue, django_capture_on_commit_callbacks):
    endpoint, _ = webhook_endpoint_create(actor=None, url=receiver.url())
    queued, scheduled = _overdue(endpoint), _overdue(endpoint)
    with django_capture_on_commit_callbacks(execute=True):
        webhooks.delivery_enqueue(delivery=queued)
        webhooks.delivery_enqueue(delivery=scheduled, delay=timedelta(hours=1))
    assert webhooks.webhooks_recover()["webhooks_requeued"] == 0


def test_an_attempt_stuck_sending_after_its_worker_died_is_failed_and_retried(
    db, receiver, scratch_queue, django_capture_on_commit_callbacks
):
    endpoint, _ = webhook_endpoint_create(actor=None, url=receiver.url())
    stuck = _overdue(endpoint, status=Status.SENDING, sent_at=timezone.now() - timedelta(hours=1))
    fresh = _overdue(endpoint, status=Status.SENDING, sent_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        assert webhooks.webhooks_recover()["webhooks_unstuck"] == 1

    stuck.refresh_from_db()
    assert stuck.status == Status.FAILED and "worker stopped" in stuck.error
    retry = WebhookDelivery.objects.get(message_id=stuck.message_id, attempt=2)
    assert retry.trigger == WebhookDelivery.Trigger.RETRY
    assert ScheduledJobRegistry(queue=scratch_queue).get_job_ids() == [webhooks.delivery_job_id(retry.pk)]
    fresh.refresh_from_db()
    assert fresh.status == Status.SENDING  # its worker may still be at it
    assert receiver.requests == []


def test_a_slow_worker_finishing_after_recovery_does_not_schedule_a_second_retry(
    db, receiver, scratch_queue, monkeypatch, django_capture_on_commit_callbacks
):
    endpoint, _ = webhook_endpoint_create(actor=None, url=receiver.url())
    slow = _overdue(endpoint)
    real_attempt = webhooks._attempt

    def attempt_outlived_by_recovery(**kwargs):
        outcome = real_attempt(**kwargs)
        WebhookDelivery.objects.filter(pk=slow.pk).update(sent_at=timezone.now() - timedelta(hours=1))
        with django_capture_on_commit_callbacks(execute=True):
            webhooks.webhooks_recover()  # meanwhile, maintenance gave the attempt up and scheduled a retry
        return outcome

    monkeypatch.setattr(webhooks, "_attempt", attempt_outlived_by_recovery)
    receiver.reply(Reply(status=500))
    with django_capture_on_commit_callbacks(execute=True):
        webhooks.webhook_deliver(slow.pk)

    assert WebhookDelivery.objects.filter(message_id=slow.message_id).count() == 2  # the attempt and one retry

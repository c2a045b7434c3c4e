"""Delivery: fan-out, signing, retries, disabling, idempotent jobs and the SSRF guard at send time.

A real HTTP receiver on 127.0.0.1 answers; private addresses are allowed only where a test says so. Jobs are
run by calling them; what the code hands to RQ is recorded by a stand-in queue (the RQ test in
test_webhooks_services.py checks the real one).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from healing_app import ssrf, webhooks
from healing_app.models import WebhookDelivery, WebhookEndpoint
from healing_app.tests.test_webhooks_receiver import Receiver, Reply
from healing_app.webhook_services import (
    webhook_endpoint_create,
    webhook_redeliver,
    webhook_secret_rotate,
    webhook_send_test,
)
from tasks_app.models import AuditLog, Task

Status = WebhookDelivery.Status
EVENT_DATA = {"event": "heal_x", "task": "task_x", "status": "deployed", "new_version": 2}


class RecordingQueue:
    """Stands in for the `webhooks` RQ queue: remembers what would run, and when."""

    def __init__(self) -> None:
        self.jobs: list[tuple[object, tuple, timedelta | None]] = []

    def enqueue(self, func, *args, **kwargs):
        self.jobs.append((func, args, None))

    def enqueue_in(self, delay, func, *args, **kwargs):
        self.jobs.append((func, args, delay))


@pytest.fixture
def queue(monkeypatch):
    recording = RecordingQueue()
    monkeypatch.setattr(webhooks, "_queue", lambda: recording)
    return recording


@pytest.fixture
def receiver(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True  # the receiver is on loopback; only these tests allow that
    settings.WEBHOOK_TIMEOUT_S = 1.0
    with Receiver() as running:
        yield running


@pytest.fixture
def run_jobs(queue, django_capture_on_commit_callbacks):
    """Run queued jobs in order, as a worker would (delays are not waited for); returns how many ran."""

    def run(limit: int = 1) -> int:
        ran = 0
        while queue.jobs and ran < limit:
            func, args, _delay = queue.jobs.pop(0)
            with django_capture_on_commit_callbacks(execute=True):
                func(*args)
            ran += 1
        return ran

    return run


@pytest.fixture
def fan_out(queue, django_capture_on_commit_callbacks):
    def send(event_type: str = "healing.deployed", task_id: str | None = "task_x", data: dict | None = None):
        with django_capture_on_commit_callbacks(execute=True):
            return webhooks.webhooks_fan_out(event_type=event_type, task_id=task_id, data=data or EVENT_DATA)

    return send


def endpoint_for(url: str, **kwargs) -> tuple[WebhookEndpoint, str]:
    return webhook_endpoint_create(actor=None, url=url, **kwargs)


def verify(secret: str, request) -> dict:
    return Webhook(secret).verify(request.body, request.headers)


# -- delivering and signing --------------------------------------------------------------------------------


def test_an_events_deliveries_are_recorded_with_the_change_and_queued_once_it_commits(db, receiver, queue):
    """An outbox: a worker that dies right after committing a change cannot lose its webhooks (recovery queues
    pending rows again), and a change rolled back sends none."""
    from django.db import transaction

    from healing_app.notify import notify

    endpoint_for(receiver.url())
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(event_type="healing.deployed", task_id="task_x", data=EVENT_DATA)
        raise RuntimeError("the change failed")
    assert not WebhookDelivery.objects.exists()

    with transaction.atomic():
        notify(event_type="healing.deployed", task_id="task_x", data=EVENT_DATA)
        assert WebhookDelivery.objects.filter(status=Status.PENDING).count() == 1  # in the change's transaction
        assert queue.jobs == []  # Redis only hears of it after the commit


def test_an_event_reaches_the_receiver_signed_and_verifies_with_standardwebhooks(db, receiver, fan_out, queue, run_jobs):
    _, secret = endpoint_for(receiver.url())
    [delivery] = fan_out()
    assert queue.jobs == [(webhooks.webhook_deliver, (delivery.pk,), None)]

    run_jobs()

    [request] = receiver.requests
    body = verify(secret, request)
    assert body["type"] == "healing.deployed"
    assert body["data"] == EVENT_DATA
    assert body["timestamp"]
    assert request.headers["webhook-id"] == delivery.message_id
    assert request.headers["content-type"] == "application/json"
    delivery.refresh_from_db()
    assert delivery.status == Status.SUCCEEDED
    assert (delivery.response_code, delivery.response_excerpt) == (200, "ok")
    assert delivery.duration_ms is not None and delivery.sent_at is not None


def test_a_signature_made_with_another_secret_does_not_verify(db, receiver, fan_out, run_jobs):
    endpoint_for(receiver.url())
    fan_out()
    run_jobs()
    with pytest.raises(WebhookVerificationError):
        verify(webhooks.secret_generate(), receiver.requests[0])


def test_fan_out_reaches_only_enabled_endpoints_that_want_the_event_type_and_task(db, receiver, fan_out):
    task = Task.objects.create(name="contact form")
    everything, _ = endpoint_for(receiver.url("/all"))
    wanted, _ = endpoint_for(receiver.url("/deployed"), event_types=["healing.deployed"])
    for_task, _ = endpoint_for(receiver.url("/task"), task=task)
    endpoint_for(receiver.url("/failed"), event_types=["healing.failed"])
    endpoint_for(receiver.url("/other-task"), task=Task.objects.create(name="other"))
    disabled, _ = endpoint_for(receiver.url("/disabled"))
    WebhookEndpoint.objects.filter(pk=disabled.pk).update(enabled=False)

    deliveries = fan_out(task_id=task.pk)

    assert {d.endpoint_id for d in deliveries} == {everything.pk, wanted.pk, for_task.pk}
    assert len({d.message_id for d in deliveries}) == 1  # one event, one webhook-id


def test_broadcast_only_kinds_are_not_sent_as_webhooks(db, receiver, fan_out, queue):
    endpoint_for(receiver.url())
    assert fan_out(event_type="run.queued") == []
    assert fan_out(event_type="healing.validating") == []
    assert queue.jobs == []


def test_a_message_carries_the_event_time_and_each_attempt_its_own_signing_time(db, receiver, fan_out, run_jobs):
    endpoint_for(receiver.url())
    receiver.reply(Reply(status=500))
    fan_out()
    run_jobs(limit=2)
    first, second = receiver.requests
    assert first.body == second.body  # same bytes every attempt
    assert abs(int(first.headers["webhook-timestamp"]) - int(timezone.now().timestamp())) <= 5


# -- retries ----------------------------------------------------------------------------------------------


def test_a_500_is_retried_after_about_five_seconds_with_the_same_webhook_id(db, receiver, fan_out, queue, run_jobs):
    _, secret = endpoint_for(receiver.url())
    receiver.reply(Reply(status=500, body=b"boom"))
    [first] = fan_out()

    run_jobs()

    first.refresh_from_db()
    assert (first.status, first.response_code, first.response_excerpt) == (Status.FAILED, 500, "boom")
    [(func, (retry_id,), delay)] = queue.jobs
    assert func is webhooks.webhook_deliver
    assert timedelta(seconds=4) <= delay <= timedelta(seconds=6)
    retry = WebhookDelivery.objects.get(pk=retry_id)
    assert (retry.attempt, retry.trigger, retry.status) == (2, WebhookDelivery.Trigger.RETRY, Status.PENDING)

    run_jobs()

    retry.refresh_from_db()
    assert retry.status == Status.SUCCEEDED
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids == [first.message_id, first.message_id]
    for request in receiver.requests:
        verify(secret, request)


def test_a_timeout_is_retried_with_the_same_webhook_id(db, settings, receiver, fan_out, queue, run_jobs):
    settings.WEBHOOK_TIMEOUT_S = 0.3
    endpoint_for(receiver.url())
    receiver.reply(Reply(delay=1.5))
    [first] = fan_out()

    run_jobs()

    first.refresh_from_db()
    assert first.status == Status.FAILED
    assert first.response_code is None
    assert "timed out" in first.error
    run_jobs()
    assert WebhookDelivery.objects.get(attempt=2).status == Status.SUCCEEDED
    assert [r.headers["webhook-id"] for r in receiver.requests] == [first.message_id] * 2


def test_a_refused_connection_is_retried(db, settings, fan_out, queue, run_jobs):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens here once the socket closes
    endpoint_for(f"http://127.0.0.1:{port}/hook")
    [first] = fan_out()
    run_jobs()
    first.refresh_from_db()
    assert first.status == Status.FAILED
    assert "ConnectError" in first.error
    assert len(queue.jobs) == 1


def test_retries_follow_the_bounded_schedule_and_then_stop(db, receiver, fan_out, queue, run_jobs):
    endpoint_for(receiver.url())
    receiver.reply(*[Reply(status=503)] * 10)
    fan_out()
    delays = []
    while queue.jobs:
        delays.append(queue.jobs[0][2])
        run_jobs()
    assert len(receiver.requests) == 1 + len(webhooks.RETRY_DELAYS)
    assert WebhookDelivery.objects.count() == 7
    for delay, planned in zip(delays[1:], webhooks.RETRY_DELAYS, strict=True):
        assert planned * (1 - webhooks.JITTER) <= delay <= planned * (1 + webhooks.JITTER)
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_retry_delays_are_jittered():
    delays = {webhooks.retry_delay(1) for _ in range(20)}
    assert len(delays) > 1


# -- disabling ----------------------------------------------------------------------------------------------


def test_a_410_disables_the_endpoint_without_retrying(db, receiver, fan_out, queue, run_jobs):
    endpoint, _ = endpoint_for(receiver.url())
    receiver.reply(Reply(status=410, body=b"gone"))
    fan_out()

    run_jobs()

    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "410" in endpoint.disabled_reason
    assert endpoint.disabled_at is not None
    assert queue.jobs == []
    log = AuditLog.objects.get(action="webhook.disable", object_id=endpoint.pk)
    assert log.actor_label == "system"
    assert fan_out() == []  # no more events for it


def test_an_endpoint_failing_for_over_a_day_is_disabled_with_a_reason(db, receiver, fan_out, queue, run_jobs):
    endpoint, _ = endpoint_for(receiver.url())
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        consecutive_failures=webhooks.DISABLE_AFTER_FAILURES - 1, failing_since=timezone.now() - timedelta(hours=25)
    )
    receiver.reply(Reply(status=500))
    fan_out()

    run_jobs()

    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert endpoint.consecutive_failures == webhooks.DISABLE_AFTER_FAILURES
    assert "in a row failed" in endpoint.disabled_reason and "HTTP 500" in endpoint.disabled_reason
    assert queue.jobs == []


def test_a_short_burst_of_failures_does_not_disable_the_endpoint(db, receiver, fan_out, queue, run_jobs):
    endpoint, _ = endpoint_for(receiver.url())
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=40, failing_since=timezone.now() - timedelta(minutes=10))
    receiver.reply(Reply(status=500))
    fan_out()
    run_jobs()
    endpoint.refresh_from_db()
    assert endpoint.enabled
    assert len(queue.jobs) == 1  # the retry


def test_a_success_resets_the_failure_count(db, receiver, fan_out, run_jobs):
    endpoint, _ = endpoint_for(receiver.url())
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=7, failing_since=timezone.now())
    fan_out()
    run_jobs()
    endpoint.refresh_from_db()
    assert (endpoint.consecutive_failures, endpoint.failing_since) == (0, None)


def test_waiting_retries_are_not_sent_once_the_endpoint_is_disabled(db, receiver, fan_out, queue, run_jobs):
    endpoint, _ = endpoint_for(receiver.url())
    receiver.reply(Reply(status=500))
    fan_out()
    run_jobs()
    webhooks.endpoint_disable(endpoint_id=endpoint.pk, reason="turned off by hand", actor=None)

    run_jobs()

    assert len(receiver.requests) == 1
    retry = WebhookDelivery.objects.get(attempt=2)
    assert retry.status == Status.CANCELLED


# -- idempotency ------------------------------------------------------------------------------------------


def test_a_job_that_runs_twice_sends_once(db, receiver, fan_out, queue, run_jobs):
    endpoint_for(receiver.url())
    [delivery] = fan_out()
    queue.jobs.append(queue.jobs[0])  # RQ retried the job, or it was enqueued twice

    run_jobs(limit=2)

    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.status == Status.SUCCEEDED


def test_a_failed_attempt_run_again_neither_resends_nor_schedules_a_second_retry(db, receiver, fan_out, queue, run_jobs):
    endpoint_for(receiver.url())
    receiver.reply(Reply(status=500))
    [delivery] = fan_out()
    run_jobs()
    webhooks.webhook_deliver(delivery.pk)
    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.count() == 2


def test_a_failure_recorded_without_its_retry_is_not_left_behind(
    db, receiver, fan_out, queue, run_jobs, monkeypatch, django_capture_on_commit_callbacks
):
    """The database goes away (or the worker dies) between recording a failed attempt and scheduling its retry:
    the attempt stays `sending`, which recovery retries, rather than `failed` with no retry, which nothing does."""
    from django.db import OperationalError

    endpoint_for(receiver.url())
    receiver.reply(Reply(status=500))
    [first] = fan_out()
    real_create = webhooks.delivery_create

    def database_gone(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(webhooks, "delivery_create", database_gone)
    with pytest.raises(OperationalError):
        run_jobs()
    first.refresh_from_db()
    assert first.status == Status.SENDING

    monkeypatch.setattr(webhooks, "delivery_create", real_create)
    WebhookDelivery.objects.filter(pk=first.pk).update(sent_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert webhooks.deliveries_fail_stuck() == 1
    retry = WebhookDelivery.objects.exclude(pk=first.pk).get()
    assert (retry.message_id, retry.attempt, retry.status) == (first.message_id, 2, Status.PENDING)


def test_an_attempt_already_claimed_by_another_worker_is_left_alone(db, receiver, fan_out, run_jobs):
    endpoint_for(receiver.url())
    [delivery] = fan_out()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=Status.SENDING)
    run_jobs()
    assert receiver.requests == []


def test_a_job_for_a_deleted_endpoint_does_nothing(db, receiver, fan_out, run_jobs):
    endpoint, _ = endpoint_for(receiver.url())
    fan_out()
    endpoint.delete()
    run_jobs()
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_same_attempt_at_once_send_once(receiver):
    endpoint, _ = endpoint_for(receiver.url())
    receiver.reply(Reply(delay=0.3))
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, message_id="msg_race", event_type="healing.deployed", payload={"type": "healing.deployed"}
    )
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker():
        from django.db import connection

        try:
            start.wait()
            webhooks.webhook_deliver(delivery.pk)
        except BaseException as exc:  # noqa: BLE001 -- surfaced below; a thread's exception is otherwise lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(receiver.requests) == 1


# -- secret rotation ----------------------------------------------------------------------------------------


def test_after_rotation_messages_carry_both_signatures_and_each_verifies(db, receiver, fan_out, run_jobs):
    endpoint, old = endpoint_for(receiver.url())
    new = webhook_secret_rotate(endpoint=endpoint, actor=None)
    fan_out()
    run_jobs()

    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert all(part.startswith("v1,") for part in request.headers["webhook-signature"].split(" "))
    assert verify(old, request)["type"] == "healing.deployed"
    assert verify(new, request)["type"] == "healing.deployed"
    for part in request.headers["webhook-signature"].split(" "):  # and each signature on its own
        headers = {**request.headers, "webhook-signature": part}
        assert any(_verifies(secret, request.body, headers) for secret in (old, new))


def _verifies(secret, body, headers) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def test_after_the_grace_period_only_the_new_secret_signs(db, receiver, fan_out, run_jobs):
    endpoint, old = endpoint_for(receiver.url())
    new = webhook_secret_rotate(endpoint=endpoint, actor=None)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    fan_out()
    run_jobs()
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    verify(new, request)
    with pytest.raises(WebhookVerificationError):
        verify(old, request)


def test_a_retry_after_rotation_is_signed_with_the_new_secret_too(db, receiver, fan_out, run_jobs):
    endpoint, _ = endpoint_for(receiver.url())
    receiver.reply(Reply(status=500))
    fan_out()
    run_jobs()
    new = webhook_secret_rotate(endpoint=endpoint, actor=None, grace=timedelta(0))
    run_jobs()
    verify(new, receiver.requests[1])
    assert receiver.requests[1].headers["webhook-id"] == receiver.requests[0].headers["webhook-id"]


# -- redelivery and test events ----------------------------------------------------------------------------------


def test_a_redelivery_sends_the_same_message_again_once_without_retries(
    db, receiver, fan_out, queue, run_jobs, django_capture_on_commit_callbacks
):
    _, secret = endpoint_for(receiver.url())
    [delivery] = fan_out()
    run_jobs()
    receiver.reply(Reply(status=500))
    with django_capture_on_commit_callbacks(execute=True):
        again = webhook_redeliver(delivery=delivery, actor=None)
    run_jobs()

    again.refresh_from_db()
    assert (again.attempt, again.trigger, again.status) == (2, WebhookDelivery.Trigger.REDELIVER, Status.FAILED)
    assert queue.jobs == []  # a person asked for one attempt; they see its result
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.message_id] * 2
    verify(secret, receiver.requests[1])


def test_a_successful_redelivery_cancels_the_waiting_retry(db, receiver, fan_out, queue, run_jobs, django_capture_on_commit_callbacks):
    endpoint_for(receiver.url())
    receiver.reply(Reply(status=500))
    [delivery] = fan_out()
    run_jobs()  # attempt 1 fails; attempt 2 waits
    with django_capture_on_commit_callbacks(execute=True):
        manual = webhook_redeliver(delivery=delivery, actor=None)
    queue.jobs.reverse()  # the redelivery runs before the retry is due
    run_jobs(limit=2)
    manual.refresh_from_db()
    assert manual.status == Status.SUCCEEDED
    assert WebhookDelivery.objects.get(attempt=2).status == Status.CANCELLED
    assert len(receiver.requests) == 2


def test_a_test_event_reaches_a_disabled_endpoint(db, receiver, queue, run_jobs, django_capture_on_commit_callbacks):
    endpoint, secret = endpoint_for(receiver.url())
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="the receiver answered 410 Gone")
    endpoint.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        webhook_send_test(endpoint=endpoint, actor=None)
    run_jobs()
    body = verify(secret, receiver.requests[0])
    assert body["type"] == "webhook.test"
    assert body["data"]["endpoint"] == endpoint.pk



def test_failed_tests_and_redeliveries_do_not_count_towards_disabling(
    db, receiver, fan_out, queue, run_jobs, django_capture_on_commit_callbacks
):
    endpoint, _ = endpoint_for(receiver.url())
    [delivery] = fan_out()
    run_jobs()
    almost = timezone.now() - timedelta(hours=25)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        consecutive_failures=webhooks.DISABLE_AFTER_FAILURES - 1, failing_since=almost
    )
    receiver.reply(Reply(status=500), Reply(status=500))
    endpoint.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        test = webhook_send_test(endpoint=endpoint, actor=None)
        again = webhook_redeliver(delivery=delivery, actor=None)
    assert run_jobs(limit=2) == 2

    test.refresh_from_db()
    again.refresh_from_db()
    assert (test.status, again.status) == (Status.FAILED, Status.FAILED)
    endpoint.refresh_from_db()
    assert endpoint.enabled
    assert (endpoint.consecutive_failures, endpoint.failing_since) == (webhooks.DISABLE_AFTER_FAILURES - 1, almost)
    assert queue.jobs == []

# -- the SSRF guard at send time --------------------------------------------------------------------------------


@pytest.fixture
def connections(monkeypatch):
    opened: list[str] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        opened.append(address[0])
        assert ipaddress.ip_address(address[0]).is_loopback, f"test tried to connect to {address[0]}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return opened


def saved_earlier(url: str) -> WebhookEndpoint:
    """An endpoint whose URL passed the save-time check back then (another policy, another DNS answer)."""
    endpoint = WebhookEndpoint(url=url)
    endpoint.set_secret(webhooks.secret_generate())
    endpoint.save()
    return endpoint


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:{port}/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "http://10.0.0.1/hook",
        "http://localhost:{port}/hook",
        "file:///etc/passwd",
    ],
)
def test_sending_to_a_forbidden_address_is_refused_before_connecting_and_not_retried(
    db, settings, receiver, connections, fan_out, queue, run_jobs, url
):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    saved_earlier(url.format(port=receiver.port))
    [delivery] = fan_out()

    run_jobs()

    delivery.refresh_from_db()
    assert delivery.status == Status.FAILED
    assert delivery.error.startswith("refused: ")
    assert connections == []
    assert receiver.requests == []
    assert queue.jobs == []


def test_a_name_that_now_resolves_to_loopback_is_refused_at_send_time(db, settings, monkeypatch, receiver, connections, fan_out, run_jobs):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])
    monkeypatch.setattr(ssrf, "resolve", lambda host, port: [ipaddress.ip_address(a) for a in next(answers)])
    endpoint_for(f"http://hooks.example.test:{receiver.port}/hook")  # public when saved
    [delivery] = fan_out()

    run_jobs()  # loopback when sent (DNS rebinding)

    delivery.refresh_from_db()
    assert "loopback" in delivery.error
    assert connections == []
    assert receiver.requests == []


def test_a_redirect_to_loopback_is_not_followed(db, receiver, connections, fan_out, run_jobs):
    receiver.reply(Reply(status=302, headers={"location": receiver.url("/internal-admin")}))
    endpoint_for(receiver.url())
    [delivery] = fan_out()

    run_jobs()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code) == (Status.FAILED, 302)
    assert "redirects are not followed" in delivery.error
    assert receiver.paths() == ["/hook"]

"""Standard Webhooks delivery: fan-out, the delivery job, signing, retries and disabling endpoints that fail.

Every attempt is a WebhookDelivery row, created before it is queued. The job claims its row with a
conditional UPDATE (pending → sending), so a job that RQ runs twice sends nothing the second time. All
attempts of one message share its `webhook-id`, which is the receiver's idempotency key.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import random
import secrets as pysecrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import django_rq
import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.db.models.functions import Coalesce
from django.utils import timezone
from standardwebhooks import Webhook

from healing_app import broadcast, ssrf
from healing_app.models import WebhookDelivery, WebhookEndpoint
from tasks_app.audit import SYSTEM, Actor, audit_log
from tasks_app.ids import new_id
from tasks_app.rq_jobs import job_is_live
from tasks_app.timestamps import timestamp_text

logger = logging.getLogger(__name__)

QUEUE = "webhooks"
TEST_EVENT_TYPE = "webhook.test"
# After attempt n fails, attempt n+1 is due RETRY_DELAYS[n-1] later (± JITTER): 7 attempts over about 18 hours.
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
)
# Spread retries so that endpoints recovering from an outage are not hit by every queued message at once.
JITTER = 0.2
# An endpoint is disabled after this many failed attempts in a row, once they span at least DISABLE_AFTER_FAILING_FOR:
# a receiver that is down for a few minutes during a burst of events must not lose its subscription.
DISABLE_AFTER_FAILURES = 15
DISABLE_AFTER_FAILING_FOR = timedelta(hours=24)
SECRET_GRACE = timedelta(hours=24)
EXCERPT_CHARS = 500
USER_AGENT = "Anchor-Webhooks/1"

Status = WebhookDelivery.Status
Trigger = WebhookDelivery.Trigger


def secret_generate() -> str:
    """A new signing secret in the Standard Webhooks format: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(pysecrets.token_bytes(32)).decode()


def message_payload(*, event_type: str, data: dict, at: datetime | None = None) -> dict:
    """The Standard Webhooks envelope; `data` made JSON-safe once, so every attempt sends the same bytes."""
    return {
        "type": event_type,
        "timestamp": timestamp_text(at),
        "data": json.loads(json.dumps(data, cls=DjangoJSONEncoder)),
    }


def webhooks_fan_out(*, event_type: str, task_id: str | None, data: dict) -> list[WebhookDelivery]:
    """Create the first attempt for every enabled endpoint that wants this event, and queue them after commit."""
    if event_type not in WebhookEndpoint.EVENT_TYPES:
        return []  # broadcast-only kinds (run.queued, healing.validating, ...) are not webhook events
    endpoints = [e for e in WebhookEndpoint.objects.filter(enabled=True) if e.wants(event_type, task_id)]
    if not endpoints:
        return []
    payload = message_payload(event_type=event_type, data=data)
    # One message, one id: an endpoint that subscribes twice can tell it is the same event.
    message_id = new_id("msg")
    with transaction.atomic():
        deliveries = [
            WebhookDelivery.objects.create(
                endpoint=endpoint,
                message_id=message_id,
                event_type=event_type,
                payload=payload,
                trigger=Trigger.EVENT,
                next_attempt_at=timezone.now(),
            )
            for endpoint in endpoints
        ]
        for delivery in deliveries:
            delivery_enqueue(delivery=delivery)
    return deliveries


def delivery_create(*, endpoint: WebhookEndpoint, message_id: str, event_type: str, payload: dict, trigger: str,
                    due: datetime | None = None) -> WebhookDelivery:
    """A new attempt row for a message, numbered after the message's last attempt to this endpoint."""
    for _ in range(5):
        last = WebhookDelivery.objects.filter(endpoint=endpoint, message_id=message_id).aggregate(n=Max("attempt"))["n"]
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    endpoint=endpoint,
                    message_id=message_id,
                    event_type=event_type,
                    payload=payload,
                    attempt=(last or 0) + 1,
                    trigger=trigger,
                    next_attempt_at=due or timezone.now(),
                )
        except IntegrityError:
            continue  # another attempt took that number in the meantime; take the next one
        transaction.on_commit(functools.partial(_announce, delivery), robust=True)
        return delivery
    raise RuntimeError(f"could not number a new attempt of {message_id} to {endpoint.pk}")


def delivery_enqueue(*, delivery: WebhookDelivery, delay: timedelta | None = None) -> None:
    """Queue the attempt once the current transaction commits (the job must find its row)."""
    delivery_id = delivery.pk

    def enqueue() -> None:
        options = {"job_id": delivery_job_id(delivery_id), "job_timeout": _job_timeout()}
        queue = _queue()
        if delay:
            queue.enqueue_in(delay, webhook_deliver, delivery_id, **options)
        else:
            queue.enqueue(webhook_deliver, delivery_id, **options)

    # robust: with Redis down, the change that caused the event must still go through; the row stays pending
    # and webhooks_recover() queues it again later.
    transaction.on_commit(enqueue, robust=True)


def delivery_job_id(delivery_id: int) -> str:
    # Derived from the row, so recovery can tell whether an attempt's job still exists.
    return f"webhook-delivery-{delivery_id}"


def _queue():
    return django_rq.get_queue(QUEUE)


def _job_timeout() -> int:
    # Room for DNS, connect and the read deadline, so RQ never kills a job in the middle of recording its result.
    return int(settings.WEBHOOK_TIMEOUT_S * 3) + 30


# -- the job ----------------------------------------------------------------------------------------------


def webhook_deliver(delivery_id: int) -> None:
    """RQ job: make one attempt. Safe to run twice."""
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None:
        return  # the endpoint was deleted since
    delivery_send(delivery=delivery)


def delivery_send(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Claim the attempt, send it signed, record the outcome, then schedule a retry or disable the endpoint."""
    endpoint = delivery.endpoint
    if delivery.is_automatic and not endpoint.enabled:
        WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.PENDING).update(
            status=Status.CANCELLED, error="not sent: the endpoint is disabled"
        )
        delivery.refresh_from_db()
        _announce(delivery)
        return delivery
    now = timezone.now()
    if not WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.PENDING).update(status=Status.SENDING, sent_at=now):
        delivery.refresh_from_db()
        return delivery  # another run of this job has it, or it was sent or cancelled already
    _announce(delivery)

    outcome = _attempt(delivery=delivery, endpoint=endpoint, at=now)
    # The outcome and what follows from it (the endpoint's failure count, the retry) land together: a worker
    # dying in between would leave a failed attempt with no retry, which no recovery looks for. Dying before
    # the commit leaves it `sending`, which deliveries_fail_stuck() retries.
    with transaction.atomic():
        recorded = WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
            status=Status.SUCCEEDED if outcome.ok else Status.FAILED,
            response_code=outcome.status_code,
            response_excerpt=outcome.excerpt[:EXCERPT_CHARS],
            duration_ms=outcome.duration_ms,
            error=outcome.error[:500],
        )
        delivery.refresh_from_db()
        if not recorded:
            return delivery  # recovery declared this attempt lost meanwhile and scheduled its retry
        if outcome.ok:
            _record_success(delivery)
        else:
            _record_failure(delivery, outcome)
    _announce(delivery)
    return delivery


def _announce(delivery: WebhookDelivery) -> None:
    """The endpoint's page shows its delivery log live: a receiver may take seconds to answer."""
    broadcast.publish(kind="webhook.delivery", task_id=None, data={"endpoint": delivery.endpoint_id, "delivery": delivery.pk})


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    duration_ms: int
    status_code: int | None = None
    excerpt: str = ""
    error: str = ""
    retry: bool = True  # worth trying again later
    gone: bool = False  # the receiver asked us to stop (410)


def _attempt(*, delivery: WebhookDelivery, endpoint: WebhookEndpoint, at: datetime) -> _Outcome:
    timeout = settings.WEBHOOK_TIMEOUT_S
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signature_headers(message_id=delivery.message_id, at=at, body=body, secrets=endpoint.signing_secrets(at=at)),
        }
        reply = ssrf.guarded_post(endpoint.url, content=body.encode(), headers=headers, timeout=timeout)
    except ssrf.UnsafeURL as exc:
        # A refusal is a policy decision about the address, not a hiccup; retrying would only be refused again.
        return _Outcome(ok=False, error=f"refused: {exc}", duration_ms=elapsed(), retry=False)
    except httpx.TimeoutException:
        return _Outcome(ok=False, error=f"timed out after {timeout:g}s", duration_ms=elapsed())
    except httpx.HTTPError as exc:
        return _Outcome(ok=False, error=f"{type(exc).__name__}: {exc}", duration_ms=elapsed())
    except Exception as exc:  # a bug here must still leave a recorded, retryable attempt, not a row stuck in "sending"
        logger.exception("webhook delivery %s failed unexpectedly", delivery.pk)
        return _Outcome(ok=False, error=f"internal error: {type(exc).__name__}", duration_ms=elapsed())

    excerpt = reply.body.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    code = reply.status_code
    if 200 <= code < 300:
        return _Outcome(ok=True, status_code=code, excerpt=excerpt, duration_ms=elapsed())
    if code == 410:
        return _Outcome(ok=False, status_code=code, excerpt=excerpt, error="410 Gone: the receiver unsubscribed",
                        duration_ms=elapsed(), retry=False, gone=True)
    error = f"HTTP {code}"
    if reply.location:
        error += f" redirect to {reply.location[:300]} (redirects are not followed)"
    return _Outcome(ok=False, status_code=code, excerpt=excerpt, error=error, duration_ms=elapsed())


def signature_headers(*, message_id: str, at: datetime, body: str, secrets: list[str]) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature; one `v1,…` signature per secret, space-separated."""
    at = at.astimezone(UTC)  # the library reads the datetime's wall clock as UTC
    signatures = [Webhook(secret).sign(msg_id=message_id, timestamp=at, data=body) for secret in secrets]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def _record_success(delivery: WebhookDelivery) -> None:
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(consecutive_failures=0, failing_since=None)
    # The receiver has the message now; a retry still waiting would only make it deduplicate.
    WebhookDelivery.objects.filter(
        endpoint_id=delivery.endpoint_id, message_id=delivery.message_id, status=Status.PENDING, trigger=Trigger.RETRY
    ).update(status=Status.CANCELLED, error=f"not sent: attempt {delivery.attempt} succeeded")


def _record_failure(delivery: WebhookDelivery, outcome: _Outcome) -> None:
    if outcome.gone:
        endpoint_disable(endpoint_id=delivery.endpoint_id, reason="the receiver answered 410 Gone", actor=SYSTEM)
        return
    if not delivery.is_automatic:
        # A test or a redelivery is someone checking the endpoint: its failure is shown to them and does not
        # push the endpoint towards being disabled (a person testing a broken receiver ten times would).
        return
    now = timezone.now()
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
        consecutive_failures=F("consecutive_failures") + 1, failing_since=Coalesce(F("failing_since"), now)
    )
    if WebhookEndpoint.objects.filter(
        pk=delivery.endpoint_id,
        enabled=True,
        consecutive_failures__gte=DISABLE_AFTER_FAILURES,
        failing_since__lte=now - DISABLE_AFTER_FAILING_FOR,
    ).exists():
        endpoint_disable(
            endpoint_id=delivery.endpoint_id,
            reason=f"{DISABLE_AFTER_FAILURES}+ deliveries in a row failed over more than "
            f"{int(DISABLE_AFTER_FAILING_FOR.total_seconds() // 3600)} hours (last: {outcome.error[:80]})",
            actor=SYSTEM,
        )
        return
    if outcome.retry:
        _retry_schedule(delivery)


def _retry_schedule(delivery: WebhookDelivery) -> WebhookDelivery | None:
    endpoint = WebhookEndpoint.objects.get(pk=delivery.endpoint_id)
    if not endpoint.enabled:
        return None
    made = WebhookDelivery.objects.filter(
        endpoint=endpoint, message_id=delivery.message_id, trigger__in=WebhookDelivery.AUTOMATIC
    ).count()
    if made > len(RETRY_DELAYS):
        return None  # the schedule is used up; the log shows the last failure
    delay = retry_delay(made)
    with transaction.atomic():
        retry = delivery_create(
            endpoint=endpoint,
            message_id=delivery.message_id,
            event_type=delivery.event_type,
            payload=delivery.payload,
            trigger=Trigger.RETRY,
            due=timezone.now() + delay,
        )
        delivery_enqueue(delivery=retry, delay=delay)
    return retry


def retry_delay(failed_attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """How long to wait after the `failed_attempts`-th automatic attempt failed (1-based), with jitter."""
    base = RETRY_DELAYS[failed_attempts - 1].total_seconds()
    factor = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=round(base * factor, 3))


def endpoint_disable(*, endpoint_id: str, reason: str, actor: Actor) -> bool:
    """Disable an enabled endpoint, saying why, and cancel its waiting retries. False if it was already disabled."""
    with transaction.atomic():
        changed = WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True).update(
            enabled=False, disabled_reason=reason[:200], disabled_at=timezone.now()
        )
        if not changed:
            return False
        WebhookDelivery.objects.filter(
            endpoint_id=endpoint_id, status=Status.PENDING, trigger__in=WebhookDelivery.AUTOMATIC
        ).update(status=Status.CANCELLED, error="not sent: the endpoint was disabled")
        endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
        audit_log(actor=actor, action="webhook.disable", obj=endpoint, data={"reason": endpoint.disabled_reason})
    if actor is SYSTEM:
        logger.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)
    return True


# -- recovery (called from the workers' maintenance tick) --------------------------------------------------------

REQUEUE_AFTER = timedelta(seconds=60)


def webhooks_recover() -> dict[str, int]:
    """Repair what a lost queue or a dead worker left behind. Conditional updates make concurrent runs safe."""
    return {"webhooks_requeued": deliveries_requeue_missing(), "webhooks_unstuck": deliveries_fail_stuck()}


def deliveries_requeue_missing() -> int:
    """A pending attempt, overdue, whose job is gone (Redis was down at enqueue, or lost its data) is queued again."""
    cutoff = timezone.now() - REQUEUE_AFTER
    queue = _queue()
    count = 0
    for delivery in WebhookDelivery.objects.filter(status=Status.PENDING, next_attempt_at__lt=cutoff)[:500]:
        if not job_is_live(delivery_job_id(delivery.pk), queue.connection):
            queue.enqueue(webhook_deliver, delivery.pk, job_id=delivery_job_id(delivery.pk), job_timeout=_job_timeout())
            count += 1
    if count:
        logger.warning("queued %d webhook attempt(s) again whose job was lost", count)
    return count


def deliveries_fail_stuck() -> int:
    """An attempt still `sending` long after its job's timeout lost its worker mid-send. It is marked failed and
    retried: the receiver may have got it, but it deduplicates on the webhook-id, and silence would lose the message."""
    cutoff = timezone.now() - timedelta(seconds=_job_timeout()) - REQUEUE_AFTER
    count = 0
    for delivery in WebhookDelivery.objects.filter(status=Status.SENDING, sent_at__lt=cutoff).select_related("endpoint")[:500]:
        error = "the worker stopped while sending; the receiver may or may not have it"
        with transaction.atomic():  # failed and its retry together, as in delivery_send
            if not WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(status=Status.FAILED, error=error):
                continue  # another worker's maintenance got there first
            delivery.refresh_from_db()
            _record_failure(delivery, _Outcome(ok=False, duration_ms=0, error=error))
        count += 1
    return count

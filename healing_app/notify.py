"""Telling the world about a change: webhook subscribers (their deliveries recorded with the change) and live
pages, once the change is committed."""

from __future__ import annotations

from django.db import transaction

from healing_app import broadcast


def notify(*, event_type: str, task_id: str | None, data: dict) -> None:
    """Record `event_type`'s webhook deliveries with the current transaction's change, then, once it commits,
    queue them and broadcast the change to live pages."""
    from healing_app.webhooks import webhooks_fan_out

    # The delivery rows commit or roll back with the change (an outbox): a worker dying right after the commit
    # cannot lose the messages, since recovery queues pending rows again. Only Redis's part waits for the commit.
    webhooks_fan_out(event_type=event_type, task_id=task_id, data=data)
    # robust: the change is committed; a failure to tell about it (Redis away) is logged, not raised into
    # the caller, which would otherwise retry a change that already happened.
    transaction.on_commit(lambda: broadcast.publish(kind=event_type, task_id=task_id, data=data), robust=True)

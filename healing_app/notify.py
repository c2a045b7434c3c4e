"""Telling the world about a change: live pages and webhook subscribers, after the change is committed."""

from __future__ import annotations

from django.db import transaction

from healing_app import broadcast


def notify(*, event_type: str, task_id: str | None, data: dict) -> None:
    """Broadcast `event_type` and queue its webhooks once the current transaction commits."""

    def send() -> None:
        broadcast.publish(kind=event_type, task_id=task_id, data=data)
        from healing_app.webhooks import webhooks_fan_out

        webhooks_fan_out(event_type=event_type, task_id=task_id, data=data)

    # robust: the change is committed; a failure to tell about it (Redis away) is logged, not raised into
    # the caller, which would otherwise retry a change that already happened.
    transaction.on_commit(send, robust=True)

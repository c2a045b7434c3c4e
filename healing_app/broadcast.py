"""The one place that sends to Channels groups. Live pages listen; workers and web processes publish."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# Group names: every open dashboard listens to EVENTS; detail pages join their own object's group.
EVENTS = "events"


def task_group(task_id: str) -> str:
    return f"task.{task_id}"


def object_group(object_id: str) -> str:
    return f"obj.{object_id}"


def versions_group(task_id: str) -> str:
    """Only a task's version changes: a heal's page shows whether its heal can still be approved, and that
    depends on the task's current version, without wanting every message of the task."""
    return f"versions.{task_id}"


def publish(*, kind: str, task_id: str | None, data: dict) -> None:
    """Send one change to every page that shows it. A broadcast failure never fails the caller's work."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "anchor.update", "kind": kind, "task_id": task_id, "data": data}
    # A run's steps are shown only on its task's and its own page, a webhook's deliveries only on its endpoint's
    # page: the shared feed (the queue, every open overview) would get them on every socket and show none of them.
    groups = [] if kind == "run.step" or kind.startswith("webhook.") else [EVENTS]
    if task_id:
        groups.append(task_group(task_id))
        if kind == "task.version_deployed":
            groups.append(versions_group(task_id))
    for key in ("event", "run", "endpoint"):
        if isinstance(data.get(key), str):
            groups.append(object_group(data[key]))
    try:
        send = async_to_sync(layer.group_send)
        for group in groups:
            send(group, message)
    except Exception as exc:  # Redis restarting must not lose the run or the heal; pages catch up on reload.
        logger.warning("live update %s not broadcast: %s", kind, exc)

"""Websocket consumers: join the groups a page shows and forward what broadcast.py sends."""

from __future__ import annotations

import logging

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.template.loader import render_to_string

from healing_app import broadcast

logger = logging.getLogger(__name__)


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        # A detail page (?task= or ?obj=) joins only its own groups; the queue joins the shared feed.
        # Joining both would deliver every message for the object twice, and run steps are rendered
        # per delivery, so each page gets each message once.
        self.groups_joined = []
        for key in ("task", "obj"):
            value = self._query_value(key)
            if value:
                group = broadcast.task_group(value) if key == "task" else broadcast.object_group(value)
                self.groups_joined.append(group)
        if not self.groups_joined:
            self.groups_joined = [broadcast.EVENTS]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def anchor_update(self, message):
        payload = {"kind": message["kind"], "task_id": message["task_id"], "data": message["data"]}
        if message["kind"] == "run.step":
            # A running task's steps are only in the database once the run ends, so the page cannot
            # re-fetch them; the step's HTML comes from the same template the task page uses instead.
            payload["html"] = _step_html(message["data"])
        await self.send_json(payload)

    def _query_value(self, key: str) -> str:
        from urllib.parse import parse_qs

        values = parse_qs(self.scope.get("query_string", b"").decode()).get(key, [])
        value = values[0] if values else ""
        # Ids are short and prefixed; anything else is ignored rather than used as a group name.
        return value if value.replace("_", "").isalnum() and len(value) < 60 else ""


def _step_html(data: dict) -> str:
    step = data.get("step")
    if not isinstance(step, dict):
        return ""
    try:
        return render_to_string("tasks/_step.html", {"step": step})
    except Exception as exc:  # noqa: BLE001 (a malformed step must not close every dashboard's socket)
        logger.warning("run.step not rendered: %s", exc)
        return ""

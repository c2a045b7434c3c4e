"""Websocket consumers: join the groups a page shows and forward what broadcast.py sends."""

from __future__ import annotations

import logging
import time
from importlib import import_module

from channels.auth import get_user
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string

from healing_app import broadcast
from tasks_app.ids import could_be_id

logger = logging.getLogger(__name__)

# How long a socket goes on delivering on its sign-in before it checks the session again (signed out,
# expired, password changed, user deactivated: the socket closes at the next message after that).
SESSION_RECHECK_S = 15


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        # A detail page (?task= or ?obj=, a heal's page also ?versions=<its task>) joins only its own groups;
        # the queue joins the shared feed. Joining both would deliver every message for the object twice, and
        # run steps are rendered per delivery, so each page gets each message once.
        groups = {"task": broadcast.task_group, "obj": broadcast.object_group, "versions": broadcast.versions_group}
        self.groups_joined = [group(value) for key, group in groups.items() if (value := self._query_value(key))]
        if not self.groups_joined:
            self.groups_joined = [broadcast.EVENTS]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.session_checked_at = time.monotonic()
        await self.accept()

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def anchor_update(self, message):
        if not await self._still_signed_in():
            await self.close(code=4401)
            return
        payload = {"kind": message["kind"], "task_id": message["task_id"], "data": message["data"]}
        if message["kind"] == "run.step":
            # A running task's steps are only in the database once the run ends, so the page cannot
            # re-fetch them; the step's HTML comes from the same template the task page uses instead.
            payload["html"] = _step_html(message["data"])
        await self.send_json(payload)

    async def _still_signed_in(self) -> bool:
        """The session the socket was opened with still signs its user in, read afresh from the session
        store (the scope's copy is cached), at most every SESSION_RECHECK_S."""
        if time.monotonic() - self.session_checked_at < SESSION_RECHECK_S:
            return True
        self.session_checked_at = time.monotonic()
        session_key = self.scope["session"].session_key
        fresh = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        user = await get_user({"session": fresh})
        return user.is_authenticated and user.pk == self.scope["user"].pk and user.is_active

    def _query_value(self, key: str) -> str:
        from urllib.parse import parse_qs

        values = parse_qs(self.scope.get("query_string", b"").decode(errors="replace")).get(key, [])
        value = values[0] if values else ""
        # Anything that cannot be an id (ASCII letters, digits, _ and -) is ignored rather than used as a group name.
        return value if could_be_id(value) else ""


def _step_html(data: dict) -> str:
    step = data.get("step")
    if not isinstance(step, dict):
        return ""
    try:
        return render_to_string("tasks/_step.html", {"step": step})
    except Exception as exc:  # noqa: BLE001 (a malformed step must not close every dashboard's socket)
        logger.warning("run.step not rendered: %s", exc)
        return ""

"""Websocket consumers: join the groups a page shows and forward what broadcast.py sends."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from healing_app import broadcast


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.groups_joined = [broadcast.EVENTS]
        for key in ("task", "obj"):
            value = self._query_value(key)
            if value:
                group = broadcast.task_group(value) if key == "task" else broadcast.object_group(value)
                self.groups_joined.append(group)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def anchor_update(self, message):
        await self.send_json({"kind": message["kind"], "task_id": message["task_id"], "data": message["data"]})

    def _query_value(self, key: str) -> str:
        from urllib.parse import parse_qs

        values = parse_qs(self.scope.get("query_string", b"").decode()).get(key, [])
        value = values[0] if values else ""
        # Ids are short and prefixed; anything else is ignored rather than used as a group name.
        return value if value.replace("_", "").isalnum() and len(value) < 60 else ""

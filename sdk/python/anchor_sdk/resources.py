"""The API's resources: tasks (with their versions, runs and healing history), runs, healing events, webhooks."""

from __future__ import annotations

import builtins
import time
from typing import Any
from urllib.parse import quote

from anchor_sdk._http import Transport
from anchor_sdk.models import (
    Diff,
    HealingEvent,
    Page,
    Run,
    Task,
    Version,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSecret,
)

_UNSET: Any = object()


def _seg(value: Any) -> str:
    """An id as one path segment. A missing one is the caller's mistake, said before any request (an empty
    segment would ask another endpoint, or answer a puzzling 404)."""
    if value is None or not str(value).strip():
        raise TypeError(f"an id is required, got {value!r}")
    return quote(str(value), safe="")


def _given(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not _UNSET}


class Tasks:
    def __init__(self, transport: Transport):
        self._t = transport

    def create(
        self,
        *,
        name: str,
        prompt: str = _UNSET,
        self_healing: bool = _UNSET,
        self_healing_config: dict[str, Any] | None = _UNSET,
        code: str = _UNSET,
        params: dict[str, Any] = _UNSET,
        secrets: dict[str, str] = _UNSET,
        healing_agent: str = _UNSET,
        schedule: str = _UNSET,
        monthly_budget_usd: float | None = _UNSET,
    ) -> Task:
        """Create a task. `self_healing_config` keys left out get their defaults; `secrets` are write-only."""
        body = _given(
            name=name,
            prompt=prompt,
            self_healing=self_healing,
            self_healing_config=self_healing_config,
            code=code,
            params=params,
            secrets=secrets,
            healing_agent=healing_agent,
            schedule=schedule,
            monthly_budget_usd=monthly_budget_usd,
        )
        return Task.from_dict(self._t.request("POST", "/tasks", json=body))

    def update(
        self,
        task_id: str,
        *,
        name: str = _UNSET,
        prompt: str = _UNSET,
        self_healing: bool = _UNSET,
        self_healing_config: dict[str, Any] = _UNSET,
        code: str = _UNSET,
        params: dict[str, Any] = _UNSET,
        secrets: dict[str, str] = _UNSET,
        healing_agent: str = _UNSET,
        schedule: str = _UNSET,
        monthly_budget_usd: float | None = _UNSET,
    ) -> Task:
        """Change only what is given. `self_healing_config` keys given replace those keys; the others stay.
        `schedule=""` and `monthly_budget_usd=None` remove them."""
        body = _given(
            name=name,
            prompt=prompt,
            self_healing=self_healing,
            self_healing_config=self_healing_config,
            code=code,
            params=params,
            secrets=secrets,
            healing_agent=healing_agent,
            schedule=schedule,
            monthly_budget_usd=monthly_budget_usd,
        )
        return Task.from_dict(self._t.request("PATCH", f"/tasks/{_seg(task_id)}", json=body))

    def get(self, task_id: str) -> Task:
        return Task.from_dict(self._t.request("GET", f"/tasks/{_seg(task_id)}"))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Task]:
        """One page of tasks, newest first. `page.auto_paging_iter()` walks all of them."""

        def fetch(next_cursor: str | None) -> Page[Task]:
            body = self._t.request("GET", "/tasks", params={"limit": limit, "cursor": next_cursor})
            return Page([Task.from_dict(d) for d in body["data"]], body.get("next_cursor"), fetch)

        return fetch(cursor)

    def delete(self, task_id: str) -> None:
        self._t.request("DELETE", f"/tasks/{_seg(task_id)}")

    def run(self, task_id: str, *, params: dict[str, Any] | None = None, version: int | None = None) -> Run:
        """Start a run (queued; it runs in the background). `anchor.runs.wait(run.id)` waits for it."""
        body = _given(params=params if params is not None else _UNSET, version=version if version is not None else _UNSET)
        return Run.from_dict(self._t.request("POST", f"/tasks/{_seg(task_id)}/runs", json=body))

    def list_runs(self, task_id: str, *, limit: int | None = None, cursor: str | None = None) -> Page[Run]:
        def fetch(next_cursor: str | None) -> Page[Run]:
            body = self._t.request("GET", f"/tasks/{_seg(task_id)}/runs", params={"limit": limit, "cursor": next_cursor})
            return Page([Run.from_dict(d) for d in body["data"]], body.get("next_cursor"), fetch)

        return fetch(cursor)

    def get_healing_events(self, task_id: str, *, limit: int | None = None) -> builtins.list[HealingEvent]:
        """The task's healing events, newest first: all of them, or the newest `limit`."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a whole number of events, 0 or more (got {limit!r})")
        events: list[HealingEvent] = []
        cursor: str | None = None
        while limit != 0:
            page_size = 100 if limit is None else max(1, min(100, limit - len(events)))
            body = self._t.request(
                "GET", f"/tasks/{_seg(task_id)}/healing-events", params={"limit": page_size, "cursor": cursor}
            )
            events.extend(HealingEvent.from_dict(d) for d in body["data"])
            cursor = body.get("next_cursor")
            if cursor is None or (limit is not None and len(events) >= limit):
                break
        return events

    def list_versions(self, task_id: str, *, limit: int | None = None, cursor: str | None = None) -> Page[Version]:
        def fetch(next_cursor: str | None) -> Page[Version]:
            body = self._t.request(
                "GET", f"/tasks/{_seg(task_id)}/versions", params={"limit": limit, "cursor": next_cursor}
            )
            return Page([Version.from_dict(d) for d in body["data"]], body.get("next_cursor"), fetch)

        return fetch(cursor)

    def get_version(self, task_id: str, number: int) -> Version:
        return Version.from_dict(self._t.request("GET", f"/tasks/{_seg(task_id)}/versions/{int(number)}"))

    def diff_versions(self, task_id: str, number: int, *, against: int | None = None) -> Diff:
        """What changed from `against` (default: the version's parent) to version `number`."""
        body = self._t.request(
            "GET", f"/tasks/{_seg(task_id)}/versions/{int(number)}/diff", params={"against": against}
        )
        return Diff.from_dict(body)

    def deploy_version(self, task_id: str, number: int, *, reason: str | None = None) -> Task:
        """Make version `number` current: a rollback, or a roll forward. `reason` goes to the audit log."""
        body = _given(reason=reason if reason is not None else _UNSET)
        path = f"/tasks/{_seg(task_id)}/versions/{int(number)}/deploy"
        return Task.from_dict(self._t.request("POST", path, json=body))


class Runs:
    def __init__(self, transport: Transport):
        self._t = transport

    def get(self, run_id: str) -> Run:
        return Run.from_dict(self._t.request("GET", f"/runs/{_seg(run_id)}"))

    def cancel(self, run_id: str) -> Run:
        """Cancel a run: a queued one ends at once, a running one within a few seconds (`error_type` "cancelled").
        `anchor.runs.wait(run.id)` waits for it to stop."""
        return Run.from_dict(self._t.request("POST", f"/runs/{_seg(run_id)}/cancel"))

    def wait(self, run_id: str, *, timeout: float = 300.0, poll_interval: float = 1.0) -> Run:
        """Poll until the run has finished (succeeded, healed or failed); TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(run_id)
            if run.finished:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} still {run.status} after {timeout:.0f}s")
            time.sleep(poll_interval)


class HealingEvents:
    def __init__(self, transport: Transport):
        self._t = transport

    def get(self, event_id: str) -> HealingEvent:
        """One event with everything the dashboard shows (root cause, agent trace, diff, cost, timeline)."""
        return HealingEvent.from_dict(self._t.request("GET", f"/healing-events/{_seg(event_id)}"))

    def list(
        self,
        task_id: str | None = None,
        *,
        status: str | None = None,
        error_type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[HealingEvent]:
        """Heals newest first: a task's (`task_id`), or every task's; `status="pending_review"` is the review queue."""
        params = {"task": task_id, "status": status, "error_type": error_type, "limit": limit}

        def fetch(next_cursor: str | None) -> Page[HealingEvent]:
            body = self._t.request("GET", "/healing-events", params={**params, "cursor": next_cursor})
            return Page([HealingEvent.from_dict(d) for d in body["data"]], body.get("next_cursor"), fetch)

        return fetch(cursor)

    def approve(self, event_id: str, *, comment: str | None = None) -> HealingEvent:
        """Deploy the healed version (needs the reviewer permission). ConflictError if already decided."""
        body = {"comment": comment} if comment is not None else {}
        return HealingEvent.from_dict(self._t.request("POST", f"/healing-events/{_seg(event_id)}/approve", json=body))

    def reject(self, event_id: str, *, comment: str) -> HealingEvent:
        """Discard the healed version; the comment saying why is required."""
        return HealingEvent.from_dict(
            self._t.request("POST", f"/healing-events/{_seg(event_id)}/reject", json={"comment": comment})
        )


class Webhooks:
    """Webhook endpoints (URLs that receive signed messages about heals, failed runs and deployments) and their
    delivery logs. To check a message your receiver got, use `anchor_sdk.verify_webhook`."""

    def __init__(self, transport: Transport):
        self._t = transport

    def create(
        self,
        *,
        url: str,
        event_types: builtins.list[str] = _UNSET,
        task: str = _UNSET,
        description: str = _UNSET,
    ) -> WebhookEndpoint:
        """Register an endpoint. `event_types` left out or empty: all of them; `task` (an id): only that task's events.
        The result's `secret` (whsec_...) is shown this once: store it where your receiver can read it."""
        body = _given(url=url, event_types=event_types, task=task, description=description)
        return WebhookEndpoint.from_dict(self._t.request("POST", "/webhooks", json=body))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[WebhookEndpoint]:
        """One page of your endpoints; `page.auto_paging_iter()` walks all of them."""

        def fetch(next_cursor: str | None) -> Page[WebhookEndpoint]:
            body = self._t.request("GET", "/webhooks", params={"limit": limit, "cursor": next_cursor})
            return Page([WebhookEndpoint.from_dict(d) for d in body["data"]], body.get("next_cursor"), fetch)

        return fetch(cursor)

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        return WebhookEndpoint.from_dict(self._t.request("GET", f"/webhooks/{_seg(endpoint_id)}"))

    def update(
        self,
        endpoint_id: str,
        *,
        url: str = _UNSET,
        description: str = _UNSET,
        event_types: builtins.list[str] = _UNSET,
        task: str | None = _UNSET,
        enabled: bool = _UNSET,
    ) -> WebhookEndpoint:
        """Change only what is given. `task=None` sends every task's events; `enabled=True` re-enables a disabled
        endpoint and resets its failure count."""
        body = _given(url=url, description=description, event_types=event_types, task=task, enabled=enabled)
        return WebhookEndpoint.from_dict(self._t.request("PATCH", f"/webhooks/{_seg(endpoint_id)}", json=body))

    def delete(self, endpoint_id: str) -> None:
        """Delete the endpoint and its delivery log."""
        self._t.request("DELETE", f"/webhooks/{_seg(endpoint_id)}")

    def rotate_secret(self, endpoint_id: str, *, grace_seconds: int = _UNSET) -> WebhookSecret:
        """A new signing secret, shown this once. For `grace_seconds` (default one day, at most 7) messages also
        carry the old secret's signature; `grace_seconds=0` drops the old secret now (it leaked)."""
        body = _given(grace_seconds=grace_seconds) or None
        path = f"/webhooks/{_seg(endpoint_id)}/rotate-secret"
        return WebhookSecret.from_dict(self._t.request("POST", path, json=body))

    def send_test(self, endpoint_id: str) -> WebhookDelivery:
        """Queue a `webhook.test` message to this endpoint (also when it is disabled); returns the queued attempt."""
        return WebhookDelivery.from_dict(self._t.request("POST", f"/webhooks/{_seg(endpoint_id)}/test"))

    def list_deliveries(
        self,
        endpoint_id: str,
        *,
        status: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[WebhookDelivery]:
        """One page of the endpoint's delivery log, newest attempt first; filter by `status` (pending, sending,
        succeeded, failed, cancelled) or `message_id` (a webhook-id: every attempt of one message)."""

        def fetch(next_cursor: str | None) -> Page[WebhookDelivery]:
            body = self._t.request(
                "GET",
                f"/webhooks/{_seg(endpoint_id)}/deliveries",
                params={"status": status, "message_id": message_id, "limit": limit, "cursor": next_cursor},
            )
            return Page([WebhookDelivery.from_dict(d) for d in body["data"]], body.get("next_cursor"), fetch)

        return fetch(cursor)

    def redeliver(self, endpoint_id: str, delivery_id: int) -> WebhookDelivery:
        """Queue one more attempt of a delivery's message, with the same webhook-id; returns the new attempt."""
        path = f"/webhooks/{_seg(endpoint_id)}/deliveries/{int(delivery_id)}/redeliver"
        return WebhookDelivery.from_dict(self._t.request("POST", path))

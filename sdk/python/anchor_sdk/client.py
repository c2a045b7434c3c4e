"""The client: `Anchor(api_key=..., base_url=...)` with `tasks`, `runs`, `healing_events` and `webhooks`."""

from __future__ import annotations

import os

import httpx

from anchor_sdk import __version__
from anchor_sdk._http import Transport
from anchor_sdk.resources import HealingEvents, Runs, Tasks, Webhooks

DEFAULT_BASE_URL = "http://localhost:8000"
API_PREFIX = "/api/v1"


class Anchor:
    """A client for the Anchor API.

    `api_key` defaults to the ANCHOR_API_KEY environment variable, `base_url` to ANCHOR_BASE_URL and
    then to http://localhost:8000. The base URL is the server's address; "/api/v1" is added unless it
    is already there. Requests that fail with 429 or a 5xx are retried `max_retries` times with backoff.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        http_client: httpx.Client | None = None,
    ):
        api_key = api_key or os.environ.get("ANCHOR_API_KEY")
        if not api_key:
            raise ValueError("an API key is required: Anchor(api_key=...) or the ANCHOR_API_KEY environment variable")
        self.base_url = _api_root(base_url or os.environ.get("ANCHOR_BASE_URL") or DEFAULT_BASE_URL)
        self._transport = Transport(
            api_key=api_key,
            base_url=self.base_url,
            timeout=timeout,
            max_retries=max_retries,
            user_agent=f"anchor-sdk-python/{__version__}",
            http_client=http_client,
        )
        self.tasks = Tasks(self._transport)
        self.runs = Runs(self._transport)
        self.healing_events = HealingEvents(self._transport)
        self.webhooks = Webhooks(self._transport)

    def close(self) -> None:
        self._transport.close()

    # `Self` needs Python 3.11 or typing_extensions; the client supports 3.9 and depends only on httpx.
    def __enter__(self) -> Anchor:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Anchor(base_url={self.base_url!r})"


def _api_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root if root.endswith(API_PREFIX) else root + API_PREFIX

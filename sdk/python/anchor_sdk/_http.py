"""The HTTP layer: authentication, JSON, retries with backoff, and errors turned into exceptions."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx

from anchor_sdk.errors import AnchorError, APIConnectionError, error_for

# Safe to send again whatever happened to the first attempt. A POST that reached the server may have
# taken effect (a task created, a run started), so it is only repeated when the server said it did not
# act: 429, or a gateway/unavailable answer, or a connection that never opened.
_IDEMPOTENT = {"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"}
_RETRY_ALWAYS = {429, 502, 503, 504}
_MAX_BACKOFF_S = 30.0


class Transport:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: float,
        max_retries: int,
        user_agent: str,
        http_client: httpx.Client | None = None,
    ):
        self.max_retries = max_retries
        self._client = http_client or httpx.Client(timeout=timeout)
        self._owns_client = http_client is None
        self._base_url = base_url
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        method = method.upper()
        url = self._base_url + path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            try:
                response = self._client.request(
                    method, url, json=json, params=query or None, headers=self._headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # never reached the server: safe to retry any method
                if attempt < self.max_retries:
                    attempt += 1
                    time.sleep(_backoff(attempt, None))
                    continue
                raise APIConnectionError(f"could not connect to {self._base_url}: {exc}") from exc
            except httpx.TransportError as exc:
                if method in _IDEMPOTENT and attempt < self.max_retries:
                    attempt += 1
                    time.sleep(_backoff(attempt, None))
                    continue
                raise APIConnectionError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc

            if response.status_code < 400:
                return _json(response)
            retry_after = _retry_after(response)
            # A server that asks for longer than we would wait is answered now: retrying sooner only
            # earns another refusal (a 429 for failed keys lasts the rest of the minute).
            too_long = retry_after is not None and retry_after > _MAX_BACKOFF_S
            if attempt < self.max_retries and not too_long and _should_retry(method, response.status_code):
                attempt += 1
                time.sleep(_backoff(attempt, retry_after))
                continue
            raise error_for(response.status_code, _json(response), retry_after)


def _should_retry(method: str, status: int) -> bool:
    return status in _RETRY_ALWAYS or (status >= 500 and method in _IDEMPOTENT)


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, _MAX_BACKOFF_S)
    # Exponential with full jitter, so many clients failing together do not come back together.
    return random.uniform(0, min(_MAX_BACKOFF_S, 0.5 * 2 ** (attempt - 1)))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _json(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        if response.status_code < 400:
            raise AnchorError(
                f"the server answered {response.status_code} with a body that is not JSON",
                status_code=response.status_code,
            ) from None
        return response.text[:500]

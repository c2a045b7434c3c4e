"""A scripted, OpenAI-compatible Chat Completions server for tests.

The real `openai` client talks to it through `base_url`, so everything between the agent and the
network (request building, tool-call parsing, retries, timeouts, request ids) is the real thing.

    with FakeOpenAI() as server:
        server.script(tool_call("done", ref=3), text("all good"))
        agent = LLMAgent(client=server.client(), ...)
        ...
        assert "hunter2" not in server.bodies_text()

Replies are consumed in order, one per HTTP request (a retried request consumes the next reply).
A reply may be:
- `tool_call(name, **arguments)` / `tool_calls(call, call, ...)`: an assistant message calling tools;
- `text(content)`: a plain assistant message;
- `error(status, retry_after_ms=None)`: an OpenAI-style error (429, 500, ...);
- `slow(seconds, reply)`: wait, then answer (to trip the client's timeout);
- `garbage(body)`: a 200 whose body is not a Chat Completion (a misconfigured gateway's HTML page);
- a callable taking the request body (dict) and returning one of the above (for answers that
  depend on what the agent sent, e.g. a ref seen in the last observation).

Token usage is computed from the request and reply sizes with the usual rule of thumb of about four
characters per token (no tokenizer is available offline), so cost accounting can be tested and the
numbers in docs/llm.md are estimates of the same kind.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasks_app.runner.sandbox import HandoverError

CHARS_PER_TOKEN = 4


def approx_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN)) if text else 0


@dataclass
class Reply:
    message: dict | None = None  # the assistant message
    status: int = 200
    error_type: str = ""
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0
    raw_body: bytes | None = None  # sent as is, instead of a Chat Completion


def text(content: str) -> Reply:
    return Reply(message={"role": "assistant", "content": content})


_call_ids = itertools.count(1)


def call(name: str, **arguments: Any) -> dict:
    """One tool call, for `tool_calls(...)`. `_raw` sends arguments verbatim (malformed JSON tests)."""
    raw = arguments.pop("_raw", None)
    return {
        "id": f"call_{next(_call_ids)}",
        "type": "function",
        "function": {"name": name, "arguments": raw if raw is not None else json.dumps(arguments)},
    }


def tool_calls(*calls: dict, content: str | None = None) -> Reply:
    return Reply(message={"role": "assistant", "content": content, "tool_calls": list(calls)})


def tool_call(name: str, **arguments: Any) -> Reply:
    return tool_calls(call(name, **arguments))


def error(status: int, *, retry_after_ms: int | None = None, message: str = "scripted error") -> Reply:
    headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
    kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(status, "server_error")
    return Reply(status=status, error_type=kind, headers=headers, message={"error": message})


def garbage(body: bytes = b"<html>502 Bad Gateway</html>") -> Reply:
    return Reply(raw_body=body)


def slow(seconds: float, reply: Reply) -> Reply:
    return Reply(
        message=reply.message, status=reply.status, error_type=reply.error_type, headers=reply.headers, delay_s=seconds
    )


ScriptItem = Reply | Callable[[dict], Reply]


class FakeOpenAI:
    """Threaded HTTP server on 127.0.0.1 with a random port; use as a context manager."""

    def __init__(self) -> None:
        self._script: list[ScriptItem] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.requests: list[dict] = []  # parsed JSON bodies, in arrival order
        self.raw_bodies: list[bytes] = []
        self.headers: list[dict] = []
        self.request_ids: list[str] = []  # the x-request-id sent back for each request
        self.exhausted = 0  # requests that arrived after the script ran out
        self.usage: list[dict] = []  # usage reported for each successful reply
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                server._handle(self, raw)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, *, timeout: float = 5.0, max_retries: int = 0):
        from openai import OpenAI

        return OpenAI(
            api_key="sk-test-not-a-real-key", base_url=self.base_url, timeout=timeout, max_retries=max_retries
        )

    # -- scripting and inspection ------------------------------------------------------------------

    def script(self, *items: ScriptItem) -> None:
        with self._lock:
            self._script.extend(items)

    @property
    def remaining(self) -> int:
        return len(self._script)

    def bodies_text(self) -> str:
        """Every request body as sent, decoded: assert that a secret never appears in it."""
        return "\n".join(body.decode("utf-8", "replace") for body in self.raw_bodies)

    def total_usage(self) -> dict:
        return {
            "requests": len(self.usage),
            "prompt_tokens": sum(u["prompt_tokens"] for u in self.usage),
            "completion_tokens": sum(u["completion_tokens"] for u in self.usage),
        }

    # -- serving -----------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        request_id = f"req_fake_{next(self._ids):04d}"
        with self._lock:
            self.raw_bodies.append(raw)
            self.headers.append(dict(handler.headers))
            self.request_ids.append(request_id)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"_unparseable": raw.decode("utf-8", "replace")}
            self.requests.append(body)
            item = self._script.pop(0) if self._script else None
        if not handler.path.rstrip("/").endswith("/chat/completions"):
            self._send(
                handler, 404, {"error": {"message": f"no route {handler.path}", "type": "not_found"}}, request_id
            )
            return
        if item is None:
            self.exhausted += 1
            reply = Reply(
                status=400, error_type="invalid_request_error", message={"error": "fake server: script exhausted"}
            )
        else:
            reply = item(body) if callable(item) else item
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.raw_body is not None:
            self._send(handler, 200, reply.raw_body, request_id)
            return
        if reply.status != 200:
            message = (reply.message or {}).get("error", "error")
            payload = {"error": {"message": message, "type": reply.error_type, "code": reply.error_type}}
            self._send(handler, reply.status, payload, request_id, reply.headers)
            return
        message = dict(reply.message or {"role": "assistant", "content": ""})
        completion_text = (message.get("content") or "") + "".join(
            c["function"]["name"] + c["function"]["arguments"] for c in message.get("tool_calls") or []
        )
        prompt_text = json.dumps(body.get("messages", [])) + json.dumps(body.get("tools", []))
        usage = {"prompt_tokens": approx_tokens(prompt_text), "completion_tokens": approx_tokens(completion_text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        with self._lock:
            self.usage.append(usage)
        payload = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }
        self._send(handler, 200, payload, request_id, reply.headers)

    def _send(
        self, handler: BaseHTTPRequestHandler, status: int, payload: dict | bytes, request_id: str, headers: dict | None = None
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(data)))
            handler.send_header("x-request-id", request_id)
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (a timeout test): nothing to answer


# -- the page side -----------------------------------------------------------------------------------


class FakeHandover:
    """The runner's hand-over, in memory: pages by URL, elements with refs, a scripted failing step.

    `step_ok(selector=, url=, timeout_ms=, handover=)` decides whether `retry_step` succeeds. An element
    may carry `goes_to` (a click navigates there) or `closes` (a click removes the layer with that xpath);
    `selectors` maps a ref to its unique selectors, `layers` a selector to the layer drawn over its element,
    or to the layers stacked over it, top first, and `frames` an iframe's selector to what is inside it (like a
    page, with `selectors` of its own; a frame not there raises HandoverError, as the runner's hand-over does).
    Every call is recorded in `calls` as (op, kwargs).
    """

    def __init__(
        self,
        pages: dict[str, dict],
        start: str,
        *,
        step_ok: Callable[..., bool] = lambda **_: False,
        selectors: dict[int, list[str]] | None = None,
        secret_keys: tuple[str, ...] = (),
        layers: dict[str, dict | list[dict]] | None = None,
        frames: dict[str, dict] | None = None,
    ) -> None:
        self.pages = pages
        self.frames = frames or {}  # iframe selector -> what is inside, like a page of `pages`
        # selector -> the layers drawn over its element, top first (`covered_by` records)
        self.layers = {selector: list(stack) if isinstance(stack, list) else [stack] for selector, stack in (layers or {}).items()}
        self.url = start
        self.step_ok = step_ok
        self.selectors = selectors or {}
        self.secret_keys = set(secret_keys)
        self.calls: list[tuple[str, dict]] = []
        self.outcome: str | None = None
        self.filled_secrets: list[str] = []

    @property
    def closed(self) -> bool:
        return self.outcome is not None

    def _record(self, op: str, **kwargs: Any) -> None:
        if self.outcome is not None:
            raise RuntimeError(f"hand-over already ended ({self.outcome})")
        self.calls.append((op, {k: v for k, v in kwargs.items() if v is not None}))

    def ops(self, op: str) -> list[dict]:
        return [kwargs for name, kwargs in self.calls if name == op]

    def _document(self, frame: str | None) -> dict:
        if frame is None:
            return self.pages[self.url]
        if frame not in self.frames:
            raise HandoverError(f"Locator.element_handle: no frame {frame}")
        return self.frames[frame]

    def _selectors(self, frame: str | None) -> dict[int, list[str]]:
        return self._document(frame).get("selectors", {}) if frame else self.selectors

    def _element(self, ref: int | None, selector: str | None, frame: str | None = None) -> dict | None:
        elements = self._document(frame).get("elements", [])
        if ref is not None:
            return next((e for e in elements if e.get("ref") == ref), None)
        for element in elements:
            if selector in self._selectors(frame).get(element.get("ref"), []):
                return element
        return None

    def observe(self, *, frame: str | None = None) -> dict:
        self._record("observe", frame=frame)
        page = {key: value for key, value in self._document(frame).items() if key != "selectors"}
        return json.loads(
            json.dumps({"url": self.url, "title": "", "http_status": 200, "links": [], "forms": [], **page})
        )

    def act(
        self,
        action: str,
        *,
        ref: int | None = None,
        selector: str | None = None,
        value: Any = None,
        timeout_ms: int | None = None,
        frame: str | None = None,
    ) -> dict:
        self._record("act", action=action, ref=ref, selector=selector, value=value, timeout_ms=timeout_ms, frame=frame)
        element = self._element(ref, selector, frame)
        if element is None:
            return {"ok": False, "error": "no such element", "value": None}
        if action == "click" and element.get("goes_to"):
            self.url = element["goes_to"]
        if action == "click" and element.get("closes"):
            for stack in self.layers.values():
                stack[:] = [layer for layer in stack if layer.get("xpath") != element["closes"]]
        if action == "inner_text":
            return {"ok": True, "error": None, "value": element.get("text")}
        return {"ok": True, "error": None, "value": None}

    def fill_secret(
        self, *, ref: int | None = None, selector: str | None = None, secret_key: str, timeout_ms: int | None = None
    ) -> dict:
        self._record("fill_secret", ref=ref, selector=selector, secret_key=secret_key)
        if secret_key not in self.secret_keys:
            return {"ok": False, "error": f"no secret named {secret_key!r}"}
        self.filled_secrets.append(secret_key)
        return {"ok": True, "error": None}

    def goto(self, url: str, *, timeout_ms: int | None = None) -> dict:
        self._record("goto", url=url)
        if url not in self.pages:
            return {"ok": False, "status": 404, "url": url, "error": "404"}
        self.url = url
        return {"ok": True, "status": 200, "url": url, "error": None}

    def wait(
        self, *, load_state: str | None = None, selector: str | None = None, loads_after: int | None = None,
        timeout_ms: int | None = None,
    ) -> dict:
        self._record("wait", load_state=load_state, selector=selector, loads_after=loads_after, timeout_ms=timeout_ms)
        return {"ok": True, "url": self.url, "error": None}

    def screenshot(self) -> str:
        self._record("screenshot")
        return "iVBORw0KGgo="

    def scroll(self, *, dy: int) -> int:
        self._record("scroll", dy=dy)
        return 0  # these pages fit on one screen

    def covering_layer(self, *, selector: str) -> dict | None:
        self._record("covering_layer", selector=selector)
        return next(iter(self.layers.get(selector, [])), None)

    def selector_for(self, ref: int, *, frame: str | None = None, keep: str | None = None) -> list[dict]:
        self._record("selector_for", ref=ref, frame=frame, keep=keep)
        found = self._selectors(frame).get(ref, [])
        own = [{"selector": keep, "kind": "original", "count": 1}] if keep in found else []
        return own + [{"selector": s, "kind": "css", "count": 1} for s in found if s != keep]

    def retry_step(self, *, selector: str | None = None, url: str | None = None, timeout_ms: int | None = None) -> dict:
        self._record("retry_step", selector=selector, url=url, timeout_ms=timeout_ms)
        if self.step_ok(selector=selector, url=url, timeout_ms=timeout_ms, handover=self):
            self.outcome = "retried"
            return {"ok": True, "value": None, "error": None}
        return {"ok": False, "value": None, "error": "TimeoutError: waiting for locator"}

    def resume(self, value: Any = None) -> None:
        self._record("resume", value=value)
        self.outcome = "resumed"

    def abort(self, reason: str = "aborted") -> None:
        if self.outcome is None:
            self._record("abort", reason=reason)
            self.outcome = "aborted"

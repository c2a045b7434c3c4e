"""Data that crosses the runner's process boundary.

Everything here is plain data: the parent (an RQ worker) builds a RunSpec, the sandboxed child
sends back Steps, Failures and finally a RunResult, all as JSON lines over a dedicated socket
(never stdout: task code may print). No Django, no Playwright imports.
"""

from __future__ import annotations

import json
import socket
import types
import typing
import urllib.parse
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any

from tasks_app.config import FAILURE_TYPES  # the seed's five; one list for the runner and the settings

SCRIPT_ERROR = "script_error"
ERROR_TYPES = FAILURE_TYPES + (SCRIPT_ERROR,)
# A run stopped on request ends with this error type: nothing failed, so nothing is healed.
CANCELLED = "cancelled"

STATUS_SUCCEEDED = "succeeded"
STATUS_HEALED = "healed"
STATUS_FAILED = "failed"

OUTCOME_OK = "ok"
OUTCOME_ERROR = "error"
OUTCOME_RECOVERED = "recovered"

MASK = "***"

# How Playwright writes a step into an iframe within one selector: `#form >> internal:control=enter-frame >> #name`
# is `#name` in the frame `#form` shows (what `page.frame_locator("#form").locator("#name")` finds).
ENTER_FRAME = " >> internal:control=enter-frame >> "

# One JSON message on the control socket may not exceed this (a screenshot is ~100-500 KB).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class MalformedMessage(ValueError):
    """What came over the control channel is no message the harness sends: task code, which shares the child's
    process, wrote to the channel itself. The run fails as the task's own error, saying what was wrong."""


class _Data:
    """to_dict()/from_dict() for the dataclasses below; from_dict ignores unknown keys."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_message(cls, data: Any, what: str):
        """from_dict for what came over the control channel: MalformedMessage, naming `what` and what is wrong with
        it, unless `data` is a JSON object with every field this needs, each of its type."""
        problem = _problem(cls, data, what)
        if problem:
            raise MalformedMessage(problem)
        return cls.from_dict(data)


def _problem(cls: type, data: Any, what: str) -> str | None:
    if not isinstance(data, dict):
        return f"{what} is {_json_kind(data)}, not an object"
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                return f"{what} has no {f.name!r}"
            continue
        hint, value = hints[f.name], data[f.name]
        if not _fits(value, hint):
            return f"{what}'s {f.name!r} is {_json_kind(value)}, not {' or '.join(_hint_kinds(hint))}"
        nested = next((h for h in _members(hint) if is_dataclass(h)), None)
        if nested is not None and isinstance(value, dict) and (problem := _problem(nested, value, f"{what}'s {f.name!r}")):
            return problem
    return None


def _members(hint: Any) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else (hint,)


def _fits(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return any(_fits(value, member) for member in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if is_dataclass(hint) or typing.get_origin(hint) is dict:
        return isinstance(value, dict)
    if hint in (int, float):  # JSON has one kind of number; true and false are not numbers
        return isinstance(value, int if hint is int else int | float) and not isinstance(value, bool)
    return isinstance(value, hint)


_JSON_KINDS = {type(None): "null", bool: "true or false", int: "a number", float: "a number", str: "a string",
               list: "a list", dict: "an object"}


def _json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _hint_kinds(hint: Any) -> list[str]:
    kinds: list[str] = []
    for member in _members(hint):
        origin = typing.get_origin(member) or member
        kind = "an object" if is_dataclass(member) else _JSON_KINDS.get(origin, "anything")
        if kind not in kinds:
            kinds.append(kind)
    return kinds


@dataclass
class RunSpec(_Data):
    code: str
    params: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)
    # Failure types that pause the run for a recovery through the hand-over channel.
    handover_on: list[str] = field(default_factory=list)
    wall_timeout_s: float = 90
    action_timeout_ms: int = 5000
    navigation_timeout_ms: int = 15000
    allowed_hosts: list[str] | None = None
    # With allowed_hosts: hosts an iframe may load from, and nothing else (exactly these, no subdomains).
    frame_hosts: list[str] = field(default_factory=list)
    # Machine-written code: from Python it may open no socket, resolve no name and start or signal no process;
    # the browser is its only way to the web.
    contained: bool = False
    # Where a hand-over may type a secret: these hosts and their subdomains (None: anywhere). An agent follows
    # pages it did not choose, and a login form elsewhere would collect the task's credentials.
    secret_hosts: list[str] | None = None


@dataclass
class Step(_Data):
    index: int
    line: int | None
    action: str
    selector: str | None
    args: dict
    url: str
    started_ms: float
    duration_ms: float
    outcome: str = OUTCOME_OK
    error: str | None = None
    step_key: str = ""
    fingerprint: dict | None = None
    # For a step inside an iframe: the address of the page the frame shows, after the step.
    frame_url: str | None = None
    # Set when the step was recovered through a hand-over:
    # {"how": "retry"|"resume", "selector": new selector, "original_selector": ..., "url": ...}
    recovery: dict | None = None


@dataclass
class Failure(_Data):
    type: str
    message: str
    exception: str = ""
    action: str | None = None
    selector: str | None = None
    args: dict = field(default_factory=dict)
    line: int | None = None
    step_key: str | None = None
    url: str = ""
    http_status: int | None = None
    screenshot_png_b64: str | None = None
    dom_excerpt: str = ""
    details: dict = field(default_factory=dict)


@dataclass
class RunResult(_Data):
    status: str
    output: Any = None
    error_type: str | None = None
    error_message: str | None = None
    steps: list[Step] = field(default_factory=list)
    failure: Failure | None = None
    screenshots: list[dict] = field(default_factory=list)
    duration_ms: float = 0.0
    timings: dict = field(default_factory=dict)
    recovered: bool = False
    # Tail of the child's stdout/stderr (task prints, harness diagnostics), secrets masked.
    logs: str = ""
    # One entry per hand-over: {n, failure_type, step_key, outcome, recovery, commands: [...]}.
    handovers: list[dict] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        data = dict(data)
        data["steps"] = [Step.from_dict(s) for s in data.get("steps") or []]
        if data.get("failure"):
            data["failure"] = Failure.from_dict(data["failure"])
        return super().from_dict(data)


def step_key(line: int | None, action: str, selector: str | None) -> str:
    """Identifies "the same step" across runs of the same code version."""
    return f"{line}:{action}:{selector}"


def mask_secrets(value: Any, secrets: list[str]) -> Any:
    """Replace every secret value inside value (str, or nested dict/list, keys included) with ***.

    A value equal to a secret is masked whatever its length; substrings only for secrets of three
    characters or more, so that a one-letter secret does not shred every message.
    """
    if not secrets:
        return value
    if isinstance(value, str):
        if value in secrets:
            return MASK
        for secret in secrets:
            if len(secret) >= 3 and secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {mask_secrets(k, secrets): mask_secrets(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v, secrets) for v in value]
    return value


def secret_values(secrets: dict) -> list[str]:
    """The strings to mask: every non-empty string leaf of the secrets dict, longest first, and each as it
    appears in a URL (percent-encoded), since a page's URL is recorded and shown to agents, and as a printed dict
    or JSON writes it (`print(params)`: a backslash, a line break or an accent escaped)."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str) and v:
            out.extend({v, urllib.parse.quote(v, safe=""), urllib.parse.quote_plus(v), repr(v)[1:-1],
                        json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1]})
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(str(v))

    walk(secrets)
    return sorted(set(out), key=len, reverse=True)


class Channel:
    """Newline-delimited JSON messages over a stream socket, with a size cap on reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        self.last_size = 0  # bytes of the message recv() returned last

    def send(self, message: dict) -> None:
        data = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
        self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> dict | None:
        """The next message; None on EOF. Raises TimeoutError when timeout passes first, and MalformedMessage for a
        line that is not a JSON object or one that is too long."""
        self.sock.settimeout(timeout)
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                self.last_size = nl + 1
                try:
                    message = json.loads(line)
                except ValueError:
                    raise MalformedMessage(f"a line that is not JSON ({line[:60]!r})") from None
                if not isinstance(message, dict):
                    raise MalformedMessage(f"a message that is {_json_kind(message)}, not an object")
                return message
            if len(self._buf) > MAX_MESSAGE_BYTES:
                raise MalformedMessage(f"a message longer than {MAX_MESSAGE_BYTES // 2**20} MB")
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError as exc:
                raise TimeoutError from exc
            if not chunk:
                return None
            self._buf += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

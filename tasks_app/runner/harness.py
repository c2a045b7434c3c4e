"""The child side of the runner: runs one task's code with an instrumented Playwright page.

Started by sandbox.py as `python -E -s -B -c "...harness.main()" --fd N [--uid U] --cdp URL`.
Life of the process:
  1. as root: import Playwright and the stdlib modules task code commonly uses (the interpreter
     lives under /root, which an unprivileged uid cannot read);
  2. drop to the run's own unprivileged uid (fresh, unique per run), with RLIMIT_NPROC set;
  3. start the Playwright driver (as that uid), connect to the pool's Chromium over CDP, open a
     fresh browser context and page, then say "ready" — all before the task is known, so a warm
     child is ready to go;
  4. receive the RunSpec, run the task's `run(page, params)`, stream steps, pause for hand-overs,
     send the result, close the context and exit.

Everything crosses to the parent as JSON lines on the inherited socket (task code may print to
stdout freely). This module must stay free of Django.
"""

from __future__ import annotations

# Modules task code may import: loaded while still root (see above). Keep this list boring.
import argparse
import ast
import asyncio
import asyncio.subprocess
import base64
import collections  # noqa: F401
import csv  # noqa: F401
import dataclasses  # noqa: F401
import datetime  # noqa: F401
import decimal  # noqa: F401
import encodings.idna
import encodings.latin_1  # noqa: F401
import enum  # noqa: F401
import fractions  # noqa: F401
import functools  # noqa: F401
import hashlib  # noqa: F401
import html  # noqa: F401
import io  # noqa: F401
import itertools  # noqa: F401
import json
import linecache
import math  # noqa: F401
import os
import random  # noqa: F401
import re
import resource
import signal  # noqa: F401
import socket
import statistics  # noqa: F401
import string  # noqa: F401
import sys
import textwrap  # noqa: F401
import time
import traceback
import typing  # noqa: F401
import unicodedata  # noqa: F401
import urllib.parse
import uuid  # noqa: F401
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import FrameLocator, Locator, Page, sync_playwright

from . import errors, snapshot
from .protocol import (
    ENTER_FRAME,
    FAILURE_TYPES,
    OUTCOME_ERROR,
    OUTCOME_OK,
    OUTCOME_RECOVERED,
    SCRIPT_ERROR,
    Channel,
    Failure,
    RunSpec,
    Step,
    mask_secrets,
    secret_values,
    step_key,
)

MAX_HANDOVERS = 5
MAX_OUTPUT_BYTES = 1 << 20
DOM_EXCERPT_CHARS = 20000
# How long the hand-over looks for an iframe it was told about (a consent banner's).
FRAME_LOOKUP_MS = 2_000
# Playwright's call log line for an action it performed before timing out (on the navigation the action started).
ACTION_DONE = re.compile(r"^\s*- \w+ action done$", re.MULTILINE)
# A wheel turn scrolls smoothly, and a lazy part of the page renders once its observer sees it: about a frame or ten.
SCROLL_SETTLES_MS = 250
# How long a step waits, at most, for a navigation it started to be answered before the step is recorded on its
# page; and how long a press inside a frame waits for the navigation it may start (Playwright waits for the page's).
NAVIGATION_COMMITS_S = 2.0
FRAME_NAVIGATION_STARTS_S = 0.3
PRESSES = frozenset({"click", "dblclick", "tap", "press"})
ALLOWED_SCHEMES = ("http", "https")
# Sites and tasks that say "password", "secrets" or "login" handle a login themselves: a login form
# is then part of the task, not a sign that the session was lost.
_LOGIN_IN_CODE = re.compile(r"password|secrets|log_?in|sign_?in", re.IGNORECASE)
_EXC_NAMES = {
    "Exception", "BaseException", "Error", "TimeoutError", "PlaywrightError", "PlaywrightTimeoutError",
}


class BlockedNavigation(Exception):
    """The sandbox refused a navigation (scheme or host not allowed)."""


class PageCheckError(PlaywrightError):
    """goto() reached a page that is not the one asked for (error status, login wall, captcha).

    A Playwright Error, so that task code catching Playwright errors catches this one too.
    """

    def __init__(self, error_type: str, message: str, evidence: dict) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.evidence = evidence


class RunAborted(BaseException):
    """The hand-over was aborted: ends the run (BaseException so `except Exception` can't swallow it)."""

    def __init__(self, failure: Failure, reason: str) -> None:
        super().__init__(f"{failure.message} (recovery aborted: {reason})")  # error_type says the type
        self.failure = failure


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if hasattr(value, "status") and hasattr(value, "url"):
            return {"status": value.status, "url": value.url}
        return repr(value)


def _fmt_call(name: str, args: tuple, kwargs: dict) -> str:
    parts = [json.dumps(a) if isinstance(a, str) else repr(a) for a in args]
    for k, v in kwargs.items():
        if isinstance(v, Locator):
            v = v._chain() if isinstance(v, InstrumentedLocator) else "locator"
            parts.append(f"{k}={v}")
        else:
            parts.append(f"{k}={json.dumps(v) if isinstance(v, str) else repr(v)}")
    return f"{name}({', '.join(parts)})"


def _unwrap(kwargs: dict) -> dict:
    """Locators passed into Playwright (has=..., and_(...)) must be the library's own type."""
    out = {}
    for k, v in kwargs.items():
        out[k] = Locator(v._impl_obj) if isinstance(v, InstrumentedLocator) else v
    return out


def handled_lines(code: str) -> set[int]:
    """Lines of the task code inside a `try` whose handlers catch Playwright errors.

    A failure there is the script's business (an optional cookie banner, a probe): it is not
    handed over and is not the run's failure.
    """
    lines: set[int] = set()
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return lines
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try) or not node.handlers:
            continue
        catches = False
        for h in node.handlers:
            if h.type is None:
                catches = True
            else:
                names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
                for n in names:
                    ident = n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", "")
                    if ident in _EXC_NAMES:
                        catches = True
        if catches and node.body:
            end = max(getattr(n, "end_lineno", n.lineno) for n in node.body)
            lines.update(range(node.body[0].lineno, end + 1))
    return lines


class Runtime:
    """Per-run state of the child: the channel, the page, steps, failures and hand-overs."""

    def __init__(self, chan: Channel, page: Page, context: Any, spec: RunSpec, task_file: str) -> None:
        self.chan = chan
        self.page = page
        self.context = context
        self.spec = spec
        self.task_file = task_file
        self.secrets = secret_values(spec.secrets)
        self.t0 = time.perf_counter()
        self.step_index = 0
        self.handovers = 0
        self.recovered = False
        self.failure: Failure | None = None
        self.handled = handled_lines(spec.code)
        self.login_expected = bool(_LOGIN_IN_CODE.search(spec.code))
        self.secret_typed = False
        self.password_filled = False
        self.pending_requests = 0
        self.page_loads = 0  # documents the page has loaded: a form's answer on its own URL is a new one too
        # Navigation requests in flight (of the page and its frames), each with its number.
        self.navigating: dict[Any, int] = {}
        self.navigations_requested = 0
        self.blocked: list[str] = []
        self.left_sites: list[str] = []  # blocked navigations of the page itself (not of an embedded frame)
        self.screenshots: list[dict] = []
        self.main_pid = os.getpid()
        self.allowed_hosts = [h.lower() for h in spec.allowed_hosts] if spec.allowed_hosts else None
        self.frame_hosts = {h.lower() for h in spec.frame_hosts}
        self.fp_ms = 0.0

    # --- plumbing -------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        if os.getpid() != self.main_pid:
            os._exit(1)  # a fork of the task must never speak for the run
        self.chan.send(message)

    def mask(self, value: Any) -> Any:
        return mask_secrets(value, self.secrets)

    def task_lines(self) -> list[int]:
        """Lines of the task module on the current stack, innermost first."""
        lines = []
        f = sys._getframe(2)
        while f is not None:
            if f.f_code.co_filename == self.task_file:
                lines.append(f.f_lineno)
            f = f.f_back
        return lines

    def bounded(self, coro: Any, timeout_s: float) -> Any:
        """Run an impl coroutine with a hard time bound (a page busy in JS never answers)."""
        try:
            return self.page._sync(asyncio.wait_for(coro, timeout_s))
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return None

    def page_state(self, timeout_s: float = 2.0) -> dict:
        state = self.bounded(self.page._impl_obj.evaluate(snapshot.PAGE_STATE, None), timeout_s)
        if state is None:
            return {"busy": True, "state_unavailable": True}
        return state

    # --- fingerprints (pipelined with the action: no added round trip on the critical path) --
    def start_fingerprint(self, loc: Locator, strict: bool) -> Any:
        impl = loc._impl_obj
        try:
            task = loc._loop.create_task(
                impl._frame.eval_on_selector(impl._selector, snapshot.FINGERPRINT, None, strict)
            )
        except Exception:  # noqa: BLE001 - private API moved: fall back to after-the-fact
            return None
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    def finish_fingerprint(self, loc: Locator, task: Any, strict: bool) -> dict | None:
        t = time.perf_counter()
        fp = None
        if task is not None and not task.done():
            self.bounded(asyncio.wait([task], timeout=0.5), 1.0)
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            fp = task.result()
        if fp is None:  # the element appeared only while the action waited: read it now
            impl = loc._impl_obj
            fp = self.bounded(impl._frame.eval_on_selector(impl._selector, snapshot.FINGERPRINT, None, strict), 0.5)
        self.fp_ms += (time.perf_counter() - t) * 1000
        return self.mask(fp) if fp else None

    # --- steps ----------------------------------------------------------------------------
    def record(self, *, action: str, selector: str | None, args: dict, line: int | None, started: float,
               outcome: str, error: str | None = None, fingerprint: dict | None = None,
               recovery: dict | None = None) -> Step:
        now = time.perf_counter()
        selector = self.mask(selector)
        frame_url, offset = self.frame_of_step(selector)
        step = Step(
            index=self.step_index,
            line=line,
            action=action,
            selector=selector,
            args=self.mask(args),
            url=self.mask(self.page.url),
            started_ms=round((started - self.t0) * 1000, 2),
            duration_ms=round((now - started) * 1000, 2),
            outcome=outcome,
            error=self.mask(error) if error else None,
            step_key=step_key(line, action, selector),
            fingerprint=self.in_page_coordinates(fingerprint, offset) if offset else fingerprint,
            frame_url=frame_url,
            recovery=recovery,
        )
        self.step_index += 1
        self.send({"t": "step", "step": step.to_dict()})
        return step

    def frame_of_step(self, selector: str | None) -> tuple[str | None, tuple[int, int] | None]:
        """For a step inside an iframe (its selector enters one; (None, None) for the page's own elements): the
        address of the page the frame shows (a form's submission in a frame loads its next page there, not in the
        page), and where the frame's content starts on the page, through every frame it is nested in."""
        if not selector or ENTER_FRAME not in selector:
            return None, None
        parts = selector.split(ENTER_FRAME)
        dx = dy = 0
        try:
            for depth in range(1, len(parts)):
                frame, (x, y) = self._iframe(ENTER_FRAME.join(parts[:depth]), timeout=500)
                dx, dy = dx + x, dy + y
        except (PlaywrightError, TypeError, ValueError):  # the frame is gone (the step took the page elsewhere)
            return None, None
        return self.mask(frame.url), (dx, dy)

    @staticmethod
    def in_page_coordinates(fingerprint: dict | None, offset: tuple[int, int]) -> dict | None:
        """A fingerprint taken inside a frame, placed where the page shows it: a frame's observation for a heal
        gives its elements' places on the page, and compares them with this one."""
        if not fingerprint or not isinstance(fingerprint.get("x"), int) or not isinstance(fingerprint.get("y"), int):
            return fingerprint
        return {**fingerprint, "x": fingerprint["x"] + offset[0], "y": fingerprint["y"] + offset[1]}

    # --- navigation policy ----------------------------------------------------------------
    def check_url(self, url: str) -> None:
        if url == "about:blank":
            return
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            self.blocked.append(url)
            self.left_sites.append(url)
            raise BlockedNavigation(f"navigation to {url!r} blocked: only http(s) URLs are allowed")
        if not self.host_allowed(parts.hostname or ""):
            self.blocked.append(url)
            self.left_sites.append(url)
            raise BlockedNavigation(f"navigation to {url!r} blocked: host not in allowed_hosts")

    def host_allowed(self, host: str) -> bool:
        return _on_hosts(host, self.allowed_hosts)

    def check_landing(self, requested: str, response: Any) -> None:
        status = response.status if response is not None else None
        state = self.page_state()
        ev = {
            "playwright": True,
            "navigation": True,
            "exception": "PageCheck",
            "message": "",
            "http_status": status,
            "requested_url": requested,
            "url": self.page.url,
            "login_form": False,
            "captcha": state.get("captcha"),
            "readyState": state.get("readyState"),
            "auth_error_text": False,
        }
        unexpected_login = (
            state.get("password_visible")
            and not self.login_expected
            and not errors.is_login_url(requested)
        )
        if unexpected_login:
            ev["login_form"] = True
        bad = (
            (status is not None and status >= 400)
            or state.get("captcha")
            or unexpected_login
            or (errors.is_login_url(self.page.url) and not errors.is_login_url(requested))
        )
        if not bad:
            return
        etype = errors.classify(ev)
        if etype == SCRIPT_ERROR or etype == "timeout":
            etype = "navigation_error"
        msg = f"{errors.describe(etype, ev)} at {self.page.url}"
        ev["message"] = msg
        raise PageCheckError(etype, msg, ev)

    # --- the generic call wrapper -----------------------------------------------------------
    def perform(self, *, action: str, selector: str | None, args: dict,
                native: Callable[[dict], tuple[Any, dict | None]],
                evidence_loc: Callable[[str | None], Locator] | None = None,
                navigation: bool = False, requested_url: str | None = None) -> Any:
        lines = self.task_lines()
        line = lines[0] if lines else None
        started, url_at_start, loads_at_start = time.perf_counter(), self.page.url, self.page_loads
        navigations_before = self.navigations_requested
        try:
            value, fp = native({})
        except (PlaywrightError, PageCheckError, BlockedNavigation) as exc:
            return self.on_failure(exc, action=action, selector=selector, args=args, native=native,
                                   evidence_loc=evidence_loc, navigation=navigation,
                                   requested_url=requested_url, lines=lines, started=started,
                                   url_at_start=url_at_start, loads_at_start=loads_at_start)
        in_frame = bool(selector) and ENTER_FRAME in selector and action in PRESSES
        self.let_navigations_commit(since=navigations_before, may_start_in_a_frame=in_frame)
        if action in ("fill", "type", "press_sequentially") and args.get("value") in self.secrets:
            self.secret_typed = True
        elif self.secret_typed and (action in PRESSES or action == "dispatch_event"):
            self.password_filled = True  # typed a secret, then submitted: a login form now means rejection
        self.record(action=action, selector=selector, args=args, line=line, started=started,
                    outcome=OUTCOME_OK, fingerprint=fp)
        return value

    def let_navigations_commit(self, *, since: int, may_start_in_a_frame: bool) -> None:
        """A click in a frame that submits its form returns before the page it loads has replaced the frame's (for the
        page's own frame Playwright waits). Recorded at once, the step would say it ran on either page, by a race,
        and the wrong-heal check compares those pages. So wait, boundedly, for the navigations the step started (the
        requests numbered after `since`) to be answered; after a press in a frame, first a moment for one to start."""
        started = time.monotonic()

        def in_flight() -> bool:
            return any(number > since for number in self.navigating.values())

        def requested() -> bool:
            return self.navigations_requested > since

        waits = [(requested, FRAME_NAVIGATION_STARTS_S)] if may_start_in_a_frame else []
        for until, limit_s in [*waits, (lambda: not in_flight(), NAVIGATION_COMMITS_S)]:
            while not until() and time.monotonic() - started < limit_s:
                try:
                    self.page.wait_for_timeout(20)  # lets Playwright deliver the events that end the wait
                except PlaywrightError:  # the page closed: nothing to wait for
                    return

    def evidence(self, exc: BaseException, *, selector: str | None, evidence_loc: Any,
                 navigation: bool, requested_url: str | None) -> dict:
        if isinstance(exc, PageCheckError):
            return dict(exc.evidence)
        ev: dict[str, Any] = {
            "exception": type(exc).__name__,
            "message": str(exc),
            "playwright": isinstance(exc, PlaywrightError),
            "blocked": isinstance(exc, BlockedNavigation),
            "navigation": navigation,
            "selector": selector,
            "requested_url": requested_url,
            "url": self.page.url,
            "pending_requests": self.pending_requests,
            "login_expected": self.login_expected,
            "password_filled": self.password_filled,
        }
        if isinstance(exc, BlockedNavigation):
            return ev
        state = None
        if evidence_loc is not None and selector is not None:
            try:
                loc = evidence_loc(None)
                state = self.bounded(loc._impl_obj.evaluate_all(snapshot.ELEMENT_EVIDENCE, None), 2.0)
            except Exception:  # noqa: BLE001
                state = None
        if state is None:
            state = self.page_state()
        ev.update({k: v for k, v in state.items() if k not in ("url",)})
        return ev

    def screenshot(self, timeout_ms: int) -> bytes:
        """The page as PNG, with the fields that hold a secret blacked out: typed into a text field (a user name,
        an API token), a secret would show in the picture. The values are read out of the page and compared here:
        the page never gets to see what we look for."""
        fields = Page.locator(self.page, "input, textarea")
        masked = []
        if self.secrets:
            values = self.bounded(fields._impl_obj.evaluate_all("(els) => els.map((el) => el.value)", None), 2.0) or []
            masked = [fields.nth(i) for i, value in enumerate(values)
                      if isinstance(value, str) and any(secret in value for secret in self.secrets)]
        return Page.screenshot(self.page, timeout=timeout_ms, mask=masked, mask_color="#000")

    def capture(self) -> tuple[str | None, str]:
        try:
            png = self.screenshot(3000)
        except Exception:  # noqa: BLE001 - a page that cannot be captured is still a failure to report
            png = None
        b64 = base64.b64encode(png).decode() if png else None
        try:
            dom = self.bounded(self.page._impl_obj.evaluate(snapshot.DOM_EXCERPT, DOM_EXCERPT_CHARS), 2.0) or ""
        except Exception:  # noqa: BLE001
            dom = ""
        return b64, self.mask(dom)

    def on_failure(self, exc: BaseException, *, action: str, selector: str | None, args: dict,
                   native: Callable, evidence_loc: Any, navigation: bool, requested_url: str | None,
                   lines: list[int], started: float, url_at_start: str, loads_at_start: int) -> Any:
        line = lines[0] if lines else None
        ev = self.evidence(exc, selector=selector, evidence_loc=evidence_loc, navigation=navigation,
                           requested_url=requested_url)
        if ACTION_DONE.search(str(exc)):
            ev.update(action_done=True, url_at_start=url_at_start, loads_at_start=loads_at_start)
        etype = exc.error_type if isinstance(exc, PageCheckError) else errors.classify(ev)
        message = str(exc).split("\nCall log:")[0].strip()
        if etype != SCRIPT_ERROR and not isinstance(exc, PageCheckError):
            message = f"{errors.describe(etype, ev)}: {message}"
        message = self.mask(message)
        handled_by_script = any(ln in self.handled for ln in lines)
        if handled_by_script:
            self.record(action=action, selector=selector, args=args, line=line, started=started,
                        outcome=OUTCOME_ERROR, error=message)
            raise exc
        shot, dom = self.capture()
        failure = Failure(
            type=etype,
            message=message,
            exception=type(exc).__name__,
            action=action,
            selector=self.mask(selector),
            args=self.mask(args),
            line=line,
            step_key=step_key(line, action, self.mask(selector)),
            url=self.mask(self.page.url),
            http_status=ev.get("http_status"),
            screenshot_png_b64=shot,
            dom_excerpt=dom,
            details=self.mask({
                k: ev.get(k) for k in (
                    "login_form", "captcha", "match_count", "match_visible", "match_enabled", "readyState",
                    "pending_requests", "busy", "auth_error_text", "requested_url", "blocked", "covered_by", "options",
                    "action_done", "url_at_start", "loads_at_start",
                ) if ev.get(k) is not None
            }),
        )
        if self.failure is None:
            self.failure = failure
            if shot:
                self.screenshots.append({"name": "failure", "png_b64": shot})
        if etype in self.spec.handover_on and etype in FAILURE_TYPES and self.handovers < MAX_HANDOVERS:
            self.handovers += 1
            how, value, fp, extra = self.handover(failure, native)
            if how in ("retry", "resume"):
                self.recovered = True
                recovery = {"how": how, "original_selector": selector, **extra}
                self.record(action=action, selector=extra.get("selector") or selector, args=args, line=line,
                            started=started, outcome=OUTCOME_RECOVERED, error=message, fingerprint=fp,
                            recovery=recovery)
                return value
            self.record(action=action, selector=selector, args=args, line=line, started=started,
                        outcome=OUTCOME_ERROR, error=message)
            raise RunAborted(failure, str(value))
        self.record(action=action, selector=selector, args=args, line=line, started=started,
                    outcome=OUTCOME_ERROR, error=message)
        exc._anchor_failure = failure  # type: ignore[attr-defined]
        raise exc

    # --- the hand-over: the parent drives the paused run ------------------------------------
    def handover(self, failure: Failure, native: Callable) -> tuple[str, Any, dict | None, dict]:
        self.send({"t": "handover", "failure": failure.to_dict(), "n": self.handovers})
        while True:
            msg = self.chan.recv()
            if msg is None:
                os._exit(3)  # the parent is gone
            if msg.get("t") != "cmd":
                continue
            op, cid = msg.get("op"), msg.get("id")
            try:
                if op == "retry_step" and failure.details.get("action_done"):
                    self.reply(cid, {"ok": False, "error": "the step's action already happened (it timed out waiting "
                                     "for the page it led to): doing it again could submit twice; wait, then resume"})
                    continue
                if op == "retry_step":
                    ov = {k: msg[k] for k in ("selector", "url", "timeout") if msg.get(k) is not None}
                    try:
                        value, fp = native(ov)
                    except (PlaywrightError, PageCheckError, BlockedNavigation) as exc:
                        self.reply(cid, {"ok": False, "error": self.mask(str(exc).split("\nCall log:")[0])})
                        continue
                    self.reply(cid, {"ok": True, "value": self.mask(_jsonable(value)), "error": None})
                    extra = {k: v for k, v in ov.items()}
                    return "retry", value, fp, extra
                if op == "resume":
                    self.reply(cid, {"ok": True})
                    return "resume", msg.get("value"), None, {}
                if op == "abort":
                    self.reply(cid, {"ok": True})
                    return "abort", msg.get("reason") or "aborted", None, {}
                self.reply(cid, self.command(op, msg))
            except Exception as exc:  # noqa: BLE001 - a bad command must not kill the run
                self.reply(cid, {"ok": False, "error": self.mask(f"{type(exc).__name__}: {exc}".split("\nCall log:")[0])})

    def reply(self, cid: Any, payload: dict) -> None:
        self.send({"t": "reply", "id": cid, **payload})

    def _document(self, msg: dict) -> Any:
        """The page, or with `frame` (a selector for an iframe: a consent tool's banner, say) the frame in it."""
        if not msg.get("frame"):
            return self.page
        return self._iframe(msg["frame"], timeout=FRAME_LOOKUP_MS, offset=False)[0]

    def _iframe(self, selector: str, *, timeout: float, offset: bool = True) -> tuple[Any, tuple[int, int] | None]:
        """The frame the iframe `selector` finds shows and, with `offset`, where its content starts on the page (its
        elements' places in the frame plus that are their places on the page)."""
        # Briefly: a consent frame that is not there now has closed itself, or never loaded.
        iframe = Page.locator(self.page, selector).first.element_handle(timeout=timeout)
        try:
            frame = iframe.content_frame()
            start = tuple(iframe.evaluate(snapshot.FRAME_OFFSET)) if offset and frame else None
        finally:
            iframe.dispose()
        if frame is None:
            raise ValueError(f"{selector} is not a frame")
        return frame, start

    def _locator(self, document: Any, selector: str) -> Locator:
        # Page.locator, not the instrumented page's: what the agent does is not one of the task's steps.
        return Page.locator(self.page, selector) if document is self.page else document.locator(selector)

    def _target(self, msg: dict) -> Any:
        document = self._document(msg)
        if msg.get("ref") is not None:
            handle = document.evaluate_handle(snapshot.REF_HANDLE, int(msg["ref"]))
            el = handle.as_element()
            if el is None:
                raise ValueError(f"ref {msg['ref']} is gone (observe() again)")
            return el
        if msg.get("selector"):
            return self._locator(document, msg["selector"]).first
        raise ValueError("ref or selector required")

    def command(self, op: str, msg: dict) -> dict:
        page = self.page
        timeout = msg.get("timeout_ms") or self.spec.action_timeout_ms
        if op == "observe":
            document, (dx, dy) = self._iframe(msg["frame"], timeout=FRAME_LOOKUP_MS) if msg.get("frame") else (page, (0, 0))
            obs = document.evaluate(snapshot.OBSERVE, int(msg.get("max") or 3000))
            if document is not page:  # what the frame says, for the agent to tell a consent banner by
                obs["text"] = document.evaluate(snapshot.BODY_TEXT, 2000)
                # Where its elements show on the page: a fingerprint's place is the page's, not the frame's own.
                for element in obs["elements"] + obs["in_closed_menus"]:
                    element["x"], element["y"] = element["x"] + dx, element["y"] + dy
            obs["pending_requests"] = self.pending_requests
            return {"ok": True, "value": self.mask(obs)}
        if op == "screenshot":
            png = self.screenshot(timeout)
            return {"ok": True, "value": base64.b64encode(png).decode()}
        if op == "goto":
            url = msg["url"]
            self.check_url(url)
            resp = page.goto(url, timeout=msg.get("timeout_ms") or self.spec.navigation_timeout_ms)
            return {"ok": True, "status": resp.status if resp else None, "url": page.url, "error": None}
        if op == "wait":
            if msg.get("loads_after") is not None:  # a navigation under way: until the page has loaded a new document
                if self.page_loads <= int(msg["loads_after"]):
                    page.wait_for_event("load", timeout=timeout)
                page.wait_for_load_state("load", timeout=timeout)
            elif msg.get("selector"):
                Page.wait_for_selector(page, msg["selector"], timeout=timeout)
            else:
                page.wait_for_load_state(msg.get("load_state") or "load", timeout=timeout)
            return {"ok": True, "url": page.url}
        if op == "scroll":  # a turn of the wheel, as a person scrolls; the page's scroll position once it settles
            page.mouse.wheel(0, int(msg["dy"]))
            page.wait_for_timeout(SCROLL_SETTLES_MS)
            return {"ok": True, "value": page.evaluate(snapshot.SCROLL_Y)}
        if op == "covering_layer":
            return {"ok": True, "value": self.mask(self._locator(page, msg["selector"]).evaluate_all(snapshot.COVERING_LAYER))}
        if op == "selector_for":
            return {"ok": True, "value": self.selector_for(int(msg["ref"]), self._document(msg), keep=msg.get("keep"))}
        if op == "fill_secret":
            key = msg["secret_key"]
            value = self.spec.secrets
            for part in str(key).split("."):
                value = value[part]
            target = self._target(msg)
            where = target.evaluate(snapshot.DOCUMENT_URL)
            if not _on_hosts(urllib.parse.urlsplit(where).hostname or "", self.spec.secret_hosts):
                sites = ", ".join(self.spec.secret_hosts or []) or "none: no URL in its params, prompt or code"
                return {"ok": False, "error": self.mask(
                    f"secrets are typed only on the task's sites ({sites}); "
                    f"this form is on {urllib.parse.urlsplit(where).hostname or where}"
                )}
            target.fill(str(value), timeout=timeout)
            self.password_filled = True
            return {"ok": True}
        if op == "act":
            action = msg["action"]
            target = self._target(msg)
            value = msg.get("value")
            if action == "click":
                target.click(timeout=timeout)
                out = None
            elif action == "fill":
                target.fill(str(value), timeout=timeout)
                out = None
            elif action == "select":  # a string names a value or a label; {"label": ...} a label only
                if isinstance(value, dict):
                    out = target.select_option(label=str(value["label"]), timeout=timeout)
                else:
                    out = target.select_option(value, timeout=timeout)
            elif action == "press":
                target.press(str(value), timeout=timeout)
                out = None
            elif action == "check":
                target.check(timeout=timeout)
                out = None
            elif action == "uncheck":
                target.uncheck(timeout=timeout)
                out = None
            elif action == "hover":
                target.hover(timeout=timeout)
                out = None
            elif action == "inner_text":
                out = target.inner_text(timeout=timeout)
            elif action == "get_attribute":
                out = target.get_attribute(str(value), timeout=timeout)
            elif action == "input_value":
                out = target.input_value(timeout=timeout)
            else:
                raise ValueError(f"unknown action {action!r}")
            return {"ok": True, "error": None, "value": self.mask(_jsonable(out))}
        raise ValueError(f"unknown command {op!r}")

    def selector_for(self, ref: int, document: Any, *, keep: str | None = None) -> list[dict]:
        """Unique selectors for the element `ref` of `document` (the page, or a frame in it), best first; `keep`
        (the step's own selector) first of all when it finds exactly that element there."""
        candidates = document.evaluate(snapshot.SELECTOR_CANDIDATES, ref)
        if keep:
            candidates = [{"selector": keep, "kind": "original"}, *candidates]
        out = []
        seen = set()
        for c in candidates:
            sel = c["selector"]
            if sel in seen:
                continue
            seen.add(sel)
            try:
                count, same = self._locator(document, sel).evaluate_all(snapshot.VERIFY_REF, ref)
            except PlaywrightError:
                continue
            if count == 1 and same:
                out.append({**c, "count": 1})
        return self.mask(out)


def _element_method(action: str, kind: str, page_level: bool) -> Callable:
    """Build the instrumented version of Page.<action>(selector, ...) or Locator.<action>(...)."""
    base = Page if page_level else Locator
    native_method = getattr(base, action)
    takes_timeout = kind in ("write", "read", "wait")

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        rt: Runtime = self._rt
        if page_level:
            if args:
                selector, rest = args[0], args[1:]
            else:
                selector, rest = kwargs.pop("selector"), ()
            desc = selector
        else:
            rest = args
            desc = self._desc
        step_args = _step_args(action, rest, kwargs)
        strict = not page_level

        def real_loc(override: str | None) -> Locator:
            if page_level:
                return Page.locator(rt.page, override or selector)
            if override:
                return Page.locator(rt.page, override)
            return Locator(self._impl_obj)

        def native(ov: dict) -> tuple[Any, dict | None]:
            kw = dict(kwargs)
            if takes_timeout and ov.get("timeout"):
                kw["timeout"] = ov["timeout"]
            loc = real_loc(ov.get("selector"))
            fp_loc = loc.first if page_level else loc
            task = rt.start_fingerprint(fp_loc, strict) if kind in ("write", "read") else None
            try:
                if page_level:
                    value = native_method(rt.page, ov.get("selector") or selector, *rest, **_unwrap(kw))
                else:
                    value = native_method(loc, *rest, **_unwrap(kw))
            except BaseException:
                if task is not None:
                    task.cancel()
                raise
            fp = rt.finish_fingerprint(fp_loc, task, strict) if task is not None else None
            return value, fp

        return rt.perform(action=action, selector=desc, args=step_args, native=native, evidence_loc=real_loc)

    method.__name__ = action
    return method


def _step_args(action: str, rest: tuple, kwargs: dict) -> dict:
    args: dict[str, Any] = {}
    if rest:
        key = {
            "fill": "value", "type": "value", "press_sequentially": "value", "press": "key",
            "select_option": "value", "get_attribute": "name", "set_checked": "checked",
            "dispatch_event": "type", "set_input_files": "files",
        }.get(action, "args")
        args[key] = rest[0] if len(rest) == 1 else list(rest)
    for k, v in kwargs.items():
        args[k] = v._chain() if isinstance(v, InstrumentedLocator) else v
    return {k: _jsonable(v) for k, v in args.items()}


# kind: write (acts; fingerprint), read (reads an element; fingerprint), query (no waiting), wait
PAGE_ELEMENT_ACTIONS = {
    "click": "write", "dblclick": "write", "fill": "write", "type": "write", "press": "write",
    "check": "write", "uncheck": "write", "set_checked": "write", "select_option": "write",
    "hover": "write", "focus": "write", "tap": "write", "set_input_files": "write",
    "dispatch_event": "write",
    "inner_text": "read", "text_content": "read", "inner_html": "read", "get_attribute": "read",
    "input_value": "read",
    "is_visible": "query", "is_hidden": "query", "is_enabled": "query", "is_disabled": "query",
    "is_checked": "query", "is_editable": "query",
    "wait_for_selector": "wait",
}
LOCATOR_ACTIONS = {
    **{k: v for k, v in PAGE_ELEMENT_ACTIONS.items() if k != "wait_for_selector"},
    "press_sequentially": "write", "clear": "write", "scroll_into_view_if_needed": "write",
    "select_text": "write", "blur": "write",
    "wait_for": "wait", "count": "query", "all_inner_texts": "query", "all_text_contents": "query",
}
GET_BY = ("get_by_role", "get_by_text", "get_by_label", "get_by_placeholder", "get_by_test_id",
          "get_by_alt_text", "get_by_title")


class InstrumentedLocator(Locator):
    """A Playwright Locator whose actions are recorded as steps (and can be handed over).

    `_desc` is the readable selector of the step: the plain selector for `page.locator(sel)` (so
    that it reads like `page.click(sel)` and can be found as a literal in the task code), the call
    chain otherwise: `locator("li").filter(has_text="Tea").get_by_role("button", name="Add")`.
    """

    def __init__(self, impl: Any, rt: Runtime, desc: str, raw: bool = False) -> None:
        super().__init__(impl)
        self._rt = rt
        self._desc = desc
        self._raw = raw

    def _chain(self) -> str:
        return f"locator({json.dumps(self._desc)})" if self._raw else self._desc

    def _wrap(self, loc: Locator, suffix: str) -> InstrumentedLocator:
        return InstrumentedLocator(loc._impl_obj, self._rt, f"{self._chain()}.{suffix}")

    def locator(self, selector_or_locator: Any, **kwargs: Any) -> InstrumentedLocator:
        if isinstance(selector_or_locator, InstrumentedLocator):
            sel_desc = selector_or_locator._chain()
            selector_or_locator = Locator(selector_or_locator._impl_obj)
        else:
            sel_desc = json.dumps(selector_or_locator)
        loc = Locator.locator(Locator(self._impl_obj), selector_or_locator, **_unwrap(kwargs))
        return self._wrap(loc, f"locator({sel_desc})")

    @property
    def first(self) -> InstrumentedLocator:  # type: ignore[override]
        return self._wrap(Locator(self._impl_obj).first, "first")

    @property
    def last(self) -> InstrumentedLocator:  # type: ignore[override]
        return self._wrap(Locator(self._impl_obj).last, "last")

    def nth(self, index: int) -> InstrumentedLocator:
        return self._wrap(Locator(self._impl_obj).nth(index), f"nth({index})")

    def filter(self, **kwargs: Any) -> InstrumentedLocator:
        return self._wrap(Locator(self._impl_obj).filter(**_unwrap(kwargs)), _fmt_call("filter", (), kwargs))

    def and_(self, locator: Locator) -> InstrumentedLocator:
        other = locator._chain() if isinstance(locator, InstrumentedLocator) else "locator"
        return self._wrap(Locator(self._impl_obj).and_(Locator(locator._impl_obj)), f"and_({other})")

    def or_(self, locator: Locator) -> InstrumentedLocator:
        other = locator._chain() if isinstance(locator, InstrumentedLocator) else "locator"
        return self._wrap(Locator(self._impl_obj).or_(Locator(locator._impl_obj)), f"or_({other})")

    def all(self) -> list[InstrumentedLocator]:
        return [self._wrap(loc, f"nth({i})") for i, loc in enumerate(Locator(self._impl_obj).all())]

    def frame_locator(self, selector: str) -> InstrumentedFrameLocator:
        return InstrumentedFrameLocator(Locator(self._impl_obj).frame_locator(selector)._impl_obj, self._rt)

    @property
    def content_frame(self) -> InstrumentedFrameLocator:
        return InstrumentedFrameLocator(Locator(self._impl_obj).content_frame._impl_obj, self._rt)


class InstrumentedFrameLocator(FrameLocator):
    """`page.frame_locator(sel)`: the locators it makes are instrumented too, so the steps of a form in an iframe are
    recorded, fingerprinted and handed over like the page's. Their readable selector is Playwright's own selector for
    the element, `#form >> internal:control=enter-frame >> #name`: one string a hand-over can retry and codegen can
    read back into `frame_locator("#form").locator("#name")`."""

    def __init__(self, impl: Any, rt: Runtime) -> None:
        super().__init__(impl)
        self._rt = rt

    def _inside(self, loc: Locator) -> InstrumentedLocator:
        return InstrumentedLocator(loc._impl_obj, self._rt, loc._impl_obj._selector, raw=True)

    def locator(self, selector_or_locator: Any, **kwargs: Any) -> InstrumentedLocator:
        if isinstance(selector_or_locator, InstrumentedLocator):
            selector_or_locator = Locator(selector_or_locator._impl_obj)
        return self._inside(FrameLocator(self._impl_obj).locator(selector_or_locator, **_unwrap(kwargs)))

    def frame_locator(self, selector: str) -> InstrumentedFrameLocator:
        return InstrumentedFrameLocator(FrameLocator(self._impl_obj).frame_locator(selector)._impl_obj, self._rt)

    @property
    def owner(self) -> InstrumentedLocator:
        return self._inside(FrameLocator(self._impl_obj).owner)

    @property
    def first(self) -> InstrumentedFrameLocator:  # type: ignore[override]
        return InstrumentedFrameLocator(FrameLocator(self._impl_obj).first._impl_obj, self._rt)

    @property
    def last(self) -> InstrumentedFrameLocator:  # type: ignore[override]
        return InstrumentedFrameLocator(FrameLocator(self._impl_obj).last._impl_obj, self._rt)

    def nth(self, index: int) -> InstrumentedFrameLocator:
        return InstrumentedFrameLocator(FrameLocator(self._impl_obj).nth(index)._impl_obj, self._rt)


def _frame_get_by(name: str) -> Callable:
    def method(self: InstrumentedFrameLocator, *args: Any, **kwargs: Any) -> InstrumentedLocator:
        return self._inside(getattr(FrameLocator, name)(FrameLocator(self._impl_obj), *args, **kwargs))

    method.__name__ = name
    return method


def _get_by(name: str, page_level: bool) -> Callable:
    def method(self: Any, *args: Any, **kwargs: Any) -> InstrumentedLocator:
        base = Page if page_level else Locator
        real_self = self if page_level else Locator(self._impl_obj)
        loc = getattr(base, name)(real_self, *args, **kwargs)
        call = _fmt_call(name, args, kwargs)
        desc = call if page_level else f"{self._chain()}.{call}"
        return InstrumentedLocator(loc._impl_obj, self._rt, desc)

    method.__name__ = name
    return method


for _name, _kind in LOCATOR_ACTIONS.items():
    setattr(InstrumentedLocator, _name, _element_method(_name, _kind, page_level=False))
for _name in GET_BY:
    setattr(InstrumentedLocator, _name, _get_by(_name, page_level=False))
for _name in GET_BY:
    setattr(InstrumentedFrameLocator, _name, _frame_get_by(_name))


class InstrumentedPage(Page):
    """The `page` task code receives: a real sync Page whose actions are recorded as steps."""

    def __init__(self, impl: Any, rt: Runtime) -> None:
        super().__init__(impl)
        self._rt = rt

    def locator(self, selector: str, **kwargs: Any) -> InstrumentedLocator:  # type: ignore[override]
        loc = Page.locator(self, selector, **_unwrap(kwargs))
        if kwargs:
            return InstrumentedLocator(loc._impl_obj, self._rt, _fmt_call("locator", (selector,), kwargs))
        return InstrumentedLocator(loc._impl_obj, self._rt, selector, raw=True)

    def frame_locator(self, selector: str) -> InstrumentedFrameLocator:  # type: ignore[override]
        return InstrumentedFrameLocator(Page.frame_locator(self, selector)._impl_obj, self._rt)

    def goto(self, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
        rt = self._rt

        def native(ov: dict) -> tuple[Any, None]:
            target = ov.get("url") or url
            rt.check_url(target)
            kw = dict(kwargs)
            if ov.get("timeout"):
                kw["timeout"] = ov["timeout"]
            resp = Page.goto(rt.page, target, **kw)
            rt.check_landing(target, resp)
            return resp, None

        return rt.perform(action="goto", selector=None, args={"url": url, **{k: _jsonable(v) for k, v in kwargs.items()}}, native=native,
                          navigation=True, requested_url=url)

    def _nav(self, action: str, *args: Any, **kwargs: Any) -> Any:
        rt = self._rt
        method = getattr(Page, action)

        def native(ov: dict) -> tuple[Any, None]:
            kw = dict(kwargs)
            if ov.get("timeout"):
                kw["timeout"] = ov["timeout"]
            return method(rt.page, *args, **kw), None

        step_args = {"args": [_jsonable(a) for a in args], **{k: _jsonable(v) for k, v in kwargs.items()}}
        if not args:
            step_args.pop("args")
        return rt.perform(action=action, selector=None, args=step_args, native=native, navigation=True)

    def reload(self, **kwargs: Any) -> Any:  # type: ignore[override]
        return self._nav("reload", **kwargs)

    def go_back(self, **kwargs: Any) -> Any:  # type: ignore[override]
        return self._nav("go_back", **kwargs)

    def go_forward(self, **kwargs: Any) -> Any:  # type: ignore[override]
        return self._nav("go_forward", **kwargs)

    def wait_for_url(self, url: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return self._nav("wait_for_url", url, **kwargs)

    def wait_for_load_state(self, state: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        return self._nav("wait_for_load_state", *((state,) if state else ()), **kwargs)


for _name, _kind in PAGE_ELEMENT_ACTIONS.items():
    setattr(InstrumentedPage, _name, _element_method(_name, _kind, page_level=True))
for _name in GET_BY:
    setattr(InstrumentedPage, _name, _get_by(_name, page_level=True))


# --- process setup ------------------------------------------------------------------------
def drop_privileges(uid: int, nproc: int) -> None:
    """Become the run's own unprivileged uid: RLIMIT_NPROC then counts only this run's processes."""
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise RuntimeError("could not drop privileges")


def _cpu_ms() -> dict:
    """CPU spent so far by this child and its Playwright driver (for capacity planning)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    out = {"cpu_child_ms": round((own.ru_utime + own.ru_stime) * 1000, 1)}
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if fields[1] == me:  # our child: the Playwright driver
                ms = (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
                out["cpu_driver_ms"] = round(out.get("cpu_driver_ms", 0) + ms, 1)
        except (OSError, ValueError, IndexError):
            continue
    return out


def _processes_of(uid: int) -> int:
    """Threads of all processes of uid (what RLIMIT_NPROC counts)."""
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                st = os.stat(f"/proc/{pid}")
                if st.st_uid == uid:
                    count += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                pass
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--cdp", required=True)
    parser.add_argument("--uid", type=int, default=None)
    parser.add_argument("--nproc", type=int, default=128)
    opts = parser.parse_args(argv)
    t_start = time.perf_counter()
    sock = socket.socket(fileno=opts.fd)
    chan = Channel(sock)
    if opts.uid is not None:
        drop_privileges(opts.uid, opts.nproc)
    else:
        # Not root: no uid of our own, and RLIMIT_NPROC counts every process of this user, so
        # leave room for what the user already runs. Weaker than the per-run uid (see sandbox.py).
        mine = _processes_of(os.getuid())
        resource.setrlimit(resource.RLIMIT_NPROC, (mine + opts.nproc, mine + opts.nproc))
    timings: dict[str, float] = {}
    pw = sync_playwright().start()
    timings["driver_ms"] = round((time.perf_counter() - t_start) * 1000, 1)
    chan.send({"t": "ready", "pid": os.getpid(), "timings": dict(timings)})

    # Connect only when told to (or when the spec comes): a Playwright client attached to the
    # shared browser processes every page's events, so a warm spare must not be connected while
    # another run is in progress (measured: ~40% slower steps for the run).
    msg = chan.recv()
    if msg is None:
        os._exit(0)
    t = time.perf_counter()
    try:
        browser = pw.chromium.connect_over_cdp(opts.cdp, timeout=20000)
        context = browser.new_context(accept_downloads=False, viewport={"width": 1280, "height": 720})
        page = context.new_page()
    except Exception as exc:  # noqa: BLE001 - the browser is gone: the runner's problem, not the task's
        chan.send({"t": "infra_error", "error": f"cannot reach the browser: {exc}".split("\nCall log:")[0]})
        _flush()
        os._exit(2)
    timings["connect_ms"] = round((time.perf_counter() - t) * 1000, 1)
    if msg.get("t") == "connect":
        chan.send({"t": "connected", "timings": dict(timings)})
        msg = chan.recv()
    if msg is None or msg.get("t") != "spec":
        os._exit(0)
    if not browser.is_connected() or page.is_closed():
        chan.send({"t": "infra_error", "error": "the browser went away before the run started"})
        _flush()
        os._exit(2)
    spec = RunSpec.from_dict(msg["spec"])
    cpu_used = resource.getrusage(resource.RUSAGE_SELF)
    used = int(cpu_used.ru_utime + cpu_used.ru_stime) + 1
    cpu_limit = used + int(spec.wall_timeout_s) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit, cpu_limit + 5))

    context.set_default_timeout(spec.action_timeout_ms)
    context.set_default_navigation_timeout(spec.navigation_timeout_ms)
    task_file = os.path.join(os.getcwd(), "task.py")
    rt = Runtime(chan, page, context, spec, task_file)
    _install_listeners(rt, context)
    chan.send({"t": "running"})  # from here on, an infra_error on the channel is the task's own writing
    result = run_task(rt, spec, task_file)
    result["timings"].update(timings)
    result["timings"]["fingerprint_ms"] = round(rt.fp_ms, 1)
    result["timings"].update(_cpu_ms())
    t = time.perf_counter()
    _flush()
    rt.send({"t": "result", "result": result})
    try:
        context.close()
        browser.close()  # over CDP this disconnects; the pool's Chromium keeps running
        pw.stop()
    except Exception:  # noqa: BLE001, S110 - the parent kills whatever is left anyway
        pass
    chan.send({"t": "closed", "teardown_ms": round((time.perf_counter() - t) * 1000, 1)})
    _flush()
    os._exit(0)


def _frame_of(request: Any) -> Any:
    try:
        return request.frame
    except Exception:  # noqa: BLE001 - a service worker's request has no frame
        return None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _install_listeners(rt: Runtime, context: Any) -> None:
    def on_request(req: Any) -> None:
        rt.pending_requests += 1
        # Noted here, not in the guard below: a page's own route comes before the context's, and can let the
        # navigation through. A redirect is no route's to see (the README's known limits): left as it was.
        if (rt.allowed_hosts is not None and req.is_navigation_request() and _is_main_frame(req)
                and req.redirected_from is None and not rt.host_allowed(urllib.parse.urlsplit(req.url).hostname or "")):
            rt.left_sites.append(req.url)

    def on_done(req: Any) -> None:
        rt.pending_requests = max(0, rt.pending_requests - 1)
        rt.navigating.pop(req, None)  # its page committed already, or never will (a download, a 204, an error)

    def on_load(_page: Any) -> None:
        rt.page_loads += 1

    def on_navigation_requested(req: Any) -> None:
        if req.is_navigation_request():
            rt.navigations_requested += 1
            rt.navigating[req] = rt.navigations_requested

    def on_frame_detached(frame: Any) -> None:  # its navigations end with it
        for req in [req for req in rt.navigating if _frame_of(req) is frame]:
            rt.navigating.pop(req, None)

    context.on("request", on_request)
    context.on("requestfinished", on_done)
    context.on("requestfailed", on_done)
    rt.page.on("request", on_navigation_requested)
    rt.page.on("framedetached", on_frame_detached)
    rt.page.on("load", on_load)

    if rt.allowed_hosts is not None:
        def guard(route: Any) -> None:
            req = route.request
            host = urllib.parse.urlsplit(req.url).hostname or ""
            if not req.is_navigation_request() or rt.host_allowed(host):
                route.fallback()
            elif not _is_main_frame(req) and host.lower() in rt.frame_hosts:
                route.fallback()  # a frame the page embeds from a host the heal saw it use (a consent tool's)
            else:
                rt.blocked.append(req.url)
                route.abort("blockedbyclient")

        context.route("**/*", guard)


# What contained code may not do from Python (CPython audit events). The static gate refuses the obvious ways to
# these; this is the floor under it when something gets past: a hook, once added, cannot be removed.
CONTAINED_EVENTS = frozenset({
    "socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
    "socket.gethostbyaddr", "socket.getnameinfo", "socket.sendto", "socket.sendmsg",
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
})


_REFUSED_WHEN_CONTAINED = "is not allowed: machine-written task code reaches the web only through its page"

# What contained code may not ask the Playwright driver for, by protocol object type and method ("*": every
# method). The driver is a Node process of its own, out of the audit hook's sight: it would launch a program as a
# "browser", fetch from any host past the page's route guard, open a browser or context without that guard, or
# read and write files for the code.
CONTAINED_DRIVER_CALLS: dict[str, frozenset[str]] = {
    "BrowserType": frozenset({"*"}),
    "Playwright": frozenset({"newRequest"}),
    "APIRequestContext": frozenset({"*"}),
    "LocalUtils": frozenset({"*"}),
    "Browser": frozenset({
        "newContext", "newContextForReuse", "newBrowserCDPSession", "startTracing", "startServer", "stopServer",
        "killForTests",
    }),
    # Interception patterns: dropping the context's route would drop the host guard with it.
    "BrowserContext": frozenset({
        "newCDPSession", "setNetworkInterceptionPatterns", "setWebSocketInterceptionPatterns", "startRecording",
        "showRecorder", "pause",
    }),
    "Tracing": frozenset({"*"}),
    "Artifact": frozenset({"saveAs", "saveAsStream"}),
    "DebugController": frozenset({"*"}),
    "SocksSupport": frozenset({"*"}),
    "Electron": frozenset({"*"}),
    "Android": frozenset({"*"}),
    "AndroidDevice": frozenset({"*"}),
}
# Parameters by which any call has the driver read the worker machine's files (setInputFiles given paths, not bytes).
CONTAINED_DRIVER_PARAMS = ("localPaths", "localDirectory")


def contain_python() -> None:
    """From now on this process opens no socket, resolves no name, and starts or signals no process, and its
    Playwright driver does none of that for it either. The connections it already has (to the worker, to the
    driver) keep working."""

    def refuse(event: str, _args: tuple) -> None:
        if event in CONTAINED_EVENTS:
            raise PermissionError(f"{event} {_REFUSED_WHEN_CONTAINED}")

    sys.addaudithook(refuse)
    _contain_driver()


def _contain_driver() -> None:
    # Every call of the sync API reaches the driver through this one method. Contained code cannot undo the
    # wrapper: the safety gate refuses private modules and attributes, and the audit hook refuses ctypes.
    from playwright._impl.connection import Connection

    send = Connection.send_message_to_server

    def send_unless_contained(self: Any, owner: Any, method: str, params: Any, options: Any) -> Any:
        refused = CONTAINED_DRIVER_CALLS.get(owner._type, frozenset())
        if method in refused or "*" in refused:
            raise PermissionError(f"{owner._type}.{method} {_REFUSED_WHEN_CONTAINED}")
        if isinstance(params, dict) and any(params.get(name) for name in CONTAINED_DRIVER_PARAMS):
            raise PermissionError(f"{owner._type}.{method} of a local file {_REFUSED_WHEN_CONTAINED}")
        return send(self, owner, method, params, options)

    Connection.send_message_to_server = send_unless_contained


def run_task(rt: Runtime, spec: RunSpec, task_file: str) -> dict:
    t = time.perf_counter()
    status, output, error_type, error_message = "ok", None, None, None
    details: dict[str, Any] = {}
    try:
        with open(task_file, "w") as fh:
            fh.write(spec.code)
        linecache.cache[task_file] = (len(spec.code), None, spec.code.splitlines(True), task_file)
        code = compile(spec.code, task_file, "exec")
        namespace: dict[str, Any] = {"__name__": "anchor_task", "__file__": task_file}
        if spec.contained:
            contain_python()
        exec(code, namespace)  # noqa: S102 - running the task is the point; the sandbox contains it
        run = namespace.get("run")
        if not callable(run):
            raise TypeError("task code defines no run(page, params) function")
        params = dict(spec.params)
        params["secrets"] = spec.secrets
        output = run(InstrumentedPage(rt.page._impl_obj, rt), params)
        try:
            encoded = json.dumps(output, allow_nan=False)  # NaN is not JSON, and no JSON column stores it
        except (TypeError, ValueError) as exc:
            raise TypeError(f"run() returned a value that is not JSON: {exc}") from None
        if len(encoded) > MAX_OUTPUT_BYTES:
            raise ValueError(f"run() returned {len(encoded)} bytes of output (limit {MAX_OUTPUT_BYTES})")
    except RunAborted as exc:
        status, error_type, error_message = "error", exc.failure.type, rt.mask(str(exc))
    except BaseException as exc:  # noqa: BLE001 - every way the task can end is reported
        if os.getpid() != rt.main_pid:
            os._exit(1)
        status = "error"
        failure = getattr(exc, "_anchor_failure", None)
        if failure is not None:
            error_type, error_message = failure.type, failure.message
        elif isinstance(exc, (PlaywrightError, BlockedNavigation, PageCheckError)):
            ev = rt.evidence(exc, selector=None, evidence_loc=None, navigation=False, requested_url=None)
            error_type = exc.error_type if isinstance(exc, PageCheckError) else errors.classify(ev)
            error_message = rt.mask(str(exc).split("\nCall log:")[0])
        else:
            error_type = SCRIPT_ERROR
            error_message = rt.mask(_script_error_message(exc, task_file, spec))
        details["traceback"] = rt.mask(_task_traceback(exc, task_file))
        if rt.failure is None or failure is None and error_type == SCRIPT_ERROR:
            lines = [fs.lineno for fs in traceback.extract_tb(exc.__traceback__) if fs.filename == task_file]
            if isinstance(exc, SyntaxError) and exc.filename == task_file:
                lines = [exc.lineno]
            shot, dom = rt.capture()
            rt.failure = Failure(
                type=error_type, message=error_message, exception=type(exc).__name__,
                line=lines[-1] if lines else None, url=rt.mask(rt.page.url), screenshot_png_b64=shot,
                dom_excerpt=dom, details={},
            )
            if shot:
                rt.screenshots.append({"name": "failure", "png_b64": shot})
        if rt.failure is not None:
            rt.failure.details.update(details)
    if os.getpid() != rt.main_pid:
        os._exit(0)
    if rt.left_sites and rt.allowed_hosts is not None and status == "ok":
        # Code kept to the task's sites (a validation run's unreviewed code) that tried to leave them fails,
        # even when it caught the block and went on.
        status, output, error_type = "error", None, "navigation_error"
        error_message = rt.mask(f"the run tried to leave the task's sites: navigation to {rt.left_sites[0]!r} was blocked")
    if rt.blocked and status == "ok":
        details["blocked_navigations"] = rt.mask(rt.blocked)
    task_ms = round((time.perf_counter() - t) * 1000, 1)
    failure = rt.failure
    if status == "ok" and not rt.recovered:
        failure = None
    return {
        "status": status,
        "output": rt.mask(output) if status == "ok" else None,
        "error_type": error_type,
        "error_message": error_message,
        "failure": failure.to_dict() if failure else None,
        "screenshots": rt.screenshots if status != "ok" or rt.recovered else [],
        "recovered": rt.recovered,
        "timings": {"task_ms": task_ms},
    }


def _on_hosts(host: str, hosts: list[str] | None) -> bool:
    """Whether `host` is one of `hosts` (lowercase) or a subdomain of one (None: any host)."""
    if hosts is None:
        return True
    host = host.lower()
    return bool(host) and any(host == h or host.endswith("." + h) for h in hosts)


def _is_main_frame(request: Any) -> bool:
    frame = _frame_of(request)
    return frame is not None and frame.parent_frame is None


def _script_error_message(exc: BaseException, task_file: str, spec: RunSpec) -> str:
    if isinstance(exc, SyntaxError) and exc.filename == task_file:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    if isinstance(exc, MemoryError):
        return "MemoryError: the task exceeded the sandbox memory limit"
    if isinstance(exc, SystemExit):
        return f"the task called exit({exc.code})"
    lines = [fs.lineno for fs in traceback.extract_tb(exc.__traceback__) if fs.filename == task_file]
    where = f" (line {lines[-1]})" if lines else ""
    text = str(exc)
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"


def _task_traceback(exc: BaseException, task_file: str) -> str:
    """The task's own frames only: the harness and Playwright internals are noise to its author."""
    try:
        frames = [fs for fs in traceback.extract_tb(exc.__traceback__) if fs.filename == task_file]
        lines = ["Traceback (task code):"]
        lines += [f"  line {fs.lineno}, in {fs.name}: {(fs.line or '').strip()}" for fs in frames]
        lines += [ln.rstrip() for ln in traceback.format_exception_only(exc)]
        return "\n".join(lines)[-4000:]
    except Exception:  # noqa: BLE001
        return repr(exc)


if __name__ == "__main__":
    main()

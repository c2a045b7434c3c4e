"""Failure classification: which of the five trigger types (or script_error) a failure is.

`classify(evidence)` is pure: it looks only at a dict of facts gathered in the child when a call
failed. Playwright reports a missing element as a TimeoutError, so the exception class alone says
little: what was being waited for, how many elements matched, whether the page had settled, the
HTTP status, a login form and captcha widgets decide.

Evidence keys (all optional):
  exception        exception class name ("TimeoutError", "Error", "KeyError", ...)
  message          exception message
  playwright       True when the exception came from Playwright (else it is the task's own error)
  blocked          True when the sandbox refused a navigation (scheme or host not allowed)
  navigation       True for goto/reload/wait_for_url/... (waiting for a page rather than an element)
  selector         the selector that was waited for, if any
  http_status      status of the main document (response of goto, or of the current page)
  requested_url    URL the task asked for;  url: URL the page is at
  match_count      elements matching the selector when the call failed (None: unknown)
  match_visible    first match visible;  match_enabled: first match enabled
  covered_by       the layer drawn over the first match ({tag, id, class, text, xpath}): a banner, a modal
  options          the first match's options as [value, label] pairs, when it is a select
  action_done      Playwright's call log says the action itself happened ("click action done") before the
                   call timed out waiting for the navigation it started;  url_at_start: the URL before it;
                   loads_at_start: how many documents the page had loaded before it (its answer is the next)
  readyState       document.readyState;  pending_requests: requests in flight;  busy: loading UI shown
  login_form       a visible password field;  auth_error_text: "invalid password"-like text shown
  login_expected   the task logs in itself (its code handles passwords/secrets)
  password_filled  the task typed a secret and then submitted (clicked/pressed) in this run
  captcha          "recaptcha" | "hcaptcha" | "turnstile" | "challenge" | "captcha" | None
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from .protocol import SCRIPT_ERROR

_LOGIN_URL = re.compile(
    r"(log[-_]?in|sign[-_]?in|/auth(enticate|orize)?(/|$|\?)|/sso(/|$)|session/new|/account/login|/oauth|/saml)",
    re.IGNORECASE,
)
_CLOSED = re.compile(r"Target (page, context or browser|closed)|has been closed|Browser closed|Connection closed", re.IGNORECASE)
_NET_ERR = re.compile(r"net::ERR_[A-Z_]+|NS_ERROR_|Navigation failed because", re.IGNORECASE)


def is_login_url(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return bool(_LOGIN_URL.search(parts.path + ("?" + parts.query if parts.query else "")))


def net_error(message: str) -> str | None:
    m = re.search(r"net::ERR_[A-Z_]+", message or "")
    return m.group(0) if m else None


def classify(evidence: dict[str, Any]) -> str:
    """Map the evidence of one failed call to a failure type or "script_error"."""
    e = evidence
    message = e.get("message") or ""
    if e.get("blocked"):
        return SCRIPT_ERROR  # the script tried to leave the sandbox: not a site change
    if not e.get("playwright"):
        return SCRIPT_ERROR  # AssertionError, KeyError, TypeError, ... in the task's own code
    if _CLOSED.search(message) and not _NET_ERR.search(message):
        return SCRIPT_ERROR  # the script closed its page/context, or the browser went away

    if e.get("captcha"):
        return "captcha_detected"

    status = e.get("http_status")
    if status in (401, 407) or (status == 403 and not e.get("captcha")):
        return "authentication_failure"

    url = e.get("url") or ""
    requested = e.get("requested_url") or ""
    if url and is_login_url(url) and not is_login_url(requested) and (e.get("navigation") or requested):
        return "authentication_failure"  # redirected to a login page

    if url and is_login_url(url) and not e.get("login_expected") and e.get("match_count") == 0:
        return "authentication_failure"  # the session was lost mid-task: we are on a login page

    if e.get("login_form") or e.get("auth_error_text"):
        login_unexpected = not e.get("login_expected")
        credentials_rejected = bool(e.get("password_filled")) or bool(e.get("auth_error_text"))
        missing = e.get("match_count") in (0, None)
        if (login_unexpected or credentials_rejected) and (e.get("navigation") or missing):
            return "authentication_failure"

    if status in (404, 410) or (isinstance(status, int) and status >= 500):
        return "navigation_error"
    if _NET_ERR.search(message):
        return "navigation_error"

    timed_out = e.get("exception") == "TimeoutError" or "Timeout" in message and "exceeded" in message
    if timed_out and e.get("action_done"):
        return "timeout"  # the action happened, then the page it led to was slow: nothing is missing
    if e.get("navigation"):
        return "timeout" if timed_out else "navigation_error"

    if "strict mode violation" in message:
        return "element_not_found"  # the selector no longer identifies one element

    count = e.get("match_count")
    if timed_out:
        if count:
            return "timeout"  # present but never became visible/enabled/stable in time
        if _page_loading(e):
            return "timeout"
        if count == 0:
            return "element_not_found"
        return "timeout"
    # Other element errors: "Element is not an <input>", "not a <select>", detached, ...
    if e.get("selector"):
        if count == 0 and _page_loading(e):
            return "timeout"
        return "element_not_found"
    return SCRIPT_ERROR


def _page_loading(e: dict[str, Any]) -> bool:
    return (
        (e.get("readyState") not in (None, "complete"))
        or bool(e.get("pending_requests"))
        or bool(e.get("busy"))
    )


def describe(error_type: str, evidence: dict[str, Any]) -> str:
    """A one-line human reason for the failure, used as the run's error message prefix."""
    sel = evidence.get("selector")
    status = evidence.get("http_status")
    if error_type == "element_not_found":
        return f"no element matches {sel}" if evidence.get("match_count") == 0 else f"{sel} does not identify the element"
    if error_type == "timeout":
        if evidence.get("navigation"):
            return "the page did not load in time"
        if evidence.get("action_done"):
            return f"{sel} was acted on, but the page it led to did not load in time"
        if layer := evidence.get("covered_by"):
            return f"{sel} is covered by {layer_name(layer)}"
        if evidence.get("match_count"):
            return f"{sel} matched but never became actionable"
        return f"timed out waiting for {sel} while the page was still loading"
    if error_type == "navigation_error":
        return f"navigation failed ({status or net_error(evidence.get('message') or '') or 'error'})"
    if error_type == "authentication_failure":
        if status in (401, 403, 407):
            return f"authentication required (HTTP {status})"
        if evidence.get("auth_error_text"):
            return "credentials were rejected"
        return "a login page appeared"
    if error_type == "captcha_detected":
        return f"captcha challenge ({evidence.get('captcha')})"
    return "script error"


def layer_name(layer: dict[str, Any]) -> str:
    """`<div id="consent">` (“We use cookies…”): how a reviewer recognises a covering layer."""
    attrs = f' id="{layer["id"]}"' if layer.get("id") else (f' class="{layer["class"]}"' if layer.get("class") else "")
    text = (layer.get("text") or "").strip()
    if len(text) > 40:
        text = text[:40] + "\u2026"
    quoted = f" (\u201c{text}\u201d)" if text else ""
    return f"<{layer.get('tag') or 'div'}{attrs}>{quoted}"

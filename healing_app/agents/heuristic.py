"""The offline runtime agent: heals with the locator engine, bounded waits, link search and the task's login.

It needs no model and no network. Each failure type has one small strategy; every step it takes is
appended to the trace so a reviewer can replay its reasoning.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urljoin, urlparse

from rapidfuzz import fuzz

from healing_app import codegen
from healing_app.agents.base import Patch, TakeoverContext, TakeoverOutcome
from healing_app.locate import LocateResult, locate
from healing_app.playwright_selectors import (
    fingerprint_from_selector,
    plain_selector,
    rejected_indexes,
    selectors_in_code,
)
from tasks_app.runner.errors import layer_name
from tasks_app.runner.protocol import ENTER_FRAME
from tasks_app.runner.sandbox import HandoverError

# Bounded budgets: a takeover must finish well inside the run's wall clock.
TIMEOUT_RETRY_MS = 20_000
NAVIGATION_RETRY_DELAYS_S = (0.5, 1.5, 3.0)
LINK_MATCH_MIN = 55.0
MOVED_PAGE_CANDIDATES = 8
# How alike (0-100) a candidate page's elements read to what the task read there before: a page at
# SAME_CONTENT is the moved one whatever its link says; one at SIMILAR_CONTENT only if its link scores
# NAMED_ALIKE against the old path.
SAME_CONTENT = 90.0
SIMILAR_CONTENT = 75.0
NAMED_ALIKE = 80.0
# Below this many characters a remembered text is compared whole (a "42" is inside many pages).
CONTAINED_TEXT_MIN = 8
# Words sites use interchangeably when they rename a section.
SYNONYMS = (
    {"catalog", "catalogue", "products", "product", "shop", "store", "items"},
    {"contact", "contacts", "support", "help", "feedback"},
    {"account", "profile", "settings", "me", "my"},
    {"login", "signin", "sign", "log"},
    {"cart", "basket", "bag"},
    {"checkout", "pay", "payment"},
    {"about", "company", "team"},
    {"news", "blog", "articles", "posts"},
)
USERNAME_HINTS = ("email", "user", "login", "account", "name")
# How long the password field of a two-step login may take to appear after the user name step.
PASSWORD_STEP_MS = 8_000
# Layers one takeover closes over an element: a cookie banner and a pop-up, say. More is a wall, not a banner.
MAX_LAYERS = 3
# How long a closed layer may take to go (a fade-out, a "Saving your choices" message) before it counts as still there.
LAYER_GOES_S = 2.0
# How long a menu may take to open (a slide-down) after its opener is hovered or clicked.
MENU_OPENS_MS = 1_500
# Looking further down the page for an element rendered once scrolled into view: a turn of the wheel a little
# shorter than a screen (so nothing is skipped), a moment to see whether it rendered, and how far to go at most.
SCROLL_STEP_PX = 600
SCROLL_LOOK_MS = 200
SCROLL_MAX_PX = 12_000
# A list that shows more only when asked (a "Load more" button under it): how often to press it at most, and how
# long each batch may take to arrive. The new version may press it up to LOAD_MORE_IN_CODE times, as the list grows.
LOAD_MORE_MAX = 10
LOAD_MORE_WAIT_MS = 3_000
LOAD_MORE_IN_CODE = 20
LOAD_MORE_PRESS_MS = 2_000
_LOADS_MORE = re.compile(
    r"^(load|show|see|view) more\b|^more (results|items|products|posts|articles|stories|reviews)\b"
    r"|^mehr (laden|anzeigen)\b|^(afficher|voir|charger) plus\b|^(cargar|ver|mostrar) m[aá]s\b",
    re.IGNORECASE,
)


@dataclass
class _Run:
    """Bookkeeping for one takeover: the trace and the outcome being built."""

    context: TakeoverContext
    handover: object
    trace: list

    def log(self, action: str, **details) -> None:
        self.trace.append({"at": round(time.time(), 3), "action": action, **details})


class HeuristicAgent:
    kind = "heuristic"

    def take_over(self, context: TakeoverContext, handover) -> TakeoverOutcome:
        run = _Run(context=context, handover=handover, trace=[])
        strategy = {
            "element_not_found": self._element_not_found,
            "timeout": self._timeout,
            "navigation_error": self._navigation_error,
            "authentication_failure": self._authentication_failure,
            "captcha_detected": self._captcha,
        }.get(context.failure.get("type"))
        if strategy is None:
            return TakeoverOutcome(recovered=False, reason="not a healable failure type")
        outcome = strategy(run)
        outcome.trace = run.trace
        return outcome

    # -- strategies ------------------------------------------------------------------------------

    def _element_not_found(self, run: _Run) -> TakeoverOutcome:
        failure = run.context.failure
        page = run.handover.observe()
        elements = page.get("elements") or []
        target = _without_the_data_read(run.context.stored_fingerprint, failure.get("action"))
        source = "stored fingerprint"
        if not target:
            target = fingerprint_from_selector(failure.get("selector") or "", prompt=run.context.prompt)
            source = "selector and prompt"
        excluded = rejected_indexes(elements, run.context.rejected_elements)
        unable = {i for i, element in enumerate(elements) if not can_take(failure.get("action"), element)}
        other_forms = of_other_forms(target, elements, page)
        result = locate(target, elements, excluded=excluded | unable | other_forms)
        candidates = [
            {**_summary(elements[index]), "score": round(score, 4)} for index, score in result.ranked[:10]
        ]
        run.log(
            "locate",
            target_from=source,
            candidates=len(elements),
            excluded=len(excluded),
            of_other_forms=len(other_forms),
            best=candidates[0] if candidates else None,
            confidence=round(result.confidence, 4),
            margin=round(result.margin, 4),
            abstained=result.abstained,
        )
        structural = _structural_match(target, elements, result) if result.abstained else None
        if structural is not None:
            run.log("structural_match", ref=elements[structural].get("ref"), why="same tag, place and target as before")
            result = LocateResult(
                index=structural, score=result.ranked[0][1], confidence=result.confidence, margin=result.margin,
                abstained=False, reason="same tag, position in the page and link/name as before", ranked=result.ranked,
            )
        if result.abstained or result.index is None:
            if (redone := self._custom_select(run, page)) is not None:
                return redone
            if (in_menu := self._in_a_closed_menu(run, target, page, keep_selector=False)) is not None:
                return in_menu
            page_best = result.ranked[0][1] if result.ranked else 0.0
            if (in_frame := self._in_a_frame(run, target, page, beating=page_best)) is not None:
                return in_frame
            if (below := self._rendered_on_scroll(run)) is not None:
                below.candidates = candidates
                return below
            # Nothing on the page looks like the element; it may just not be there *yet*.
            late = self._wait_for_original(run)
            if late is not None:
                late.candidates = candidates
                return late
            # Only then is a button pressed for it: on a page that is only slow, it would be pressed for nothing.
            if (loaded := self._loaded_on_demand(run)) is not None:
                loaded.candidates = candidates
                return loaded
            reason = f"locator abstained: {result.reason}"
            if excluded:
                reason += _left_out_note([elements[i] for i in sorted(excluded)])
            if other_forms:
                reason += (f" ({len(other_forms)} element{'s' if len(other_forms) > 1 else ''} of other forms left out: "
                           "the step's form is still on the page)")
            if source == "selector and prompt":
                reason += (f" (this step has never succeeded, so nothing recorded what its element looks like: the "
                           f"selector {plain_selector(failure.get('selector'))} is all there is to go on)")
            return TakeoverOutcome(recovered=False, reason=reason, candidates=candidates)
        return self._retry_with(run, elements[result.index], target=target, confidence=result.confidence,
                                candidates=candidates)

    def _retry_with(
        self, run: _Run, chosen: dict, *, target: dict, confidence: float, candidates: list[dict],
        opened: dict | None = None,
    ) -> TakeoverOutcome:
        """Retry the failing step on `chosen` with its best selector that works (closing a banner over it first if
        one is there); `opened` is the fix that opened the menu `chosen` is in, if it was in one."""
        failure = run.context.failure
        closed: list[dict] = []
        for option in _selector_options(run.handover.selector_for(chosen["ref"]), action=failure.get("action")):
            if (stop := self._uncover(run, option["selector"], closed)) is not None:
                return stop
            run.log("retry_step", selector=option["selector"], kind=option.get("kind"))
            answer = run.handover.retry_step(selector=option["selector"])
            if not answer.get("ok") and not closed:
                # A banner may cover the element only once Playwright has scrolled it into view.
                if (stop := self._uncover(run, option["selector"], closed)) is not None:
                    return stop
                if closed:
                    run.log("retry_step", selector=option["selector"], kind=option.get("kind"))
                    answer = run.handover.retry_step(selector=option["selector"])
            if answer.get("ok"):
                return TakeoverOutcome(
                    recovered=True,
                    also=[*([opened] if opened else []), *closed],
                    candidates=candidates,
                    chosen_element=_summary(chosen, full=True),
                    recovery={
                        "kind": "selector",
                        "line": failure.get("line"),
                        "old_selector": plain_selector(failure.get("selector")),
                        "new_selector": option["selector"],
                        "selector_kind": option.get("kind"),
                        "confidence": round(confidence, 4),
                        "before": target,
                        "after": _summary(chosen, full=True),
                    },
                )
            run.log("retry_failed", error=answer.get("error"))
        return TakeoverOutcome(
            recovered=False, reason="no unique selector for the chosen element worked", candidates=candidates
        )

    def _in_a_closed_menu(self, run: _Run, target: dict | None, page: dict, *, keep_selector: bool) -> TakeoverOutcome | None:
        """Look for the element among the links and buttons of closed menus (a redesign tucked it into a drop-down):
        when it is one, open its menu as a user would and retry the step there. With `keep_selector` the step's own
        selector finds it (only hidden now), so opening the menu is the whole fix. None when it is in no menu."""
        match = closed_menu_match(target, page, run.context.rejected_elements)
        if match is None:
            return None
        run.log(
            "locate_in_menus", menu_items=len(page["in_closed_menus"]),
            best=_summary(match.best) if match.best else None,
            confidence=round(match.result.confidence, 4), abstained=match.result.abstained,
        )
        if match.item is None:
            return None
        item, result = match.item, match.result
        opened = self._open_menu(run, item)
        if not isinstance(opened, dict):
            return opened  # None (it did not open: perhaps not a menu, but a slow page) or why it went wrong
        if not keep_selector:
            # Opening it looked at the page again, which gives its elements new refs: the item is found anew there.
            shown = _same_element(item, run.handover.observe())
            if shown is None:
                return TakeoverOutcome(recovered=False, reason=f"“{item.get('opener_text')}” was opened, but the element is not on show")
            return self._retry_with(run, shown, target=target, confidence=result.confidence, candidates=[], opened=opened)
        run.log("retry_step", why="its menu is open")
        answer = run.handover.retry_step()
        if not answer.get("ok"):
            return TakeoverOutcome(recovered=False, reason=f"its menu is open, but the step still fails: {answer.get('error')}")
        return TakeoverOutcome(recovered=True, recovery=opened, chosen_element=_summary(item, full=True))

    def _in_a_frame(self, run: _Run, target: dict, page: dict, *, beating: float) -> TakeoverOutcome | None:
        """Look for the element in the page's iframes of its own origin (a redesign embedded the form as a page of
        its own): when exactly one holds it with confidence, scoring above the page's own best (`beating`), retry
        the step in there. None when no frame holds it."""
        match = frame_match(run.handover, target, page, run.context.rejected_elements, beating=beating, log=run.log,
                            later=run.context.later_elements)
        if match is None:
            return None
        frame, chosen, confidence = match
        failure = run.context.failure
        old_selector = plain_selector(failure.get("selector"))
        # The step's own selector, if it still finds the element in there (a get_by_* call is not a selector string).
        own = None if re.match(r"\w+\(", old_selector) else old_selector.rsplit(ENTER_FRAME, 1)[-1]
        options = run.handover.selector_for(chosen["ref"], frame=frame, keep=own)
        for option in _selector_options(options, action=failure.get("action")):
            selector = f"{frame}{ENTER_FRAME}{option['selector']}"
            run.log("retry_step", selector=selector, kind=option.get("kind"))
            answer = run.handover.retry_step(selector=selector)
            if answer.get("ok"):
                return TakeoverOutcome(recovered=True, chosen_element=_summary(chosen, full=True), recovery={
                    "kind": "frame", "line": failure.get("line"), "old_selector": old_selector,
                    "frame_selector": frame, "inner_selector": option["selector"], "new_selector": selector,
                    "selector_kind": option.get("kind"), "confidence": round(confidence, 4),
                    "before": target, "after": _summary(chosen, full=True),
                })
            run.log("retry_failed", error=answer.get("error"))
        return TakeoverOutcome(recovered=False, reason=f"no unique selector for the element in the frame {frame} worked")

    def _open_menu(self, run: _Run, item: dict) -> dict | TakeoverOutcome | None:
        """Open the closed menu `item` is in with its opener: a hover, then, for a disclosure button, a click. The
        `menu` recovery; None when it does not open (the caller tries what else there is); a failed outcome when
        the opener left the page."""
        opener_text = item.get("opener_text") or "its opener"
        options = run.handover.selector_for(item["opened_by"])
        hidden_options = run.handover.selector_for(item["ref"])
        if not options or not hidden_options:
            run.log("open_menu", opener_text=opener_text, why="no selector finds the opener or the item alone")
            return None
        opener, shown = options[0]["selector"], hidden_options[0]["selector"]
        url = run.handover.observe().get("url")
        for how in ("hover", "click") if item.get("opener_clicks") else ("hover",):
            run.log("open_menu", how=how, opener=opener, opener_text=opener_text)
            if not run.handover.act(how, selector=opener).get("ok"):
                continue
            if how == "click" and _without_fragment(after := run.handover.observe().get("url")) != _without_fragment(url):
                return TakeoverOutcome(recovered=False, reason=f"“{opener_text}” left the page (now at {after}) instead of opening a menu")
            if run.handover.wait(selector=shown, timeout_ms=MENU_OPENS_MS).get("ok"):
                return {
                    "kind": "menu",
                    "line": run.context.failure.get("line"),
                    "selector": plain_selector(run.context.failure.get("selector")),
                    "opener_selector": opener,
                    "opener_text": opener_text,
                    "how": how,
                }
        run.log("open_menu", opener_text=opener_text, why="the element did not show")
        return None

    def _uncover(self, run: _Run, selector: str, closed: list[dict]) -> TakeoverOutcome | None:
        """Close the layers drawn over the element `selector` finds, if any (a banner new with the same redesign
        that moved the element), once per takeover: their fixes go to `closed`. A failed outcome when one cannot
        be closed, else None."""
        if closed or not (layer := run.handover.covering_layer(selector=selector)):
            return None
        left = self._close_layers(run, layer, step_selector=selector, closed=closed)
        if isinstance(left, dict):
            return TakeoverOutcome(
                recovered=False, reason=f"{layer_name(left)} covers the element and has no button that closes it"
            )
        return left

    def _close_layers(
        self, run: _Run, layer: dict, *, step_selector: str | None, closed: list[dict]
    ) -> dict | TakeoverOutcome | None:
        """Close `layer`, then whatever layer that uncovers over the step's element (a cookie banner under a
        newsletter pop-up), top first, at most MAX_LAYERS: their fixes go to `closed`, in that order. Returns
        the layer left over the element when it has no button that closes it, a failed outcome when closing
        went wrong, or None."""
        if step_selector and layer.get("ref") is None:  # the failure's record: ask again, for the layer's ref
            layer = run.handover.covering_layer(selector=step_selector) or layer
        while len(closed) < MAX_LAYERS:
            fix = self._dismiss(run, layer, step_selector=step_selector)
            if not isinstance(fix, dict):
                return fix or layer
            closed.append(fix)
            if not step_selector or layer.get("ref") is None:
                return None
            closed_ref = layer["ref"]
            if not (layer := _layer_once_closed(run.handover, step_selector, closed_ref)):
                return None
            if layer.get("ref") == closed_ref:
                return TakeoverOutcome(
                    recovered=False,
                    reason=f"{layer_name(layer)} still covers the element after a click on “{fix['button_text']}”",
                )
        return None

    def _rendered_on_scroll(self, run: _Run) -> TakeoverOutcome | None:
        """Pages render some parts only once they are scrolled into view (a lazy section, the end of a feed): the
        element may be further down, not gone. Scroll down a screen at a time, as a person would, until the step's
        own selector finds it; the new version scrolls as far before the step. None when it does not show."""
        selector = plain_selector(run.context.failure.get("selector"))
        if not selector or selector.startswith("get_by_"):  # a get_by_* call is not a selector string to wait for
            return None
        start = position = run.handover.scroll(dy=0)
        if start is None:
            return None
        while position - start < SCROLL_MAX_PX:
            moved_to = run.handover.scroll(dy=SCROLL_STEP_PX)
            if moved_to is None or moved_to == position:
                break  # the bottom of the page
            position = moved_to
            if run.handover.wait(selector=selector, timeout_ms=SCROLL_LOOK_MS).get("ok"):
                run.log("scrolled", selector=selector, pixels=position - start, why="it renders once scrolled into view")
                return self._retry_now_on_show(run, {
                    "kind": "scroll", "line": run.context.failure.get("line"), "selector": selector,
                    "pixels": position - start,
                })
        run.log("scrolled", selector=selector, pixels=position - start, why="not found further down")
        return None

    def _retry_now_on_show(self, run: _Run, recovery: dict) -> TakeoverOutcome | None:
        """Retry the step as it is, now that what `recovery` did shows its element: recovered when it succeeds, None
        (logged) when it still fails."""
        answer = run.handover.retry_step()
        if not answer.get("ok"):
            run.log("retry_failed", error=answer.get("error"))
            return None
        return TakeoverOutcome(recovered=True, recovery=recovery)

    def _loaded_on_demand(self, run: _Run) -> TakeoverOutcome | None:
        """Lists that show more only when asked: the element may be further down the list, not gone. Press the page's
        one "Load more" button, as a person would, until the step's own selector finds the element (at most
        LOAD_MORE_MAX times); the new version presses it for as long as the element is not there yet. None when the
        page has no such button (or several), or pressing it does not bring the element."""
        selector = plain_selector(run.context.failure.get("selector"))
        if not selector or selector.startswith("get_by_"):
            return None
        page = run.handover.observe()  # a fresh look: the refs of earlier ones may be stale
        buttons = [e for e in page.get("elements") or [] if _loads_more(e, page.get("url") or "")]
        if len(buttons) != 1:
            return None
        text = _label(buttons[0])
        options = run.handover.selector_for(buttons[0]["ref"])
        if not options:
            run.log("load_more", button_text=text, why="no selector finds the button alone")
            return None
        button, url = options[0]["selector"], _without_fragment(page.get("url"))
        for presses in range(1, LOAD_MORE_MAX + 1):
            if not run.handover.act("click", selector=button, timeout_ms=LOAD_MORE_PRESS_MS).get("ok"):
                break  # gone or disabled: the whole list is on show
            if _without_fragment(after := run.handover.observe().get("url")) != url:
                return TakeoverOutcome(recovered=False, reason=f"“{text}” left the page (now at {after}) instead of "
                                                               "showing more")
            if run.handover.wait(selector=selector, timeout_ms=LOAD_MORE_WAIT_MS).get("ok"):
                run.log("load_more", button=button, button_text=text, presses=presses, why="it was further down the list")
                return self._retry_now_on_show(run, {
                    "kind": "load_more", "line": run.context.failure.get("line"), "selector": selector,
                    "button_selector": button, "button_text": text, "presses": presses,
                })
        run.log("load_more", button=button, button_text=text, tried=presses, why="the element did not show")
        return None

    def _wait_for_original(self, run: _Run) -> TakeoverOutcome | None:
        """A slow page looks like a missing element until the element arrives: wait once, boundedly."""
        failure = run.context.failure
        selector = plain_selector(failure.get("selector"))
        if not selector or selector.startswith("get_by_"):  # a get_by_* call is not a selector string to wait for
            return None
        run.log("wait", selector=selector, timeout_ms=TIMEOUT_RETRY_MS, why="maybe the page is only slow")
        started = time.monotonic()
        if not run.handover.wait(selector=selector, timeout_ms=TIMEOUT_RETRY_MS).get("ok"):
            return None
        waited_ms = int((time.monotonic() - started) * 1000)
        answer = run.handover.retry_step(timeout_ms=TIMEOUT_RETRY_MS)
        if not answer.get("ok"):
            return None
        return TakeoverOutcome(recovered=True, recovery=_timeout_recovery(failure, waited_ms))

    def _timeout(self, run: _Run) -> TakeoverOutcome:
        failure = run.context.failure
        details = failure.get("details") or {}
        if details.get("action_done"):
            return self._let_its_page_load(run)
        if (renamed := self._renamed_option(run)) is not None:
            return renamed
        layer = details.get("covered_by")
        if layer and (closed := self._close_layer(run, layer)) is not None:
            return closed
        # A layer with no button to close it may be a loading overlay, gone in a moment: wait as for a slow page.
        run.log("wait", load_state="networkidle", timeout_ms=TIMEOUT_RETRY_MS)
        run.handover.wait(load_state="networkidle", timeout_ms=TIMEOUT_RETRY_MS)
        run.log("retry_step", timeout_ms=TIMEOUT_RETRY_MS)
        started = time.monotonic()
        answer = run.handover.retry_step(timeout_ms=TIMEOUT_RETRY_MS)
        waited_ms = int((time.monotonic() - started) * 1000)
        if not answer.get("ok"):
            run.log("retry_failed", error=answer.get("error"))
            if not layer and details.get("match_count") and details.get("match_visible") is False:
                # Still there, still hidden: perhaps in a menu a redesign made it part of. Only now: an element
                # that a slow page shows late would otherwise pass for one that a hover showed.
                target = run.context.stored_fingerprint or fingerprint_from_selector(
                    failure.get("selector") or "", prompt=run.context.prompt
                )
                if (in_menu := self._in_a_closed_menu(run, target, run.handover.observe(), keep_selector=True)) is not None:
                    return in_menu
            if layer:
                reason = f"{layer_name(layer)} has no button that closes it and still covers the element after {TIMEOUT_RETRY_MS} ms"
            else:
                reason = f"still failing after {TIMEOUT_RETRY_MS} ms: {answer.get('error')}"
            return TakeoverOutcome(recovered=False, reason=reason)
        return TakeoverOutcome(recovered=True, recovery=_timeout_recovery(failure, waited_ms))

    def _let_its_page_load(self, run: _Run) -> TakeoverOutcome:
        """The step's action happened (Playwright's call log says "click action done"); what timed out was the wait
        for the page it led to, a slow form submission say. Doing it again could submit twice: wait for that page
        instead, continue after the step, and give the step the time its page needed."""
        failure = run.context.failure
        loads = int(failure["details"].get("loads_at_start") or 0)
        run.log("wait", loads_after=loads, timeout_ms=TIMEOUT_RETRY_MS, why="the step's action happened; the page it led to is slow")
        started = time.monotonic()
        loaded = run.handover.wait(loads_after=loads, timeout_ms=TIMEOUT_RETRY_MS)
        waited_ms = int((time.monotonic() - started) * 1000)
        if not loaded.get("ok"):
            return TakeoverOutcome(recovered=False, reason=(
                f"the step on line {failure.get('line')} was done, but the page it led to had not loaded after a further "
                f"{TIMEOUT_RETRY_MS} ms; it is not done twice"))
        run.handover.resume(None)
        return TakeoverOutcome(recovered=True, recovery=_timeout_recovery(failure, waited_ms))

    def _renamed_option(self, run: _Run) -> TakeoverOutcome | None:
        """A `select_option` waits in vain when the value it names is gone. Option values are often internal codes
        a release renames ("DE" → "de-DE") while the label a person reads stays: the option the step chose last
        time (its stored fingerprint lists the options) is chosen again by that label. None when it is not that."""
        failure = run.context.failure
        wanted = (failure.get("args") or {}).get("value")
        options_now = (failure.get("details") or {}).get("options")
        if failure.get("action") != "select_option" or not options_now:
            return None
        label = option_label(run.context.stored_fingerprint, wanted)
        if not label or any(value == wanted for value, _ in options_now):
            return None
        same_label = [value for value, text in options_now if text == label]
        if len(same_label) != 1:
            run.log("option_not_found", value=wanted, label=label, options_with_that_label=len(same_label))
            return None
        selector = plain_selector(failure.get("selector"))
        run.log("select_option", selector=selector, label=label, value=same_label[0], why=f"the value {wanted!r} is gone")
        chosen = run.handover.act("select", selector=selector, value={"label": label})
        if not chosen.get("ok"):
            run.log("select_failed", error=chosen.get("error"))
            return None
        run.handover.resume(chosen.get("value"))
        return TakeoverOutcome(recovered=True, recovery={
            "kind": "option", "line": failure.get("line"), "selector": selector,
            "old_value": wanted, "new_value": same_label[0], "label": label,
        })

    def _custom_select(self, run: _Run, page: dict) -> TakeoverOutcome | None:
        """A native select redone as a drop-down of its own (a button that opens a list box, as design systems draw
        them): open it as a person would, and click the option with the label the step's value had. None when the
        step is not a select_option, or not exactly one control on the page opens a list and reads like the select."""
        failure = run.context.failure
        match = custom_select_match(failure, run.context.stored_fingerprint, page, log=run.log)
        if match is None:
            return None
        wanted, label, element = match
        ranked = sorted(run.handover.selector_for(element["ref"]), key=lambda o: OPENER_SELECTORS.get(o.get("kind"), 9))
        if not ranked:
            return None
        opener, option = ranked[0]["selector"], f"role=option[name={json.dumps(label)}s]"
        for how, selector in (("click", opener), ("wait", option), ("click", option)):
            done = (run.handover.wait(selector=selector, timeout_ms=MENU_OPENS_MS) if how == "wait"
                    else run.handover.act(how, selector=selector))
            if not done.get("ok"):
                return TakeoverOutcome(recovered=False, reason=f"the drop-down {opener} that replaced the select did "
                                       f"not let its option \u201c{label}\u201d be chosen: {done.get('error')}")
        run.handover.resume(None)
        return TakeoverOutcome(recovered=True, chosen_element=_summary(element, full=True), recovery={
            "kind": "custom_select", "line": failure.get("line"), "selector": plain_selector(failure.get("selector")),
            "old_value": wanted, "label": label, "opener_selector": opener, "option_selector": option,
        })

    def _close_layer(self, run: _Run, layer: dict) -> TakeoverOutcome | None:
        """A banner or modal drawn over the element (cookie consent, newsletter pop-up): close it, and any layer
        under it, and carry on. None when the first has no button that closes it."""
        closed: list[dict] = []
        step_selector = plain_selector(run.context.failure.get("selector"))
        left = self._close_layers(run, layer, step_selector=step_selector, closed=closed)
        if isinstance(left, TakeoverOutcome):
            return left
        if not closed:
            return None  # no button: maybe a loading overlay, for the caller to wait out
        names = " and ".join(fix["layer"] for fix in closed)
        if left is not None:
            return TakeoverOutcome(
                recovered=False,
                reason=f"{names} closed, but {layer_name(left)} covers the element and has no button that closes it",
            )
        run.log("retry_step")
        answer = run.handover.retry_step()
        if not answer.get("ok"):
            return TakeoverOutcome(
                recovered=False, reason=f"{names} closed, but the step still fails: {answer.get('error')}"
            )
        return TakeoverOutcome(recovered=True, recovery=closed[0], also=closed[1:])

    def _dismiss(self, run: _Run, layer: dict, *, step_selector: str | None) -> dict | TakeoverOutcome | None:
        """Close `layer` with its own button, the least committal one it has: the `layer` recovery, a failed
        outcome saying why it could not be done, or None when no button in it closes it."""
        name = layer_name(layer)
        page = run.handover.observe()
        button = closing_button(page.get("elements") or [], layer)
        frame, inside = None, {}
        if button is None and layer.get("frame"):
            # The banner is a frame of its own (as many consent tools draw it): its buttons are in there.
            frame = layer["frame"]
            try:
                inside = run.handover.observe(frame=frame)
            except HandoverError as exc:  # gone already, or never loaded: nothing to click in it
                run.log("close_layer", layer=name, frame=frame, button=None, why=str(exc))
                return None
            button = closing_button(inside.get("elements") or [], {"xpath": "/html[1]", "text": inside.get("text")})
        if button is None:
            run.log("close_layer", layer=name, button=None, why="no button in it closes it")
            return None
        label = _label(button) or _identifiers(button)
        try:
            options = run.handover.selector_for(button["ref"], frame=frame) if button.get("ref") is not None else []
        except HandoverError as exc:
            return TakeoverOutcome(recovered=False, reason=f"the “{label}” button of {name} is gone: {exc}")
        # The code looks for the button inside the layer (or its frame) when that can be recognised; otherwise the
        # button itself must have an id or test id, or a plain "Close" anywhere would be clicked before every step.
        lasting = options if frame or layer.get("selector") else [o for o in options if o.get("kind") in ("test_id", "id")]
        if not lasting:
            return TakeoverOutcome(
                recovered=False, reason=f"neither {name} nor its \u201c{label}\u201d button can be recognised on later runs"
            )
        run.log("close_layer", layer=name, frame=frame, button=label, selector=options[0]["selector"])
        clicked = run.handover.act("click", selector=options[0]["selector"], frame=frame)
        if not clicked.get("ok"):
            return TakeoverOutcome(recovered=False, reason=f"closing {name} failed: {clicked.get('error')}")
        if _without_fragment(after := run.handover.observe().get("url")) != _without_fragment(page.get("url")):
            # A "button" that navigates is a link in disguise; the task's page is gone.
            return TakeoverOutcome(recovered=False, reason=f"closing {name} left the page (now at {after})")
        return {
            "kind": "layer",
            "line": run.context.failure.get("line"),
            "selector": step_selector,
            "layer": name,
            "layer_selector": None if frame else layer.get("selector") or None,
            "frame_selector": frame,
            "frame_url": inside.get("url"),  # its host may serve the frame when the new version is validated
            "close_selector": lasting[0]["selector"],
            "button_text": label,
        }

    def _navigation_error(self, run: _Run) -> TakeoverOutcome:
        failure = run.context.failure
        status = failure.get("http_status")
        if status is None or status >= 500 or status == 429:
            stopped = getattr(run.handover, "stopped", None) or threading.Event()
            for delay in NAVIGATION_RETRY_DELAYS_S:
                if stopped.wait(delay):  # cancelled or out of time: no use retrying into a closed run
                    return TakeoverOutcome(recovered=False, reason="the run was stopped during the retries")
                run.log("retry_step", backoff_s=delay)
                answer = run.handover.retry_step()
                if answer.get("ok"):
                    return TakeoverOutcome(
                        recovered=True, recovery={"kind": "transient", "line": failure.get("line"), "status": status}
                    )
                run.log("retry_failed", error=answer.get("error"))
            if status is None and not _is_http_url(failure.get("url")):
                return TakeoverOutcome(recovered=False, reason="the site stayed unreachable after retries")
        return self._moved_page(run)

    def _moved_page(self, run: _Run) -> TakeoverOutcome:
        """Find a page that moved: rank the site's own links by name, then check the page has what the code needs."""
        failure = run.context.failure
        wanted = failure.get("url") or ""
        wanted_path = urlparse(wanted).path
        origin = _origin(wanted)
        links: list[dict] = []
        for start in _link_sources(wanted, run.context.params.get("base_url")):
            run.log("goto", url=start, why="look for the moved page among the site's own links")
            if run.handover.goto(start).get("ok"):
                links += run.handover.observe().get("links") or []
        root = _site_root(wanted, run.context.params.get("base_url"))
        ranked = _rank_links(
            wanted_path, origin, links, home_path=urlparse(root).path if root else "/",
            rejected_paths=frozenset(run.context.rejected_paths),
        )
        top = [{"url": url, "text": text, "score": round(score, 1)} for score, url, text in ranked[:5]]
        run.log("rank_links", wanted=wanted_path, top=top)
        needed = selectors_in_code(run.context.code, after_line=failure.get("line") or 0)[:3]
        chosen = None
        if needed:
            # The next steps' elements tell the right page from a merely similar name; the text those elements
            # had when the steps last succeeded tells it from another page with the same elements (a help
            # page's table is not the invoice list).
            compared: list[tuple[float, float, str, str]] = []
            for score, url, text in ranked[:MOVED_PAGE_CANDIDATES]:
                run.log("goto", url=url, why=f"does it have {', '.join(needed)}?")
                if not run.handover.goto(url).get("ok"):
                    continue
                present = [sel for sel in needed if run.handover.wait(selector=sel, timeout_ms=1_000).get("ok")]
                if not present:
                    continue
                likeness = _content_likeness(run, present)
                if likeness is None:
                    chosen = (score, url, text)  # nothing remembered to compare: the best-named page that fits
                    break
                run.log("compare_content", url=url, likeness=round(likeness))
                compared.append((likeness, score, url, text))
                if likeness == 100:
                    break  # reads exactly as before; an archived "-old" page may come first by name, so only then
            if chosen is None and compared:
                likeness, *best = max(compared)
                # Pages built from one template (a weekly and a monthly report) read alike in their headers and
                # differ in their numbers, as one page does from day to day: alike content is only enough when
                # the link is also named like the old page.
                if not (likeness >= SAME_CONTENT or (likeness >= SIMILAR_CONTENT and best[0] >= NAMED_ALIKE)):
                    return TakeoverOutcome(
                        recovered=False,
                        reason=f"pages linked from the site have the elements {wanted_path} had, but not its content",
                    )
                chosen = tuple(best)
        elif ranked and ranked[0][0] >= LINK_MATCH_MIN and (len(ranked) == 1 or ranked[0][0] - ranked[1][0] >= 5):
            chosen = ranked[0]
        if chosen is None:
            reason = f"no page linked from the site looks like {wanted_path}"
            if left_out := _rejected_links(links, origin, run.context.rejected_paths):
                # Else the reviewer who rejected the page reads that the site has nothing like it, and wonders.
                was = "was" if len(left_out) == 1 else "were"
                reason += f" ({', '.join(left_out)}, linked from it, {was} rejected by a reviewer as its new place)"
            return TakeoverOutcome(recovered=False, reason=reason)
        _, new_url, link_text = chosen
        run.log("retry_step", url=new_url)
        answer = run.handover.retry_step(url=new_url)
        if not answer.get("ok"):
            return TakeoverOutcome(recovered=False, reason=f"the best matching page failed too: {answer.get('error')}")
        return TakeoverOutcome(
            recovered=True,
            recovery={
                "kind": "url",
                "line": failure.get("line"),
                "old_path": wanted_path,
                "new_path": urlparse(new_url).path,
                "link_text": link_text,
            },
        )

    def _authentication_failure(self, run: _Run) -> TakeoverOutcome:
        failure = run.context.failure
        keys = set(run.context.secret_keys)
        user_key = next((k for k in ("username", "email", "user", "login") if k in keys), None)
        if user_key is None or "password" not in keys:
            return TakeoverOutcome(recovered=False, reason="the task has no username and password secrets to log in with")
        page = run.handover.observe()
        signed_in = self._sign_in(run, page.get("forms") or [], user_key)
        if isinstance(signed_in, str):
            return TakeoverOutcome(recovered=False, reason=signed_in)
        if not _left_login_form(run.handover):
            return TakeoverOutcome(recovered=False, reason="still on the login form after signing in (wrong credentials?)")
        run.log("retry_step")
        answer = run.handover.retry_step()
        if not answer.get("ok"):
            return TakeoverOutcome(recovered=False, reason=f"logged in, but the step still fails: {answer.get('error')}")
        return TakeoverOutcome(
            recovered=True,
            recovery={
                "kind": "login",
                "line": failure.get("line"),
                **login_page(page.get("url") or "", run.context.params),
                "username_key": user_key,
                **signed_in,
            },
        )

    def _sign_in(self, run: _Run, forms: list[dict], user_key: str) -> dict | str:
        """Fill and submit the login form; the selectors used, or why it could not be done.

        A form asking for the user name alone, with a "Next" button, is the first step of a two-step
        login (the password field appears after it): the password form is looked for after that step.
        """
        no_selector = "the login form's fields have no unique selector"
        next_selector = None
        if (form := _login_form(forms)) is not None:
            user_field, password_field, submit = (_unique_selector(run.handover, item) for item in form)
            if None in (user_field, password_field, submit):
                return no_selector
            if refused := _fill_secret(run, user_field, user_key):
                return refused
        elif (first_step := _user_name_step(forms)) is not None:
            user_field, next_selector = (_unique_selector(run.handover, item) for item in first_step)
            if None in (user_field, next_selector):
                return no_selector
            if refused := _fill_secret(run, user_field, user_key):
                return refused
            run.log("click", selector=next_selector, why="the first step of a two-step login")
            if not (clicked := run.handover.act("click", selector=next_selector)).get("ok"):
                return f"the login's next button did not work: {clicked.get('error')}"
            if not run.handover.wait(selector="input[type=password]", timeout_ms=PASSWORD_STEP_MS).get("ok"):
                return "no password field appeared after the user name step"
            if (second_step := _password_step(run.handover.observe().get("forms") or [])) is None:
                return "no password form found after the user name step"
            password_field, submit = (_unique_selector(run.handover, item) for item in second_step)
            if None in (password_field, submit):
                return no_selector
        else:
            return "no login form found on the page"
        if refused := _fill_secret(run, password_field, "password"):
            return refused
        run.log("click", selector=submit)
        if not (clicked := run.handover.act("click", selector=submit)).get("ok"):
            return f"the login button did not work: {clicked.get('error')}"
        return {
            "username_selector": user_field,
            "password_selector": password_field,
            "submit_selector": submit,
            "next_selector": next_selector,
        }

    def _captcha(self, run: _Run) -> TakeoverOutcome:
        shot = run.handover.screenshot()
        run.log("captcha", kind=run.context.failure.get("details", {}).get("captcha"), screenshot_taken=bool(shot))
        return TakeoverOutcome(recovered=False, needs_human=True, reason="needs a human: the site shows a captcha")

    # -- after the run ---------------------------------------------------------------------------

    def write_patch(self, *, code: str, recoveries: list[dict], failure: dict, prompt: str) -> Patch:
        recoveries = _without_repeated_layers(recoveries)
        causes = [""] * len(recoveries)
        new_code = code
        insertions: list[tuple[int, int]] = []  # (line, count): lines inserted there moved the lines below them
        for index in sorted(range(len(recoveries)), key=lambda i: _patch_order(recoveries[i])):
            recovery = recoveries[index]
            line = recovery.get("line")
            if line is not None:
                for inserted_at, count in insertions:
                    line += count if line >= inserted_at else 0
            before = new_code
            new_code, causes[index] = _apply(new_code, recovery, at_line=line)
            if added := new_code.count("\n") - before.count("\n"):
                insertions.append((_first_changed_line(before, new_code), added))
        changed = new_code != code
        return Patch(root_cause=" ".join(cause for cause in causes if cause), code=new_code if changed else None)


def _structural_match(target: dict, elements: list[dict], result) -> int | None:
    """Second opinion when the locator hesitates: the best candidate sits exactly where the element was.

    Same tag and same xpath, and the same link target, name or id: only its wording changed (a renamed
    link or button label). No other element may share that target, so a look-alike never slips through.
    """
    if not result.ranked:
        return None
    best = result.ranked[0][0]
    candidate = elements[best]
    if candidate.get("visible") is False or candidate.get("enabled") is False:
        return None
    keys = [key for key in ("href", "name", "id", "data_testid") if target.get(key) and target.get(key) == candidate.get(key)]
    same_place = bool(target.get("xpath")) and target.get("tag") == candidate.get("tag") and target.get("xpath") == candidate.get("xpath")
    if not (same_place and keys):
        return None
    twins = [e for e in elements if e is not candidate and any(e.get(key) == candidate.get(key) for key in keys)]
    return None if twins else best


READ_ACTIONS = frozenset({
    "inner_text", "text_content", "inner_html", "get_attribute", "input_value", "is_visible", "all_inner_texts",
    "all_text_contents",
})


# What a read step reads is data, not a description of the element: yesterday's price finds yesterday's price
# (a struck-out "was" price), not the element that now shows today's.
_DATA_READ = {
    **dict.fromkeys(("inner_text", "text_content", "inner_html", "all_inner_texts", "all_text_contents"),
                    ("text", "visible_text")),
    "input_value": ("value",),
}


def _without_the_data_read(fingerprint: dict | None, action: str | None) -> dict | None:
    if not fingerprint or action not in _DATA_READ:
        return fingerprint
    return {key: value for key, value in fingerprint.items() if key not in _DATA_READ[action]}


def _selector_options(options: list[dict], *, action: str | None) -> list[dict]:
    """Selectors to try, best first. A step that reads data must not be located by the data it reads."""
    if action in READ_ACTIONS:
        order = {"original": -1, "test_id": 0, "id": 1, "attribute": 2, "class": 3, "role": 4, "css": 5}
        return sorted((o for o in options if o.get("kind") in order), key=lambda o: order[o["kind"]])
    return options


def _timeout_recovery(failure: dict, waited_ms: int) -> dict:
    # Give the code head-room over what the page needed today, without going past the bounded budget.
    waited_total = waited_ms + int(failure.get("timeout_ms") or 5_000)
    needed = max(waited_total * 2, 10_000)
    return {
        "kind": "timeout",
        "line": failure.get("line"),
        "selector": plain_selector(failure.get("selector")),
        "waited_ms": waited_total,
        "timeout_ms": min(TIMEOUT_RETRY_MS * 2, int(round(needed, -3))),
    }


def _left_login_form(handover, *, within_s: float = 8.0) -> bool:
    """Whether the page moved past the login form after submitting it (navigation takes a moment)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        handover.wait(load_state="load", timeout_ms=2_000)
        if not handover.observe().get("login_form"):
            return True
        time.sleep(0.3)
    return False


def _layer_once_closed(handover, selector: str, closed_ref: int) -> dict | None:
    """The layer over the element `selector` finds once the layer `closed_ref` is gone. Banners fade out, or say
    "Saving your choices" first, so that one may take a moment to go: it is the same layer as long as its ref is."""
    deadline = time.monotonic() + LAYER_GOES_S
    while (layer := handover.covering_layer(selector=selector)) and layer.get("ref") == closed_ref:
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return layer


def _without_repeated_layers(recoveries: list[dict]) -> list[dict]:
    """A pop-up that came back on the next page was closed again: one handler closes it every time."""
    seen, kept = set(), []
    for recovery in recoveries:
        if recovery["kind"] == "layer":
            layer = (recovery.get("layer_selector"), recovery.get("frame_selector"), recovery["close_selector"])
            if layer in seen:
                continue
            seen.add(layer)
        kept.append(recovery)
    return kept


def _patch_order(recovery: dict) -> tuple:
    """Patches apply from the bottom of the code up, so that lines one inserts (a login, a menu's opening) do not
    move the lines the next ones name; on one line, the change of the step before the insertion above it; a handler, which goes
    in at the top of its function, last (`write_patch` moves the lines of what comes after an insertion)."""
    return (recovery["kind"] == "layer", -(recovery.get("line") or 0), recovery["kind"] in ("login", "menu"))


def _first_changed_line(before: str, after: str) -> int:
    pairs = zip(before.splitlines(), after.splitlines())
    return next((number for number, (old, new) in enumerate(pairs, 1) if old != new), before.count("\n") + 1)


def _apply(code: str, recovery: dict, *, at_line: int | None) -> tuple[str, str]:
    """The code with `recovery` applied at `at_line` (its line in `code`, which earlier patches may have moved)
    and the root cause, told with the line of the original code."""
    kind, line = recovery["kind"], recovery.get("line")
    if kind == "selector":
        new = codegen.replace_selector(
            code, line=at_line, old_selector=recovery["old_selector"], new_selector=recovery["new_selector"]
        )
        return new, describe_selector_change(recovery)
    if kind == "frame":
        new = codegen.move_into_frame(
            code, line=at_line, old_selector=recovery["old_selector"], frame_selector=recovery["frame_selector"],
            inner_selector=recovery["inner_selector"],
        )
        return new, describe_move_into_frame(recovery)
    if kind == "timeout":
        new = codegen.set_step_timeout(code, line=at_line, timeout_ms=recovery["timeout_ms"])
        return new, (
            f"The page got slower: the step on line {line} needed about {recovery['waited_ms']} ms, more than its "
            f"timeout allowed; the timeout is now {recovery['timeout_ms']} ms."
        )
    if kind == "url":
        new = codegen.replace_url(code, line=at_line, old_path=recovery["old_path"], new_path=recovery["new_path"])
        return new, (
            f"The page moved: {recovery['old_path']} on line {line} answers 404 now; the site links to it as "
            f"\u201c{recovery.get('link_text') or recovery['new_path']}\u201d at {recovery['new_path']}."
        )
    if kind == "login":
        new = codegen.insert_login_steps(
            code,
            line=at_line,
            username_selector=recovery["username_selector"],
            password_selector=recovery["password_selector"],
            submit_selector=recovery["submit_selector"],
            username_key=recovery.get("username_key", "username"),
            login_url=recovery.get("login_path") or recovery.get("login_url"),
            base_url_param="base_url" if recovery.get("login_path") else None,
            next_selector=recovery.get("next_selector"),
        )
        steps = (
            f"in two steps ({recovery['username_selector']}, then {recovery['next_selector']}, then "
            f"{recovery['password_selector']})" if recovery.get("next_selector")
            else f"({recovery['username_selector']}, {recovery['password_selector']})"
        )
        return new, (
            f"A login wall appeared before line {line}; the new version signs in with the task's secrets {steps} "
            "before continuing."
        )
    if kind == "layer":
        new = codegen.close_whenever_shown(
            code, line=at_line, close_selector=recovery["close_selector"], layer_selector=recovery.get("layer_selector"),
            frame_selector=recovery.get("frame_selector"),
        )
        button = f"\u201c{recovery['button_text']}\u201d" if recovery.get("button_text") else f"`{recovery['close_selector']}`"
        where = " (in the frame it is drawn in)" if recovery.get("frame_selector") else ""
        return new, (
            f"{recovery['layer']} now covers `{recovery['selector']}` on line {line}, so the click never lands; the "
            f"new version closes it with its {button} button{where} whenever it appears."
        )
    if kind == "menu":
        new = codegen.open_menu_before(code, line=at_line, opener_selector=recovery["opener_selector"], how=recovery["how"])
        opener = f"“{recovery['opener_text']}”"
        # Only a menu opens on hover; what a click opens may as well be a tab, an accordion panel or a dialog.
        where = f"in the {opener} menu, hidden until that is hovered" if recovery["how"] == "hover" else (
            f"hidden until {opener} is clicked (a menu, tab, panel, dialog or form step it opens)")
        return new, (
            f"`{recovery['selector']}` on line {line} is now {where}; the new version "
            f"{'hovers over' if recovery['how'] == 'hover' else 'clicks'} `{recovery['opener_selector']}` first."
        )
    if kind == "option":
        new = codegen.select_option_by_label(code, line=at_line, old_value=recovery["old_value"], label=recovery["label"])
        return new, (
            f"The option \u201c{recovery['label']}\u201d of `{recovery['selector']}` on line {line} now has the value "
            f"\u201c{recovery['new_value']}\u201d instead of \u201c{recovery['old_value']}\u201d; the new version "
            "chooses it by its label."
        )
    if kind == "custom_select":
        new = codegen.choose_in_custom_select(
            code, line=at_line, old_value=recovery["old_value"], opener_selector=recovery["opener_selector"],
            option_selector=recovery["option_selector"],
        )
        return new, (
            f"`{recovery['selector']}` on line {line} is no longer a select: it is now a drop-down of its own "
            f"(`{recovery['opener_selector']}` opens a list); the new version opens it and clicks the option "
            f"\u201c{recovery['label']}\u201d."
        )
    if kind == "load_more":
        new = codegen.load_more_before(code, line=at_line, button_selector=recovery["button_selector"],
                                       selector=recovery["selector"], presses_max=LOAD_MORE_IN_CODE,
                                       batch_wait_ms=LOAD_MORE_WAIT_MS)
        return new, (
            f"`{recovery['selector']}` on line {line} is now further down a list that shows more only when "
            f"“{recovery['button_text']}” is pressed (it took {recovery['presses']}); the new version presses "
            f"it until the element is there, up to {LOAD_MORE_IN_CODE} times."
        )
    if kind == "scroll":
        new = codegen.scroll_before(code, line=at_line, pixels=recovery["pixels"])
        return new, (
            f"`{recovery['selector']}` on line {line} is now rendered only once scrolled into view, "
            f"{recovery['pixels']} px further down; the new version scrolls there first."
        )
    if kind == "transient":
        return code, (
            f"A transient navigation error (HTTP {recovery.get('status') or 'connection'}) on line {line}; "
            "a retry with backoff worked, so the code needs no change."
        )
    raise ValueError(f"unknown recovery kind {kind!r}")


# What a root cause may say changed, in the order it says it. The label is the text beside a field
# (`neighbor_text`), which only a `get_by_label` selector depends on, so it is named only when quoted.
_DESCRIBED_PROPERTIES = (
    ("id", "id"), ("text", "text"), ("data_testid", "test id"), ("placeholder", "placeholder"),
    ("aria_label", "aria-label"), ("title", "title"), ("alt", "alt text"), ("name", "name"), ("type", "type"),
    ("class", "class"), ("neighbor_text", "label"),
)


def describe_selector_change(recovery: dict) -> str:
    """The root cause of a re-located element. What the old selector quoted comes first: a
    `get_by_label("Your name")` broke because the label changed, even if the id changed too."""
    before, after = recovery.get("before") or {}, recovery.get("after") or {}
    old_selector = recovery["old_selector"]
    quoted, other = [], []
    for prop, label in _DESCRIBED_PROPERTIES:
        old, new = (before.get(prop) or "").strip(), (after.get(prop) or "").strip()
        if not old or old == new:
            continue
        was_quoted = _quotes_whole(old_selector, old)
        if prop == "neighbor_text" and not was_quoted:
            continue
        change = (f"its {label} changed from \u201c{old[:40]}\u201d to \u201c{new[:40]}\u201d" if new
                  else f"its {label} \u201c{old[:40]}\u201d was removed")
        (quoted if was_quoted else other).append(change)
    why = [*quoted, *other]
    if before.get("tag") and after.get("tag") and before["tag"] != after["tag"]:
        # A button redone as a link, a field as a textarea: a selector naming the old tag cannot match.
        why.insert(0, f"its tag changed from <{before['tag'].lower()}> to <{after['tag'].lower()}>")
    if before.get("xpath") and after.get("xpath") and before["xpath"] != after["xpath"]:
        why.append("it moved in the page structure")
    reason = "; ".join(why[:3]) or "the element changed"
    tag = (after.get("tag") or "element").lower()
    return (
        f"`{old_selector}` on line {recovery['line']} no longer matches: {reason}. "
        f"The {tag} is now `{recovery['new_selector']}` (confidence {recovery.get('confidence', 0):.0%})."
    )


def describe_move_into_frame(recovery: dict) -> str:
    """The root cause of an element found in an iframe: where it went, and what else changed about it."""
    old, inner = recovery["old_selector"], recovery["inner_selector"]
    cause = f"`{old}` on line {recovery['line']} no longer matches: the element is now inside the frame `{recovery['frame_selector']}`"
    if inner == old:
        return cause + ", unchanged; the new version looks for it in there."
    changed = describe_selector_change({**recovery, "new_selector": inner}).split(" no longer matches: ", 1)[1]
    return f"{cause}, where {changed[0].lower()}{changed[1:]}"


# -- small helpers -------------------------------------------------------------------------------

def _quotes_whole(selector: str, value: str) -> bool:
    """Whether `selector` names `value` whole (`#name`, `"Your name"`, `text=Send`), not as a piece of another word."""
    return re.search(r"[\"'=#]" + re.escape(value) + r"(?:[\"'\]),\s]|$)", selector) is not None


_SUMMARY_KEYS = (
    "ref", "tag", "id", "name", "class", "type", "text", "href", "role", "aria_label", "data_testid", "placeholder",
    "xpath", "x", "y", "width", "height",
)


class MenuMatch(NamedTuple):
    item: dict | None  # the closed menu's item that is the target; None when an element on show is, or none is
    best: dict | None  # the best candidate, on show or in a menu
    result: LocateResult


def closed_menu_match(target: dict | None, page: dict, rejected: list[dict]) -> MenuMatch | None:
    """Whether the element a step wants is one of the page's closed menus' links and buttons (a redesign tucked it
    into a drop-down). The elements on show compete too: a menu item wins only if nothing on show is the element.
    None when the page has no closed menus (or nothing is looked for)."""
    hidden = page.get("in_closed_menus") or []
    if not target or not hidden:
        return None
    elements = page.get("elements") or []
    pool = [*elements, *({**item, "visible": True} for item in hidden)]
    result = locate(target, pool, excluded=rejected_indexes(pool, rejected))
    chosen = _hidden_choice(result, hidden, len(elements))
    if result.abstained:
        result = _folded_into_its_form(target, page, pool, hidden, rejected) or result
    elif chosen is not None and _the_steps_form(target, page, by_place=True) not in (None, chosen.get("form_xpath")):
        # A closed section's item outside the step's form, which is still on the page: not the target however alike.
        result = dataclasses.replace(result, index=None, abstained=True,
                                     reason="a closed section's look-alike that belongs to another form than the step's")
    best = pool[result.ranked[0][0]] if result.ranked else None
    in_menu = not result.abstained and result.index is not None and result.index >= len(elements)
    return MenuMatch(hidden[result.index - len(elements)] if in_menu else None, best, result)


class FrameMatch(NamedTuple):
    frame: str  # the iframe's selector
    element: dict  # the element in it, as the frame's observation has it
    confidence: float


def frame_match(
    handover, target: dict | None, page: dict, rejected: list[dict], *, beating: float, log: Callable[..., None],
    later: list[dict] = (),
) -> FrameMatch | None:
    """The element a step wants, found in one of the page's iframes of its own origin (a redesign embedded the form
    as a page of its own): a confident match scoring above the page's own best (`beating`), in exactly one frame.
    Another site's frame (a map, a video, a payment form) is not the task's to fill in, and is not looked in; nor
    is any frame when the page itself still shows the element of a later step (`later`: their fingerprints) of
    the same form: the field was removed from that form, and a frame's look-alike (a newsletter sign-up's Name
    field) belongs to another one."""
    if not target:
        return None
    if (stayed := _form_still_on_the_page(target, later, page.get("elements") or [])) is not None:
        log("locate_in_frame", why="the form is still on the page (a later step's element is there): frames are "
            "not searched", element=_summary(stayed))
        return None
    origin = _origin(page.get("url") or "")
    found = []
    for frame in page.get("frames") or []:
        if not _same_origin(frame.get("url") or "", origin):
            continue
        try:
            inside = handover.observe(frame=frame["selector"])
        except HandoverError as exc:  # the frame went away, or has not loaded
            log("locate_in_frame", frame=frame["selector"], why=str(exc))
            continue
        if not _same_origin(inside.get("url") or "", origin):  # its address redirected it to another site
            log("locate_in_frame", frame=frame["selector"], why=f"it shows {inside.get('url')}, another site")
            continue
        elements = inside.get("elements") or []
        result = locate(target, elements, excluded=rejected_indexes(elements, rejected))
        best = elements[result.ranked[0][0]] if result.ranked else None
        log("locate_in_frame", frame=frame["selector"], candidates=len(elements), best=_summary(best) if best else None,
            confidence=round(result.confidence, 4), margin=round(result.margin, 4), abstained=result.abstained)
        if not result.abstained and result.index is not None and result.score > beating:
            found.append(FrameMatch(frame["selector"], elements[result.index], result.confidence))
    if len(found) > 1:
        log("locate_in_frame", why=f"{len(found)} frames hold an element like it: none is chosen")
    return found[0] if len(found) == 1 else None


# Selectors for a drop-down's opener, best first: its accessible name often includes the option shown in it, which
# changes with each choice.
OPENER_SELECTORS = {"test_id": 0, "id": 1, "attribute": 2, "class": 3, "role": 4, "css": 5}


class CustomSelectMatch(NamedTuple):
    value: str  # what the step asked its select for
    label: str  # the label that value had when the step last succeeded
    opener: dict  # the page's one control that opens a list and is called what the select was


def custom_select_match(failure: dict, fingerprint: dict | None, page: dict, *, log: Callable[..., None]) -> CustomSelectMatch | None:
    """A `select_option` whose select a redesign redid as a drop-down of its own: the control that now opens the
    list of options, when exactly one on show does and is called what the select was. None otherwise."""
    wanted = (failure.get("args") or {}).get("value")
    before = fingerprint or {}
    if failure.get("action") != "select_option" or not isinstance(wanted, str) or before.get("tag") != "SELECT":
        return None
    label = next((text for value, text in before.get("options") or [] if wanted in (value, text)), None)
    name = before.get("neighbor_text") or before.get("aria_label") or ""
    openers = [e for e in page.get("elements") or [] if e.get("visible") and e.get("enabled") is not False
               and _opens_a_list(e) and _names(e, name)]
    log("custom_select", label=label, named=name, openers=[_summary(e) for e in openers[:3]])
    return CustomSelectMatch(wanted, label, openers[0]) if label and len(openers) == 1 else None


def option_label(fingerprint: dict | None, value: object) -> str | None:
    """The label the option of `value` had in a <select> as `fingerprint` recorded it, if it did."""
    if not isinstance(value, str):
        return None
    for option in (fingerprint or {}).get("options") or []:
        if isinstance(option, list | tuple) and len(option) == 2 and option[0] == value:
            return str(option[1])
    return None


CHECKABLE_ROLES = frozenset({"checkbox", "radio", "switch", "menuitemcheckbox", "menuitemradio"})


def can_take(action: str | None, element: dict) -> bool:
    """Whether `element` can take the step's action at all: a `check` needs a checkbox, a radio button or a switch
    (a redesign may turn a checkbox into a switch; the words beside it, which read the same, are not one)."""
    if action in ("check", "uncheck", "set_checked"):
        return element.get("role") in CHECKABLE_ROLES or (element.get("tag") == "INPUT" and element.get("type") in ("checkbox", "radio"))
    return True


def _loads_more(element: dict, page_url: str) -> bool:
    """Whether `element` is a list's "Load more" control: a button on show, named so. A link that leads to another
    page is pagination, not more of this one."""
    href = element.get("href") or ""
    if element.get("tag") == "A" and href and not href.lower().startswith("javascript:"):
        if _without_fragment(urljoin(page_url, href)) != _without_fragment(page_url):
            return False
    pressable = element.get("tag") in ("BUTTON", "A") or element.get("role") == "button"
    return (pressable and element.get("visible") is not False and element.get("enabled") is not False
            and bool(_LOADS_MORE.search(_label(element))))


def _opens_a_list(element: dict) -> bool:
    """A control of a drop-down of the page's own (a native select, whose role is combobox too, is not one)."""
    return element.get("tag") != "SELECT" and (
        element.get("role") in ("combobox", "listbox") or element.get("haspopup") == "listbox")


def _names(element: dict, label: str) -> bool:
    """Whether what `element` is called (its accessible name, aria-label, or the text beside it) says `label`."""
    said = " ".join(element.get(key) or "" for key in ("name_text", "aria_label", "neighbor_text"))
    return bool(label) and fuzz.token_set_ratio(_folded(label), _folded(said)) >= 90


def _form_still_on_the_page(target: dict, later: list[dict], elements: list[dict]) -> dict | None:
    """The page's element that a later step of the target's form acted on (the same form by their recorded
    xpaths), if the page confidently shows one; None when the target was in no form or none of them is there."""
    form = _form_xpath(target.get("xpath") or "")
    if form is None:
        return None
    for fingerprint in later:
        if _form_xpath(fingerprint.get("xpath") or "") != form:
            continue
        result = locate(fingerprint, elements)
        if not result.abstained and result.index is not None:
            return elements[result.index]
    return None


def _form_xpath(xpath: str) -> str | None:
    """`/html[1]/body[1]/form[1]` of `/html[1]/body[1]/form[1]/div[2]/input[1]`: the innermost form the element is in."""
    found = re.match(r"(.*/form\[\d+\])/", xpath)
    return found.group(1) if found else None


def _folded_into_its_form(
    target: dict, page: dict, pool: list[dict], hidden: list[dict], rejected: list[dict],
) -> LocateResult | None:
    """The locator's choice among `pool` (the elements on show, then `hidden`, a closed section's items) when places
    are not compared, if it is a closed section's item of the form the target was in; else None.

    A form's button or field folded into a collapsed part of the same form (an accordion panel, a <details>) has no
    place on the page until that opens: compared by place, its old neighbour, still where the element was, reads as
    the element moved in place and the locator abstains. Not comparing places would also let a look-alike of another
    form win (a newsletter's "Send" in a closed footer), which the same form rules out."""
    form = _the_steps_form(target, page, by_place=True)
    if form is None:
        return None
    unplaced = {key: value for key, value in target.items() if key not in ("x", "y")}
    result = locate(unplaced, pool, excluded=rejected_indexes(pool, rejected))
    item = _hidden_choice(result, hidden, len(pool) - len(hidden))
    return result if item is not None and item.get("form_xpath") == form else None


def _hidden_choice(result: LocateResult, hidden: list[dict], first_hidden: int) -> dict | None:
    """The closed section's item `result` chose (`hidden` follows the elements on show from `first_hidden` on), or
    None when it abstained or chose an element on show."""
    if result.abstained or result.index is None or result.index < first_hidden:
        return None
    return hidden[result.index - first_hidden]


def of_other_forms(target: dict, elements: list[dict], page: dict) -> set[int]:
    """Indexes of the `elements` that belong to another form than the one the target was in, while that form is still
    on the page: a look-alike of another form (a newsletter's "Send" beside the contact form's) is not the target
    however alike it reads. None of them when the step's form cannot be told (see _the_steps_form); an element in no
    form is never one."""
    form = _the_steps_form(target, page)
    if form is None:
        return set()
    return {i for i, element in enumerate(elements) if element.get("form_xpath") not in (None, "", form)}


def in_another_form(target: dict, item: dict | None, page: dict) -> bool:
    """Whether `item` is one of of_other_forms."""
    return item is not None and bool(of_other_forms(target, [item], page))


def _the_steps_form(target: dict, page: dict, *, by_place: bool = False) -> str | None:
    """The xpath of the page's form that the target was in, when it can be told: the one form with its id, else its
    name, else the one form that posts where it did. Its place alone says little (a form added above it takes it), so
    a form known by nothing else (a script's form, which posts nowhere; a fingerprint recorded before forms were told
    apart) is found by its place only with `by_place`, where a wrong answer refuses rather than leaves the right
    element out. None when the target was in no form, or its form cannot be told."""
    forms = page.get("forms") or []
    for key in ("id", "name", "action"):
        if value := target.get(f"form_{key}"):
            same = [f for f in forms if f.get(key) == value]
            if len(same) == 1:
                return same[0].get("xpath")
    recorded = target.get("form_xpath") or _form_xpath(target.get("xpath") or "")
    if by_place and recorded is not None and any(f.get("xpath") == recorded for f in forms):
        return recorded
    return None


def _same_element(element: dict, page: dict) -> dict | None:
    """`element` of an earlier look at the page in `page`, a later one (with the refs of that look), by its tag and
    place in the page; None when no element on show is there."""
    return next((e for e in page.get("elements") or []
                 if e.get("xpath") == element.get("xpath") and e.get("tag") == element.get("tag")), None)


def _summary(element: dict, *, full: bool = False) -> dict:
    if full:
        return {k: v for k, v in element.items() if k != "ref"}
    return {k: element.get(k) for k in _SUMMARY_KEYS if element.get(k) not in (None, "")}


def _origin(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}"


def _same_origin(url: str, origin: str) -> bool:
    return _origin(url) == origin


def _is_http_url(url: str | None) -> bool:
    return bool(url) and urlparse(url).scheme in ("http", "https")


def _path_of(link: dict) -> str:
    return urlparse(link.get("href") or "").path


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _folded(text: str) -> str:
    """Words without accents: "Schließen" and "schliessen", "Refusér" and "refuser" read the same."""
    text = unicodedata.normalize("NFKD", text.lower().replace("\u00df", "ss"))
    return _words("".join(ch for ch in text if not unicodedata.combining(ch)))


def _expand(words: str) -> str:
    tokens = set(words.split())
    for group in SYNONYMS:
        if tokens & group:
            tokens |= group
    return " ".join(sorted(tokens))


def _link_score(wanted_path: str, link: dict) -> float:
    """How much a link looks like the page that moved: by its path and its text, synonyms included."""
    wanted = _expand(_words(wanted_path))
    path = _expand(_words(_path_of(link)))
    text = _expand(_words(link.get("text") or ""))
    return max(fuzz.token_set_ratio(wanted, path), 0.9 * fuzz.token_set_ratio(wanted, text))


def _site_root(wanted_url: str, base_url: object) -> str | None:
    """The root of the site the broken page is on when that site lives under a path (`https://host/shop/`,
    the task's base URL), else None. There the host's own "/" may be another application (the demo site sits
    beside Anchor's dashboard), so the search neither goes above it nor takes it for the site's home page."""
    if not (isinstance(base_url, str) and _same_origin(base_url, _origin(wanted_url))):
        return None
    root = base_url.rstrip("/") + "/"
    return root if urlparse(wanted_url).path.startswith(urlparse(root).path) else None


def _link_sources(wanted_url: str, base_url: object) -> list[str]:
    """Pages whose links may lead to the moved page: the task's base URL, the broken page's folder, the site root."""
    parsed = urlparse(wanted_url)
    origin = f"{parsed.scheme}://{parsed.netloc}"
    folder = parsed.path.rstrip("/").rsplit("/", 1)[0] + "/"
    sources = [origin + folder, origin + "/"]
    if root := _site_root(wanted_url, base_url):
        sources = [root, *(url for url in sources if url.startswith(root))]
    elif isinstance(base_url, str) and _same_origin(base_url, origin):
        sources.insert(0, base_url.rstrip("/") + "/")
    return list(dict.fromkeys(sources))[:3]


def _link_url(origin: str, link: dict) -> str:
    """The absolute URL a link of a page on `origin` leads to, without its fragment."""
    return urljoin(origin + "/", link.get("href") or "").split("#")[0]


def _rejected_links(links: list[dict], origin: str, rejected_paths: list[str]) -> list[str]:
    """The paths of the site's links that reviewers rejected as the moved page's new place, in the page's order."""
    paths = (urlparse(_link_url(origin, link)).path for link in links)
    return list(dict.fromkeys(path for path in paths if path in rejected_paths))


def _rank_links(
    wanted_path: str, origin: str, links: list[dict], *, home_path: str = "/", rejected_paths: frozenset[str] = frozenset()
) -> list[tuple[float, str, str]]:
    """Same-site links, one per path, best first; the broken path, the home page and pages a reviewer rejected as
    this page's new place are not candidates."""
    best: dict[str, tuple[float, str, str]] = {}
    for link in links:
        url = _link_url(origin, link)
        path = urlparse(url).path
        if not _same_origin(url, origin) or path.rstrip("/") in ("", home_path.rstrip("/")) or path in (wanted_path, *rejected_paths):
            continue
        score = _link_score(wanted_path, link)
        if path not in best or score > best[path][0]:
            best[path] = (score, url, link.get("text") or "")
    return sorted(best.values(), key=lambda item: item[0], reverse=True)


def _content_likeness(run: _Run, selectors: list[str]) -> float | None:
    """How alike (0-100) the elements of `selectors` on this page read to the text they had when their steps
    last succeeded; None when no text is remembered for them."""
    likeness = None
    for selector in selectors:
        remembered = run.context.later_texts.get(selector)
        if not remembered:
            continue
        answer = run.handover.act("inner_text", selector=selector)
        now = " ".join(str(answer.get("value") or "").split())[:2_000] if answer.get("ok") else ""
        before = " ".join(remembered.split())
        # A list that grew still holds what it held: compare the remembered text with its best-matching stretch.
        compare = fuzz.partial_ratio if len(before) >= CONTAINED_TEXT_MIN else fuzz.ratio
        likeness = max(likeness or 0.0, compare(before, now) if now else 0.0)
    return likeness


# Buttons that close a banner or pop-up, by preference: close it without answering, else answer with the least
# consent (cookies), else acknowledge it. Compared with the button's whole accessible name.
# English, German, French, Spanish, Italian and Dutch, as consent tools word them (accents and ß folded).
CLOSING_LABELS = (
    ("close", "dismiss", "x", "\u00d7", "\u2715", "\u2716", "no thanks", "no thank you", "not now", "maybe later",
     "skip", "close dialog", "close banner", "close this dialog", "close modal", "close popup",
     "schliessen", "nein danke", "spater", "fermer", "non merci", "plus tard", "cerrar", "no gracias", "chiudi",
     "no grazie", "sluiten", "nee bedankt"),
    ("reject all", "reject", "decline", "deny", "refuse", "reject cookies", "reject all cookies", "decline all",
     "deny all", "only necessary", "necessary only", "necessary cookies only", "use necessary cookies only",
     "only essential cookies", "essential cookies only", "continue without accepting",
     "alle ablehnen", "ablehnen", "nur notwendige", "nur notwendige cookies", "nur erforderliche cookies",
     "tout refuser", "refuser", "continuer sans accepter", "rechazar", "rechazar todo", "rechazar todas",
     "rifiuta", "rifiuta tutto", "rifiuta tutti", "weigeren", "alles weigeren", "alle weigeren"),
    ("accept", "accept all", "accept cookies", "accept all cookies", "allow all", "allow all cookies",
     "allow cookies", "agree", "i agree", "yes i agree", "i accept", "accept continue", "agree continue",
     "ok", "okay", "ok got it", "got it", "i understand", "understood",
     "alle akzeptieren", "akzeptieren", "zustimmen", "alle zulassen", "einverstanden", "verstanden",
     "tout accepter", "accepter", "j accepte", "d accord", "aceptar", "aceptar todo", "aceptar todas",
     "accetta", "accetta tutto", "accetta tutti", "accetto", "accepteren", "alles accepteren", "akkoord"),
)
# A layer that asks about these may be answered (Reject all, Accept); any other is only closed.
CONSENT_WORDS = ("cookie", "consent", "privacy", "gdpr", "tracking", "personal data", "our partners",
                 "datenschutz", "einwilligung", "confidentialite", "consentement", "privacidad", "consentimiento",
                 "riservatezza", "consenso", "toestemming")
# An icon-only button (an svg "×") says what it does in its id, class or test id instead.
_CLOSING_NAME = re.compile(r"(?<![a-z])(close|dismiss)(?![a-z])", re.IGNORECASE)


def closing_button(elements: list[dict], layer: dict) -> dict | None:
    """The button inside `layer` (a `covered_by` record) that closes it, or None. Links that lead somewhere
    ("Read our privacy policy") are never taken: following them would leave the task's page. Answers (reject,
    accept, OK) close only a layer that asks about cookies or privacy: in any other modal they are the user's
    decision to make ("OK" to place an order, "Decline" an invitation)."""
    layer_xpath = layer.get("xpath") or ""
    if not layer_xpath:
        return None
    inside = [
        e for e in elements
        if (e.get("xpath") or "").startswith(layer_xpath + "/") and e.get("enabled", True) and _presses_in_place(e)
    ]
    about_consent = any(word in _folded(layer.get("text") or "") for word in CONSENT_WORDS)
    for labels in CLOSING_LABELS if about_consent else CLOSING_LABELS[:1]:
        for element in inside:
            if _folded(_label(element)) in labels or _label(element).strip() in labels:
                return element
    unlabelled = (e for e in inside if not _label(e).strip())
    return next((e for e in unlabelled if _CLOSING_NAME.search(_identifiers(e))), None)


def login_page(url: str, params: dict) -> dict:
    """Where a login recovery's code opens the login form: `login_url` without its query (a `next=` or a one-time
    `state=` would be stale on the next run) and, relative to params["base_url"] when it is under it, `login_path`,
    so the code keeps working on another host."""
    login_url = url.split("#")[0].split("?")[0]
    base_url = str(params.get("base_url") or "").rstrip("/")
    return {
        "login_url": login_url,
        "login_path": login_url[len(base_url):] if base_url and login_url.startswith(base_url) else None,
    }


def _without_fragment(url: str | None) -> str:
    return (url or "").split("#")[0]


def _identifiers(element: dict) -> str:
    return " ".join(str(element.get(key) or "") for key in ("id", "class", "data_testid"))


def _presses_in_place(element: dict) -> bool:
    if (element.get("tag") or "").upper() == "A":
        href = (element.get("href") or "").strip()
        return not href or href.startswith(("#", "javascript:")) or element.get("role") == "button"
    return element.get("is_button") == "yes" or element.get("role") == "button"


def _left_out_note(rejected: list[dict]) -> str:
    """Why the locator did not consider elements on the page: else a reviewer reads "evidence too weak" with the
    element they rejected right there, and cannot tell that their rejection is what stops the heal."""

    def name(element: dict) -> str:
        tag, label = (element.get("tag") or "element").lower(), _label(element).strip()[:60]
        if label:
            return f"the {tag} \u201c{label}\u201d"
        return f"the {tag} #{element['id']}" if element.get("id") else f"a {tag}"

    named = ", ".join(name(e) for e in rejected[:3]) + (f" and {len(rejected) - 3} more" if len(rejected) > 3 else "")
    if len(rejected) == 1:
        return (f" ({named} was left out: a reviewer rejected it for this step before; if the reviewer was wrong, "
                f"put its selector in the task's code)")
    return (f" ({named} were left out: reviewers rejected them for this step before; if one of them is the element "
            f"after all, put its selector in the task's code)")


def _label(element: dict) -> str:
    return str(element.get("aria_label") or element.get("name_text") or element.get("text") or element.get("value") or "")


SUBMIT_WORDS = ("log in", "login", "sign in", "signin", "continue", "submit", "next")
# The first step of a two-step login: what its one field is called, and what its button says (whole label).
USER_NAME_STEP_HINTS = ("email", "user", "login", "account", "identifier")
NEXT_STEP_WORDS = ("next", "continue", "sign in", "log in", "login", "signin", "log on", "sign on")
# One email field and "Continue" is also how newsletters and password resets ask: those are never a login.
NOT_A_LOGIN_WORDS = ("subscribe", "newsletter", "forgot", "reset", "recover", "search", "invite", "unsubscribe")
# A form with these in its action, id, button or password label creates an account: never log in there.
SIGN_UP_WORDS = ("sign up", "signup", "sign-up", "register", "create", "join", "new account", "choose a password",
                 "new-password")


def _login_form(forms: list[dict]) -> tuple[dict, dict, dict] | None:
    """(username field, password field, submit button) of the first form with a visible password field that
    is not a sign-up form (posting the task's credentials there would create an account)."""
    for form in forms:
        inputs = [i for i in form.get("inputs") or [] if i.get("visible", True)]
        passwords = [i for i in inputs if (i.get("type") or "").lower() == "password"]
        if not passwords or _signs_up(form, passwords):
            continue
        password = passwords[0]
        texts = [i for i in inputs if i is not password and (i.get("type") or "text").lower() in ("text", "email", "")]
        # The strongest hint wins: an "email" field beats a "nickname" field.
        user = next(
            (i for hint in USERNAME_HINTS for i in texts if hint in _hint(i) or (i.get("type") or "") == hint),
            texts[0] if texts else None,
        )
        submit = _submit_button(form)
        if user is not None and submit is not None:
            return user, password, submit
    return None


def _submit_button(form: dict) -> dict | None:
    """The form's visible button that signs in ("Log in", "Continue"), else its first visible button."""
    submits = [b for b in form.get("submits") or [] if b.get("visible", True)]
    submit = next((b for b in submits if any(w in (b.get("text") or "").lower() for w in SUBMIT_WORDS)), None)
    return submit or (submits[0] if submits else None)


def _user_name_step(forms: list[dict]) -> tuple[dict, dict] | None:
    """(user name field, next button) of the first step of a two-step login: a form whose one field is a user
    name or email, with no password field, and a button that goes on ("Next", "Continue", "Sign in").
    Strict on purpose, as the secrets are typed into it: a newsletter form ("Subscribe"), a search form or a
    contact form (more fields, "Send") is never taken for it."""
    for form in forms:
        inputs = [i for i in form.get("inputs") or [] if i.get("visible", True)]
        fields = [i for i in inputs if (i.get("type") or "text").lower() not in ("checkbox", "radio", "submit", "button")]
        if len(fields) != 1 or (fields[0].get("type") or "").lower() == "password" or _signs_up(form, []):
            continue
        if any(word in _form_words(form, fields) for word in NOT_A_LOGIN_WORDS):
            continue
        user = fields[0]
        kind = f"{_hint(user)} {user.get('autocomplete') or ''} {user.get('type') or ''}".lower()
        if user.get("tag", "input") != "input" or not any(hint in kind for hint in USER_NAME_STEP_HINTS):
            continue
        submits = [b for b in form.get("submits") or [] if b.get("visible", True)]
        goes_on = next((b for b in submits if _words(b.get("text") or "") in NEXT_STEP_WORDS), None)
        if goes_on is not None:
            return user, goes_on
    return None


def _form_words(form: dict, fields: list[dict]) -> str:
    """What a form says it is for: its action, id, name and buttons, and how `fields` are named."""
    return " ".join(
        [str(form.get(key) or "") for key in ("action", "id", "name")]
        + [str(button.get("text") or "") for button in form.get("submits") or []]
        + [f"{_hint(field)} {field.get('autocomplete') or ''}" for field in fields]
    ).lower()


def _password_step(forms: list[dict]) -> tuple[dict, dict] | None:
    """(password field, submit button) of the second step of a two-step login."""
    for form in forms:
        inputs = [i for i in form.get("inputs") or [] if i.get("visible", True)]
        passwords = [i for i in inputs if (i.get("type") or "").lower() == "password"]
        if len(passwords) != 1 or _signs_up(form, passwords):
            continue
        if (submit := _submit_button(form)) is not None:
            return passwords[0], submit
    return None


def _fill_secret(run: _Run, selector: str, secret_key: str) -> str | None:
    """Type the secret into the field; why not, when the runner refused (a form off the task's sites)."""
    run.log("fill_secret", selector=selector, secret=secret_key)  # the key, never the value
    answer = run.handover.fill_secret(selector=selector, secret_key=secret_key)
    return None if answer.get("ok") else f"the login form was not filled: {answer.get('error')}"


def _signs_up(form: dict, passwords: list[dict]) -> bool:
    if len(passwords) > 1:
        return True  # a new password and its confirmation
    words = _form_words(form, passwords)
    return any(word in words for word in SIGN_UP_WORDS)


def _hint(field: dict) -> str:
    return " ".join(str(field.get(k) or "") for k in ("name", "id", "label", "placeholder")).lower()


def _unique_selector(handover, item: dict) -> str | None:
    if item.get("ref") is None or item["ref"] < 0:
        return None
    options = handover.selector_for(item["ref"])
    return options[0]["selector"] if options else None

"""JavaScript expressions built from snapshot.js, ready for page.evaluate / locator.evaluate.

The helper object is rebuilt inside each evaluate call instead of being installed as a page global:
nothing of ours lives in the page's world between calls (except the observe() element refs during a
hand-over), so sites cannot see or break it, and navigations need no re-injection.
"""

from __future__ import annotations

from pathlib import Path

SOURCE = (Path(__file__).with_name("snapshot.js")).read_text().strip()
_A = f"({SOURCE})"


def _compact(js: str) -> str:
    """Drop comment lines and indentation: the expression travels over two pipes per step."""
    lines = (ln.strip() for ln in js.splitlines())
    return "\n".join(ln for ln in lines if ln and not ln.startswith("//"))


_CORE = _compact(SOURCE.split("// @core-begin", 1)[1].split("\n", 1)[1].split("// @core-end", 1)[0])

# Element -> fingerprint dict (DESIGN §4 names). Only the core helpers, ~40% of the source.
FINGERPRINT = f"(el) => {{\n{_CORE}\nreturn fingerprint(el);\n}}"
PAGE_STATE = f"() => {_A}.pageState()"
OBSERVE = f"(max) => {_A}.observe(max)"
DOM_EXCERPT = f"(max) => {_A}.domExcerpt(max)"
BODY_TEXT = "(max) => document.body ? document.body.innerText.slice(0, max) : ''"
# Used with locator.evaluate_all: the evidence about a selector that failed.
ELEMENT_EVIDENCE = f"(els) => {_A}.elementEvidence(els)"
# Used with locator.evaluate_all during a hand-over: the layer drawn over the first match (with its ref), or null.
COVERING_LAYER = f"(els) => els.length ? {_A}.coveringLayer(els[0], true) : null"
# The URL of the document an element is in (a frame's, for an element in one).
DOCUMENT_URL = "(el) => el.ownerDocument.location.href"
# Where an iframe's content starts on the page (inside its border).
FRAME_OFFSET = ("(f) => { const r = f.getBoundingClientRect(); "
                "return [Math.round(r.left + scrollX + f.clientLeft), Math.round(r.top + scrollY + f.clientTop)]; }")
SCROLL_Y = "() => Math.round(window.scrollY)"
REF_HANDLE = f"(n) => {_A}.ref(n)"
SELECTOR_CANDIDATES = f"(n) => {{ const A = {_A}; const el = A.ref(n); return el ? A.selectorCandidates(el) : []; }}"
# evaluate_all over a candidate selector: [count, matches the ref'd element].
VERIFY_REF = f"(els, n) => [els.length, els.length === 1 && els[0] === {_A}.ref(n)]"

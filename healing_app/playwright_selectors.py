"""Reading Playwright selectors back into element properties. Pure; no Django.

When a step never succeeded before, there is no stored fingerprint; what the selector and the prompt
say about the element is the best evidence left.
"""

from __future__ import annotations

import ast
import json
import re

_ID = re.compile(r"#([A-Za-z_][\w\-]*)")
_CLASS = re.compile(r"\.([A-Za-z_][\w\-]*)")
_ATTR = re.compile(r"\[\s*([\w\-:]+)\s*(?:[~|^$*]?=\s*[\"']?([^\"'\]]*)[\"']?)?\s*\]")
_TAG = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9]*)")
_TEXT = re.compile(r"""^(?:text|internal:text)\s*=\s*["']?(.*?)["']?i?$""")
_ROLE = re.compile(r"""^role\s*=\s*(\w+)(?:\[name\s*=\s*["'](.*?)["'](?:i|s)?\])?""")
_GET_BY = re.compile(r"""get_by_(\w+)\(\s*["'](.*?)["'](?:\s*,\s*name\s*=\s*["'](.*?)["'])?""")
_ATTR_TO_PROP = {"data-testid": "data_testid", "data-test": "data_testid", "data-qa": "data_testid",
                 "aria-label": "aria_label", "name": "name", "type": "type", "placeholder": "placeholder",
                 "href": "href", "title": "title", "alt": "alt", "value": "value", "id": "id", "role": "role"}


def plain_selector(recorded: str | None) -> str:
    """The selector as the code wrote it. The runner records `page.locator("#x")` as the JSON string '"#x"'."""
    text = (recorded or "").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, str) else text
    return text


def fingerprint_from_selector(selector: str, *, prompt: str = "") -> dict:
    """The element properties a selector implies, e.g. '#submit' → {'id': 'submit', 'text': 'submit'}."""
    last = plain_selector(selector).split(">>")[-1].strip()
    props: dict[str, str] = {}
    if match := _GET_BY.search(last):
        kind, first, name = match.groups()
        if kind == "role":
            props["role"] = first
            if name:
                props["text"] = name
        elif kind == "test_id":
            props["data_testid"] = first
        elif kind in ("text", "label", "placeholder", "title", "alt_text"):
            props["placeholder" if kind == "placeholder" else "text"] = first
        return _with_words(props)
    if match := _TEXT.match(last):
        props["text"] = match.group(1)
        return _with_words(props)
    if match := _ROLE.match(last):
        props["role"] = match.group(1)
        if match.group(2):
            props["text"] = match.group(2)
        return _with_words(props)
    if match := _TAG.match(last):
        props["tag"] = match.group(1).upper()
    if match := _ID.search(last):
        props["id"] = match.group(1)
    classes = _CLASS.findall(re.sub(r"\[.*?\]", "", last))
    if classes:
        props["class"] = " ".join(classes)
    for name, value in _ATTR.findall(last):
        prop = _ATTR_TO_PROP.get(name.lower())
        if prop and value:
            props[prop] = value
    return _with_words(props)


def _with_words(props: dict[str, str]) -> dict[str, str]:
    """Identifiers often spell the visible text ('submit-order' → 'submit order'); offer that as text too."""
    if "text" not in props:
        source = props.get("data_testid") or props.get("id") or props.get("name") or props.get("aria_label")
        if source:
            props["text"] = re.sub(r"[-_]+|(?<=[a-z])(?=[A-Z])", " ", source).strip().lower()
    return props


def same_element(candidate: dict, rejected: dict) -> bool:
    """Whether a live candidate is the element a reviewer rejected before (rejections stick across runs)."""
    if rejected.get("xpath") and candidate.get("xpath") == rejected.get("xpath"):
        return True
    keys = [k for k in ("tag", "id", "name", "data_testid", "text", "href") if rejected.get(k)]
    return len(keys) >= 2 and all((candidate.get(k) or "") == rejected[k] for k in keys)


def rejected_indexes(candidates: list[dict], rejected: list[dict]) -> frozenset[int]:
    """Indexes of the live `candidates` that are elements a reviewer rejected for this step before."""
    return frozenset(i for i, candidate in enumerate(candidates) if any(same_element(candidate, r) for r in rejected))


_SELECTOR_METHODS = frozenset({
    "click", "dblclick", "fill", "type", "press", "check", "uncheck", "select_option", "hover", "focus",
    "inner_text", "text_content", "inner_html", "get_attribute", "input_value", "is_visible",
    "wait_for_selector", "locator", "query_selector", "query_selector_all",
})


def selectors_in_code(code: str, *, after_line: int = 0) -> list[str]:
    """Selector literals the code uses after `after_line`, in order: what the next page must contain."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _SELECTOR_METHODS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.lineno > after_line
        ):
            found.append((node.lineno, node.col_offset, node.args[0].value))
    seen: list[str] = []
    for _, _, selector in sorted(found):
        if selector not in seen:
            seen.append(selector)
    return seen

"""What a database can store: finding (for input, refused naming the path) and replacing (for what pages report)
NUL characters, lone surrogates, NaN and Infinity. Pure; no Django."""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "storable", "unstorable"]

MAX_JSON_DEPTH = 64  # far beyond any real params; deep enough nesting overflows the JSON encoder's stack


def unstorable(value: Any, depth: int = 0) -> tuple[str, str] | None:
    """The dotted path of the first value no database can store, and why; None when all can be.

    PostgreSQL refuses NUL characters in text and lone UTF-16 surrogates (which JSON's "\\ud800" escape
    makes), and no JSON column takes NaN or Infinity (which Python's JSON parser accepts, and which `1e999`
    becomes).
    """
    if isinstance(value, str):
        return _unstorable_text(value)
    if isinstance(value, float):
        return None if math.isfinite(value) else ("", "must be a finite number (NaN and Infinity are not JSON)")
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    if depth >= MAX_JSON_DEPTH:
        return "", f"must not be nested more than {MAX_JSON_DEPTH} levels deep"
    for key, item in items:
        if isinstance(key, str) and (problem := _unstorable_text(key)) is not None:
            return key.encode("utf-8", "replace").decode().replace("\x00", ""), problem[1]
        inner = unstorable(item, depth + 1)
        if inner is not None:
            path, problem = inner
            return (f"{key}.{path}" if path else str(key)), problem
    return None


_UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` with what no database can store replaced: NUL and lone surrogates in text by U+FFFD, NaN and
    Infinity by None. For what pages report (step text, failure messages); input is refused instead."""
    if isinstance(value, str):
        return _UNSTORABLE_CHARACTERS.sub("\ufffd", value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def _unstorable_text(text: str) -> tuple[str, str] | None:
    if "\x00" in text:
        return "", "must not contain NUL characters"
    if _UNSTORABLE_CHARACTERS.search(text):  # what is left of them: a lone surrogate
        return "", "must be valid Unicode text (it holds a lone surrogate such as \\ud800)"
    return None

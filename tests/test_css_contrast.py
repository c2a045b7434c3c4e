"""The static CSS's colours meet WCAG 2.1 AA where axe-core cannot see them all: a diff shows only the tokens its code
has, so every syntax colour is checked here on every diff background (text: 4.5:1), and the focus ring, which axe
does not check, on every background it is drawn against (non-text: 3:1)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

CSS = settings.BASE_DIR / "static" / "css"


def _relative_luminance(colour: str) -> float:
    hex_digits = colour.lstrip("#")
    if len(hex_digits) == 3:
        hex_digits = "".join(digit * 2 for digit in hex_digits)
    channels = [int(hex_digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    lighter, darker = sorted((_relative_luminance(a), _relative_luminance(b)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _root_colours(name: str) -> dict[str, str]:
    root = re.search(r":root\s*{(.*?)}", (CSS / name).read_text(), re.S).group(1)
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})", root))


def test_contrast_follows_wcag():
    assert round(contrast("#fff", "#000"), 2) == 21
    assert round(contrast("#767676", "#fff"), 2) == 4.54  # the lightest grey that passes AA on white


TOKENS = re.findall(r"^\.diff \.(\w+) {[^}]*?color: (#[0-9a-fA-F]{3,6})", (CSS / "pygments-diff.css").read_text(), re.M)


def test_the_syntax_colours_are_all_found():
    assert len(TOKENS) > 40, "pygments-diff.css changed shape: the test below would check nothing"


@pytest.mark.parametrize("token, colour", TOKENS)
def test_every_syntax_colour_reads_on_every_diff_background(token, colour):
    backgrounds = {"code": "#fff", **_root_colours("diff.css")}  # unchanged lines; added, deleted, changed characters
    low = {name: round(contrast(colour, bg), 2) for name, bg in backgrounds.items() if contrast(colour, bg) < 4.5}
    assert not low, f".diff .{token} ({colour}) is under 4.5:1 on {low}"


def test_the_focus_ring_stands_out_from_the_page_the_cards_and_the_header():
    colours = _root_colours("anchor.css")
    header = re.search(r"\.site-header { background: (#[0-9a-fA-F]{3,6})", (CSS / "anchor.css").read_text()).group(1)
    backgrounds = {"page": colours["bg"], "card": colours["card"], "header": header}
    low = {name: round(contrast(colours["focus"], bg), 2) for name, bg in backgrounds.items()
           if contrast(colours["focus"], bg) < 3}
    assert not low, f"the focus ring ({colours['focus']}) is under 3:1 on {low}"

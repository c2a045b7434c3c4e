"""Unit tests for the pure diff renderer."""

from __future__ import annotations

import dataclasses
import re
import time
from html.parser import HTMLParser

import pytest

from healing_app import diffing
from healing_app.diffing import Diff, render_diff

OLD = '''\
def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", params["name"])
    page.click("#submit")  # send
    return {"confirmation": page.inner_text(".confirmation")}
'''
NEW = OLD.replace('page.click("#submit")', 'page.click("[data-testid=send]")').replace(
    "    return", '    page.wait_for_load_state()\n    return'
)


class _Collector(HTMLParser):
    """Parses rendered HTML back into rows of cell texts, plus every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[tuple[str, list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append((dict(attrs).get("class") or "", []))
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector


def test_diff_is_a_frozen_dataclass_with_line_counts():
    diff = render_diff(OLD, NEW)
    assert isinstance(diff, Diff)
    assert (diff.added, diff.removed) == (2, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        diff.added = 0  # type: ignore[misc]


def test_identical_code_has_only_context_rows():
    diff = render_diff(OLD, OLD)
    assert (diff.added, diff.removed) == (0, 0)
    for html in (diff.side_by_side_html, diff.inline_html):
        classes = {cls for cls, _ in parse(html).rows}
        assert classes == {"diff-ctx"}


def test_side_by_side_pairs_changed_lines_with_line_numbers():
    html = render_diff(OLD, NEW).side_by_side_html
    assert html.startswith('<table class="diff diff-side">')
    rows = parse(html).rows
    assert [cls for cls, _ in rows] == ["diff-ctx"] * 3 + ["diff-chg", "diff-add", "diff-ctx"]
    _, changed = rows[3]
    assert changed == ["4", '    page.click("#submit")  # send', "4", '    page.click("[data-testid=send]")  # send']
    _, added = rows[4]
    assert added == ["", "", "5", "    page.wait_for_load_state()"]
    _, last = rows[5]
    assert (last[0], last[2]) == ("5", "6")


def test_side_by_side_marks_cells_for_css():
    tags = parse(render_diff(OLD, NEW).side_by_side_html).tags
    td_classes = {attrs.get("class") for tag, attrs in tags if tag == "td"}
    assert {"ln", "code", "code diff-del", "code diff-add", "code diff-empty"} <= td_classes


def test_inline_lists_removals_then_additions_with_signs():
    html = render_diff(OLD, NEW).inline_html
    assert html.startswith('<table class="diff diff-inline">')
    rows = parse(html).rows
    assert [cls for cls, _ in rows] == ["diff-ctx"] * 3 + ["diff-del", "diff-add", "diff-add", "diff-ctx"]
    assert rows[3][1] == ["4", "", "-", '    page.click("#submit")  # send']
    assert rows[4][1] == ["", "4", "+", '    page.click("[data-testid=send]")  # send']
    assert rows[5][1] == ["", "5", "+", "    page.wait_for_load_state()"]


def test_a_block_of_changes_in_inline_view_groups_removals_first():
    old = "a = 1\nb = 2\nc = 3\n"
    new = "a = 10\nb = 20\nc = 3\n"
    rows = parse(render_diff(old, new).inline_html).rows
    assert [cls for cls, _ in rows] == ["diff-del", "diff-del", "diff-add", "diff-add", "diff-ctx"]


def test_changed_characters_are_marked_within_a_line():
    html = render_diff(OLD, NEW).side_by_side_html
    marked = re.findall(r'<span class="[^"]*diff-char[^"]*">([^<]*)</span>', html)
    assert "".join(marked) == "#submit[data-testid=send]"


def test_unrelated_lines_are_not_marked_character_by_character():
    diff = render_diff("x = 1\n", "print('something else entirely')\n")
    assert "diff-char" not in diff.side_by_side_html


@pytest.mark.parametrize("view", ["side_by_side_html", "inline_html"])
def test_code_is_html_escaped(view):
    old = 'def run(page, params):\n    return "ok"\n'
    new = 'def run(page, params):\n    return "<script>alert(\'x\')</script> & <img src=x onerror=alert(1)>"\n'
    html = getattr(render_diff(old, new), view)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "&amp;" in html
    assert {tag for tag, _ in parse(html).tags} <= {"table", "tbody", "tr", "td", "span"}


@pytest.mark.parametrize("view", ["side_by_side_html", "inline_html"])
def test_html_has_no_inline_styles_or_event_handlers(view):
    html = getattr(render_diff(OLD, NEW), view)
    for _, attrs in parse(html).tags:
        assert set(attrs) <= {"class", "colspan"}


def test_python_tokens_are_highlighted():
    html = render_diff(OLD, NEW).side_by_side_html
    assert '<span class="k">def</span>' in html
    assert '<span class="c1"># send</span>' in html


def test_highlighting_follows_multi_line_strings():
    code = 'def run(page, params):\n    """Docs\n    <b>still docs</b>\n    """\n'
    html = render_diff(code, code + "    pass\n").side_by_side_html
    assert re.search(r'<span class="s[a-z0-9]*">    &lt;b&gt;still docs&lt;/b&gt;</span>', html)


def test_tokenizer_fallback_highlights_without_pygments(monkeypatch):
    monkeypatch.setattr(diffing, "_pygments_spans", lambda text: None)
    html = render_diff(OLD, NEW).side_by_side_html
    assert '<span class="k">def</span>' in html
    assert '<span class="c"># send</span>' in html
    assert '<span class="s">&quot;#submit&quot;</span>' in html or "diff-char" in html


def test_tokenizer_fallback_survives_broken_code(monkeypatch):
    monkeypatch.setattr(diffing, "_pygments_spans", lambda text: None)
    diff = render_diff("x = (1,\n", "x = '''open\n")
    assert (diff.added, diff.removed) == (1, 1)
    assert "x" in diff.inline_html


def test_line_endings_and_missing_final_newline_do_not_count_as_changes():
    diff = render_diff("a = 1\r\nb = 2\r\n", "a = 1\nb = 2")
    assert (diff.added, diff.removed) == (0, 0)


def test_form_feed_does_not_shift_line_numbers():
    rows = parse(render_diff("a = 1  # \x0c\nb = 2\n", "a = 1  # \x0c\nb = 3\n").inline_html).rows
    assert rows[1][1][:2] == ["2", ""]


def test_empty_inputs():
    assert render_diff("", "") == Diff(
        side_by_side_html='<table class="diff diff-side"><tbody>\n</tbody></table>',
        inline_html='<table class="diff diff-inline"><tbody>\n</tbody></table>',
        added=0,
        removed=0,
    )
    diff = render_diff("", "x = 1\n")
    assert (diff.added, diff.removed) == (1, 0)


def test_context_collapses_long_unchanged_runs():
    old = "".join(f"x{i} = {i}\n" for i in range(20))
    new = old.replace("x10 = 10", "x10 = 11")
    diff = render_diff(old, new, context=2)
    rows = parse(diff.inline_html).rows
    assert [cls for cls, _ in rows] == ["diff-skip"] + ["diff-ctx"] * 2 + ["diff-del", "diff-add"] + [
        "diff-ctx"
    ] * 2 + ["diff-skip"]
    assert rows[0][1] == ["8 unchanged lines"]
    assert rows[-1][1] == ["7 unchanged lines"]
    assert (diff.added, diff.removed) == (1, 1)
    side_rows = parse(diff.side_by_side_html).rows
    assert [cls for cls, _ in side_rows].count("diff-skip") == 2


def test_large_inputs_render_quickly_without_colour():
    old = "".join(f"    page.fill('#f{i}', params['v{i}'])  # <{i}>\n" for i in range(6000))
    new = old.replace("#f1500'", "#g1500'")
    started = time.monotonic()
    diff = render_diff(old, new, context=3)
    assert time.monotonic() - started < 2
    assert (diff.added, diff.removed) == (1, 1)
    assert 'class="k"' not in diff.inline_html and "&lt;1500&gt;" in diff.inline_html

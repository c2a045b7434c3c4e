"""Render a code diff as HTML tables for review.

Pure engine: no Django imports. diff-match-patch runs in line mode to pair lines, then
at character level inside changed line pairs. Every piece of text is HTML-escaped
(task code can contain ``<script>``); styling is left to CSS classes so the pages can
keep a strict Content-Security-Policy:

- ``table.diff.diff-side`` / ``table.diff.diff-inline``
- rows ``tr.diff-ctx`` (unchanged), ``tr.diff-del``, ``tr.diff-add``, ``tr.diff-chg``
  (side by side, a changed pair), ``tr.diff-skip`` (collapsed unchanged lines)
- cells ``td.ln`` (line number), ``td.sign`` (``-``/``+``), ``td.code`` plus
  ``diff-del``/``diff-add``/``diff-empty`` on side-by-side code cells
- ``span.diff-char`` marks the characters that changed within a line
- syntax tokens use Pygments' short class names (``k``, ``s2``, ``c1``, ...), so a
  Pygments style sheet scoped to ``.diff`` colours them.
"""

from __future__ import annotations

import io
import keyword
import token
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from itertools import groupby

from diff_match_patch import diff_match_patch

# The style sheets (under static/) that colour this module's HTML; the dashboard and the admin load them.
DIFF_STYLESHEETS = ("css/diff.css", "css/pygments-diff.css")

# Pairs whose text shares less than this much are shown as whole-line changes:
# character highlights would colour nearly everything and help nobody.
_MIN_SHARED = 0.4
_MAX_CHAR_DIFF_LEN = 2000
# Pygments lexes ~100 KB/s; past this a diff stays readable without colour.
_MAX_HIGHLIGHT_CHARS = 100_000


@dataclass(frozen=True)
class Diff:
    side_by_side_html: str
    inline_html: str
    added: int
    removed: int


# A line as (css class or "", text) segments.
_Segments = list[tuple[str, str]]


@dataclass(frozen=True)
class _Row:
    kind: str  # "ctx", "del", "add", "chg"
    old_no: int | None
    new_no: int | None
    old: _Segments | None
    new: _Segments | None


def render_diff(old: str, new: str, *, context: int | None = None) -> Diff:
    """Diff ``old`` against ``new``; ``context`` collapses unchanged runs to that many lines."""
    old_lines, new_lines = _split(old), _split(new)
    old_tokens, new_tokens = _highlight(old_lines), _highlight(new_lines)
    rows = list(_rows(old_lines, new_lines, old_tokens, new_tokens))
    added = sum(r.new is not None for r in rows if r.kind in {"add", "chg"})
    removed = sum(r.old is not None for r in rows if r.kind in {"del", "chg"})
    shown = _collapse(rows, context)
    return Diff(
        side_by_side_html=_side_by_side(shown),
        inline_html=_inline(shown),
        added=added,
        removed=removed,
    )


def _split(text: str) -> list[str]:
    # Only newlines end lines (as for Python's tokenizer); str.splitlines() would also
    # split on form feeds and U+2028 and shift every line number after them.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _rows(
    old_lines: list[str], new_lines: list[str], old_tokens: list[_Segments], new_tokens: list[_Segments]
) -> Iterator[_Row]:
    dmp = diff_match_patch()
    dmp.Diff_Timeout = 1.0
    # Line mode: every line becomes one character, so the diff is over lines.
    text1, text2, _ = dmp.diff_linesToChars(
        "".join(line + "\n" for line in old_lines), "".join(line + "\n" for line in new_lines)
    )
    diffs = dmp.diff_main(text1, text2, False)
    oi = ni = 0
    deleted: list[int] = []
    inserted: list[int] = []

    def flush() -> Iterator[_Row]:
        # Pair a run of deletions with the insertions that follow it, line by line.
        for k in range(max(len(deleted), len(inserted))):
            o = deleted[k] if k < len(deleted) else None
            n = inserted[k] if k < len(inserted) else None
            if o is not None and n is not None:
                old_seg, new_seg = _char_highlight(
                    dmp, old_lines[o], new_lines[n], old_tokens[o], new_tokens[n]
                )
                yield _Row("chg", o + 1, n + 1, old_seg, new_seg)
            elif o is not None:
                yield _Row("del", o + 1, None, old_tokens[o], None)
            else:
                yield _Row("add", None, n + 1, None, new_tokens[n])
        deleted.clear()
        inserted.clear()

    for op, chars in diffs:
        count = len(chars)  # one char per line
        if op == dmp.DIFF_EQUAL:
            yield from flush()
            for _ in range(count):
                yield _Row("ctx", oi + 1, ni + 1, old_tokens[oi], new_tokens[ni])
                oi, ni = oi + 1, ni + 1
        elif op == dmp.DIFF_DELETE:
            deleted.extend(range(oi, oi + count))
            oi += count
        else:
            inserted.extend(range(ni, ni + count))
            ni += count
    yield from flush()


def _char_highlight(
    dmp: diff_match_patch, old: str, new: str, old_seg: _Segments, new_seg: _Segments
) -> tuple[_Segments, _Segments]:
    if len(old) > _MAX_CHAR_DIFF_LEN or len(new) > _MAX_CHAR_DIFF_LEN:
        return old_seg, new_seg
    diffs = dmp.diff_main(old, new, False)
    dmp.diff_cleanupSemantic(diffs)
    shared = sum(len(t) for op, t in diffs if op == dmp.DIFF_EQUAL)
    if shared < _MIN_SHARED * max(len(old), len(new), 1):
        return old_seg, new_seg
    old_marks: list[tuple[int, int]] = []
    new_marks: list[tuple[int, int]] = []
    o = n = 0
    for op, text in diffs:
        if op == dmp.DIFF_EQUAL:
            o, n = o + len(text), n + len(text)
        elif op == dmp.DIFF_DELETE:
            old_marks.append((o, o + len(text)))
            o += len(text)
        else:
            new_marks.append((n, n + len(text)))
            n += len(text)
    return _mark(old_seg, old_marks), _mark(new_seg, new_marks)


def _mark(segments: _Segments, marks: list[tuple[int, int]]) -> _Segments:
    """Split token segments at mark boundaries and add ``diff-char`` to marked pieces."""
    cuts = sorted({0, *(p for m in marks for p in m)})
    out: _Segments = []
    pos = 0
    for cls, text in segments:
        start, end = pos, pos + len(text)
        points = [start, *(c for c in cuts if start < c < end), end]
        for a, b in zip(points, points[1:]):
            marked = any(m0 <= a and b <= m1 for m0, m1 in marks)
            out.append((f"{cls} diff-char".strip() if marked else cls, text[a - start:b - start]))
        pos = end
    return out


def _collapse(rows: list[_Row], context: int | None) -> list[_Row | int]:
    """Rows to show; an int stands for that many hidden unchanged rows."""
    if context is None:
        return list(rows)
    changed = [i for i, r in enumerate(rows) if r.kind != "ctx"]
    keep = {j for i in changed for j in range(i - context, i + context + 1)}
    shown: list[_Row | int] = []
    for i, row in enumerate(rows):
        if i in keep or row.kind != "ctx":
            shown.append(row)
        elif shown and isinstance(shown[-1], int):
            shown[-1] += 1
        else:
            shown.append(1)
    return shown


# --------------------------------------------------------------------------- HTML


def _code(segments: _Segments | None) -> str:
    if not segments:
        return ""
    return "".join(
        f'<span class="{cls}">{escape(text)}</span>' if cls else escape(text)
        for cls, text in segments
    )


def _ln(number: int | None) -> str:
    return f'<td class="ln">{number if number is not None else ""}</td>'


def _skip(hidden: int, colspan: int) -> str:
    noun = "line" if hidden == 1 else "lines"
    return f'<tr class="diff-skip"><td colspan="{colspan}">{hidden} unchanged {noun}</td></tr>'


def _side_by_side(rows: list[_Row | int]) -> str:
    out = ['<table class="diff diff-side"><tbody>']
    for row in rows:
        if isinstance(row, int):
            out.append(_skip(row, 4))
            continue
        old_cls = {"ctx": "code", "add": "code diff-empty"}.get(row.kind, "code diff-del")
        new_cls = {"ctx": "code", "del": "code diff-empty"}.get(row.kind, "code diff-add")
        out.append(
            f'<tr class="diff-{row.kind}">{_ln(row.old_no)}<td class="{old_cls}">{_code(row.old)}</td>'
            f'{_ln(row.new_no)}<td class="{new_cls}">{_code(row.new)}</td></tr>'
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def _inline(rows: list[_Row | int]) -> str:
    out = ['<table class="diff diff-inline"><tbody>']
    added: list[str] = []  # a change block lists all its removals, then its additions
    for row in rows:
        if isinstance(row, int) or row.kind == "ctx":
            out.extend(added)
            added.clear()
        if isinstance(row, int):
            out.append(_skip(row, 4))
        elif row.kind == "ctx":
            out.append(_inline_row("ctx", row.old_no, row.new_no, " ", row.new))
        else:
            if row.old is not None:
                out.append(_inline_row("del", row.old_no, None, "-", row.old))
            if row.new is not None:
                added.append(_inline_row("add", None, row.new_no, "+", row.new))
    out.extend(added)
    out.append("</tbody></table>")
    return "\n".join(out)


def _inline_row(kind: str, old_no: int | None, new_no: int | None, sign: str, seg: _Segments | None) -> str:
    return (
        f'<tr class="diff-{kind}">{_ln(old_no)}{_ln(new_no)}'
        f'<td class="sign">{sign}</td><td class="code">{_code(seg)}</td></tr>'
    )


# --------------------------------------------------------------------------- highlighting


def _highlight(lines: list[str]) -> list[_Segments]:
    """Token segments per line; the whole text is lexed at once so multi-line strings
    are coloured right. Falls back to plain text when the code does not tokenize."""
    text = "".join(line + "\n" for line in lines)
    if len(text) > _MAX_HIGHLIGHT_CHARS:
        return _per_line(text, [])
    spans = _pygments_spans(text)
    if spans is None:
        spans = _tokenize_spans(text)
    return _per_line(text, spans)


def _pygments_spans(text: str) -> list[tuple[int, int, str]] | None:
    try:
        from pygments.lexers import PythonLexer
        from pygments.token import STANDARD_TYPES
    except ImportError:
        return None
    lexer = PythonLexer(stripnl=False, ensurenl=False, stripall=False)
    spans = []
    pos = 0
    for ttype, value in lexer.get_tokens(text):
        while ttype not in STANDARD_TYPES:
            ttype = ttype.parent
        spans.append((pos, pos + len(value), STANDARD_TYPES[ttype]))
        pos += len(value)
    return spans if pos == len(text) else None


_TOKEN_CLASSES = {token.STRING: "s", token.NUMBER: "m", token.COMMENT: "c", token.OP: "o"}


def _tokenize_spans(text: str) -> list[tuple[int, int, str]]:
    """Tiny highlighter on the stdlib tokenizer, for when Pygments is not installed."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            cls = _TOKEN_CLASSES.get(tok.type)
            if tok.type == token.NAME:
                cls = "k" if keyword.iskeyword(tok.string) else "n"
            if cls and tok.start[0] <= len(starts) and tok.end[0] <= len(starts):
                begin = starts[tok.start[0] - 1] + tok.start[1]
                end = starts[tok.end[0] - 1] + tok.end[1]
                spans.append((begin, end, cls))
    except (tokenize.TokenError, SyntaxError):
        pass  # keep what was coloured before the error; the rest is plain
    return spans


def _per_line(text: str, spans: list[tuple[int, int, str]]) -> list[_Segments]:
    classes = [""] * len(text)
    for start, end, cls in spans:
        classes[start:end] = [cls] * (end - start)
    lines: list[_Segments] = []
    pos = 0
    for line in text.split("\n")[:-1]:
        segments: _Segments = []
        for cls, group in groupby(range(pos, pos + len(line)), key=classes.__getitem__):
            indices = list(group)
            segments.append((cls, text[indices[0]:indices[-1] + 1]))
        lines.append(segments)
        pos += len(line) + 1
    return lines

"""Small server-side SVG charts for the overview page.

Drawn on the server so the page needs no chart library and no inline script or style (the CSP
allows neither): colours come from CSS classes in static/css/anchor.css. Every chart carries a
<title> and <desc> for screen readers, and the page shows the same numbers in a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 12, 26, 36  # the top leaves room for the y axis's unit
LABEL_CHAR_W, LABEL_GAP = 7, 8  # an 11px axis label's width per character (generously), and the space between two


def stacked_bars(
    *, title: str, labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]], unit: str = "", desc: str = ""
) -> SafeString:
    """Vertical bars per label, one stacked segment per series: (name, css class, values). `unit` names the y axis."""
    totals = [sum(values[i] for _, _, values in series) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(len(labels), 1)
    bar_w = max(slot * 0.7, 1)
    every = _label_every(labels, slot)
    parts = [_axis(top, plot_h, unit)]
    for i, label in enumerate(labels):
        x = PAD_LEFT + i * slot + (slot - bar_w) / 2
        y = PAD_TOP + plot_h
        for name, css, values in series:
            h = plot_h * values[i] / top if top else 0
            if h <= 0:
                continue
            y -= h
            parts.append(
                f'<rect class="{escape(css)}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
                f"<title>{escape(label)}: {_fmt(values[i])} {escape(name)}</title></rect>"
            )
        if _show_label(i, len(labels), every):
            parts.append(
                f'<text class="chart-label" x="{x + bar_w / 2:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" '
                f'text-anchor="middle">{escape(_short_day(label))}</text>'
            )
    legend = [(name, css) for name, css, _ in series]
    return _svg(title, desc, parts, legend)


def horizontal_bars(*, title: str, items: Sequence[tuple[str, float, str]], unit: str = "", desc: str = "") -> SafeString:
    """One bar per (label, value, css class), longest first as given."""
    row_h = 26
    height = max(len(items), 1) * row_h + 8
    label_w = 150
    top = max((value for _, value, _ in items), default=0) or 1
    plot_w = WIDTH - label_w - 70
    parts = []
    for i, (label, value, css) in enumerate(items):
        y = 4 + i * row_h
        w = plot_w * value / top
        parts.append(
            f'<text class="chart-label" x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect class="{escape(css)}" x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 8}">'
            f"<title>{escape(label)}: {_fmt(value)}{escape(unit)}</title></rect>"
            f'<text class="chart-value" x="{label_w + w + 6:.1f}" y="{y + 16}">{_fmt(value)}{escape(unit)}</text>'
        )
    return _svg(title, desc, parts, [], height=height)


def line(
    *, title: str, labels: Sequence[str], values: Sequence[float | None], unit: str = "", css: str = "s-line", desc: str = ""
) -> SafeString:
    """A line over labels; None leaves a gap (a day with nothing to measure). `unit` follows each value and,
    stripped, names the y axis above its numbers ("0.10 min" beside each would not fit)."""
    top = _nice_max(max((v for v in values if v is not None), default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / max(len(labels) - 1, 1)
    # The last label ends at the last point instead of centring on it, so it needs half a label more room.
    every = _label_every(labels, step, last_ends_at_point=True)
    parts = [_axis(top, plot_h, unit.strip())]
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, value in enumerate(values):
        if value is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        x = PAD_LEFT + i * step
        y = PAD_TOP + plot_h - (plot_h * value / top if top else 0)
        segment.append(f"{x:.1f},{y:.1f}")
        parts.append(
            f'<circle class="{escape(css)}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
            f"<title>{escape(labels[i])}: {_fmt(value)}{escape(unit)}</title></circle>"
        )
    if segment:
        segments.append(segment)
    for points in segments:
        parts.insert(1, f'<polyline class="{escape(css)} chart-line" points="{" ".join(points)}"/>')
    for i, label in enumerate(labels):
        if _show_label(i, len(labels), every):
            # The last point sits on the plot's right edge: its label ends there instead of overflowing.
            anchor = "end" if i == len(labels) - 1 and len(labels) > 1 else "middle"
            parts.append(
                f'<text class="chart-label" x="{PAD_LEFT + i * step:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" '
                f'text-anchor="{anchor}">{escape(_short_day(label))}</text>'
            )
    return _svg(title, desc, parts, [])


# -- drawing helpers -----------------------------------------------------------------------------


def _svg(title: str, desc: str, parts: list[str], legend: list[tuple[str, str]], *, height: int = HEIGHT) -> SafeString:
    legend_svg = ""
    x = PAD_LEFT
    for name, css in legend:
        legend_svg += (
            f'<rect class="{escape(css)}" x="{x}" y="{height - 12}" width="10" height="10"/>'
            f'<text class="chart-label" x="{x + 14}" y="{height - 3}">{escape(name)}</text>'
        )
        x += 14 + 8 * len(name) + 16
    body = "".join(parts) + legend_svg
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" preserveAspectRatio="xMinYMin meet">'
        f"<title>{escape(title)}</title><desc>{escape(desc or title)}</desc>{body}</svg>"
    )


def _axis(top: float, plot_h: float, unit: str = "") -> str:
    lines = []
    if unit:
        lines.append(f'<text class="chart-label" x="{PAD_LEFT - 6}" y="{PAD_TOP - 12}" text-anchor="end">{escape(unit)}</text>')
    for fraction in (0, 0.5, 1):
        y = PAD_TOP + plot_h - plot_h * fraction
        lines.append(
            f'<line class="chart-grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="chart-label" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(top * fraction)}</text>'
        )
    return "".join(lines)


def _nice_max(value: float) -> float:
    """Round the axis top up to 1, 2 or 5 times a power of ten, so gridlines read as round numbers."""
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if value <= factor * magnitude * (1 + 1e-9):
            return factor * magnitude
    return value


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}" if value >= 0.01 else f"{value:.4f}"


def _short_day(label: str) -> str:
    # ISO dates (2025-11-26) become "11-26"; anything else is shown as given.
    return label[5:] if len(label) == 10 and label[4] == "-" else label


def _label_every(labels: Sequence[str], slot: float, *, last_ends_at_point: bool = False) -> int:
    """Label every n-th point, n as small as lets neighbouring labels keep LABEL_GAP between them."""
    width = max((len(_short_day(label)) for label in labels), default=0) * LABEL_CHAR_W
    needed = width * (1.5 if last_ends_at_point else 1) + LABEL_GAP
    return max(math.ceil(needed / slot), 1) if slot > 0 else 1


def _show_label(i: int, count: int, every: int) -> bool:
    # Counted back from the last point, which is always labelled (today): the spacing stays even up to it.
    return (count - 1 - i) % every == 0

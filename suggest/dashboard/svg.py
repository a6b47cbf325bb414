"""Charts as inline SVG strings, drawn on the server: no JavaScript library, nothing fetched at view time.

Every plotted point carries its numbers in `data-x`/`data-y` attributes and a `<title>` tooltip, so a
reader hovering sees the figure and a test can read exactly what was drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563")


@dataclass
class Series:
    """One line: points (x, y), and optionally a band (x, low, high) drawn behind it, e.g. a 95% interval."""

    name: str
    points: Sequence[tuple[float, float]]
    band: Sequence[tuple[float, float, float]] = field(default_factory=list)
    dashed: bool = False


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, value = [], first
    while value <= hi + step * 1e-6:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               y_range: tuple[float, float] | None = None, width: int = 640, height: int = 260,
               x_labels: dict[float, str] | None = None, marks: Sequence[tuple[float, str]] = ()) -> str:
    """A line chart with axes, ticks, a legend and optional interval bands and vertical marks.

    `x_labels` names some x values (e.g. dates) instead of numbers; `marks` draws a dashed vertical line
    at x with a caption (e.g. where the stopping signal fired). Empty series give a chart that says so.
    """
    drawn = [s for s in series if s.points]
    left, right, top, bottom = 52, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
             f'<title>{escape(title)}</title>']
    if not drawn:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">no data yet</text>')
        return "".join(parts) + "</svg>"
    xs = [p[0] for s in drawn for p in s.points] + [m[0] for m in marks]
    ys = [p[1] for s in drawn for p in s.points] + [v for s in drawn for b in s.band for v in b[1:]]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo, y_hi = y_range if y_range else (min(ys), max(ys))
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5

    def px(x: float) -> float:
        return round(left + (x - x_lo) / (x_hi - x_lo) * plot_w, 2)

    def py(y: float) -> float:
        y = min(max(y, y_lo), y_hi)
        return round(top + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h, 2)

    for tick in nice_ticks(y_lo, y_hi):
        if y_lo <= tick <= y_hi:
            parts.append(f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{py(tick)}" y2="{py(tick)}"/>'
                         f'<text class="tick" x="{left - 6}" y="{py(tick) + 4}" text-anchor="end">{_fmt(tick)}</text>')
    if x_labels:
        chosen, ticks = list(x_labels.items()), []
        for k in range(min(6, len(chosen))):  # at most 6 evenly spaced, distinct labels
            x, label = chosen[round(k * (len(chosen) - 1) / max(1, min(6, len(chosen)) - 1))]
            if not ticks or ticks[-1][1] != label:
                ticks.append((x, label))
    else:
        ticks = [(t, _fmt(t)) for t in nice_ticks(x_lo, x_hi, 6) if x_lo <= t <= x_hi]
    for x, label in ticks:  # labels at the edges align inwards, so none is cut off
        anchor = "end" if px(x) > left + plot_w - 24 else "start" if px(x) < left + 24 else "middle"
        parts.append(f'<text class="tick" x="{px(x)}" y="{top + plot_h + 16}" text-anchor="{anchor}">'
                     f'{escape(label)}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>'
                 f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}"/>'
                 f'<text class="label" x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle">'
                 f'{escape(x_label)}</text>'
                 f'<text class="label" x="12" y="{top + plot_h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top + plot_h / 2})">{escape(y_label)}</text>')
    for x, caption in marks:
        parts.append(f'<line class="mark" x1="{px(x)}" x2="{px(x)}" y1="{top}" y2="{top + plot_h}"/>'
                     f'<text class="tick" x="{px(x) + 4}" y="{top + 10}">{escape(caption)}</text>')
    for i, s in enumerate(drawn):
        color = PALETTE[i % len(PALETTE)]
        if s.band:
            upper = " ".join(f"{px(x)},{py(hi)}" for x, _, hi in s.band)
            lower = " ".join(f"{px(x)},{py(lo)}" for x, lo, _ in reversed(s.band))
            parts.append(f'<polygon class="band" points="{upper} {lower}" fill="{color}" fill-opacity="0.15"/>')
        path = " ".join(f"{px(x)},{py(y)}" for x, y in s.points)
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        parts.append(f'<polyline class="line" points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in s.points:
            parts.append(f'<circle class="point" data-series="{escape(s.name)}" data-x="{x:g}" data-y="{y:g}" '
                         f'cx="{px(x)}" cy="{py(y)}" r="3" fill="{color}"><title>{escape(s.name)}: '
                         f'{_fmt(y)} at {_fmt(x)}</title></circle>')
        lx = left + 8 + i * 150
        parts.append(f'<rect x="{lx}" y="6" width="12" height="4" fill="{color}"/>'
                     f'<text class="legend" x="{lx + 16}" y="12">{escape(s.name)}</text>')
    return "".join(parts) + "</svg>"


def bar_chart(bars: Sequence[tuple[str, float]], *, title: str, width: int = 640, bar_height: int = 18,
              value_format: str = "{:.0f}") -> str:
    """Horizontal bars with their values: label mixes and per-annotator counts."""
    if not bars:
        return (f'<svg class="chart" viewBox="0 0 {width} 40" xmlns="http://www.w3.org/2000/svg"><title>'
                f'{escape(title)}</title><text x="{width / 2}" y="24" text-anchor="middle" class="empty">'
                'no data yet</text></svg>')
    left, gap = 150, 6
    height = len(bars) * (bar_height + gap) + gap
    top_value = max(v for _, v in bars) or 1.0
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i, (name, value) in enumerate(bars):
        y = gap + i * (bar_height + gap)
        w = round((width - left - 60) * value / top_value, 2)
        shown = value_format.format(value)
        parts.append(f'<text class="tick" x="{left - 6}" y="{y + bar_height - 5}" text-anchor="end">'
                     f'{escape(name[:24])}</text><rect class="bar" data-name="{escape(name)}" data-value="{value:g}" '
                     f'x="{left}" y="{y}" width="{w}" height="{bar_height}" fill="{PALETTE[0]}"><title>'
                     f'{escape(name)}: {shown}</title></rect><text class="tick" x="{left + w + 4}" '
                     f'y="{y + bar_height - 5}">{shown}</text>')
    return "".join(parts) + "</svg>"


__all__ = ["Series", "bar_chart", "line_chart", "nice_ticks"]

"""Inline SVG histograms: a feature's reference and current shares per drift bin, side by side.

Bins are drawn equally wide whatever their range: numeric bins are the reference's deciles,
so the reference is about flat and a shift shows as current bars piling up at one end.
Tick labels are the bin edges (numeric) or the values (categorical, plus "unseen"); each bar
has a ``<title>`` tooltip with its bin and share. No script, nothing fetched.
"""

from __future__ import annotations

import math
from html import escape
from typing import Optional

import numpy as np

from vigil_detectors.drift.statistics.bins import Bins

WIDTH, HEIGHT = 440, 150
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 30
REFERENCE_COLOUR, CURRENT_COLOUR = "#9aa9bd", "#2f6fd0"


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _shares(counts: np.ndarray) -> np.ndarray:
    total = float(np.sum(counts))
    return np.asarray(counts, dtype=np.float64) / total if total else np.zeros(len(counts))


def _axis(peak: float) -> tuple[float, int]:
    """A round upper end of the share axis above `peak` and its number of grid steps (2 to 5, round shares)."""
    for step in (0.02, 0.05, 0.1, 0.2, 0.25):
        steps = max(1, math.ceil(peak / step - 1e-9))
        if steps <= 5:
            return step * max(2, steps), max(2, steps)
    return 1.0, 4


def bin_names(bins: Bins, labels: Optional[list[str]] = None) -> list[str]:
    """A readable name per bin: ``[a, b)`` ranges, or the categorical values and ``unseen``."""
    if bins.categorical:
        values = labels or [_fmt(v) for v in bins.points]
        return [*values, "unseen"]
    e = [_fmt(v) for v in bins.points]
    if not e:
        return ["all values"]
    return [f"< {e[0]}", *(f"[{a}, {b})" for a, b in zip(e[:-1], e[1:], strict=True)), f"≥ {e[-1]}"]


def histogram(bins: Bins, current: np.ndarray, labels: Optional[list[str]] = None) -> str:
    """The SVG of one feature's reference vs current shares (see the module docstring)."""
    ref, cur = _shares(bins.reference_counts), _shares(current)
    names = bin_names(bins, labels)
    n = len(ref)
    top, ticks = _axis(float(max(ref.max(initial=0), cur.max(initial=0))))
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    gw = pw / n
    bw = gw * 0.36

    def y(share: float) -> float:
        return TOP + ph * (1 - share / top)

    out = [f'<svg class="hist" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
           'role="img">']
    for i in range(ticks + 1):
        share = top * i / ticks
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(share):.1f}" y2="{y(share):.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 4}" y="{y(share) + 3:.1f}" class="ytick">{share * 100:.0f}%</text>')
    for i in range(n):
        x0 = LEFT + i * gw + (gw - 2 * bw) / 2
        for k, (share, colour, what) in enumerate(((ref[i], REFERENCE_COLOUR, "reference"),
                                                   (cur[i], CURRENT_COLOUR, "current"))):
            h = ph * share / top
            out.append(f'<rect x="{x0 + k * bw:.1f}" y="{TOP + ph - h:.1f}" width="{bw - 1:.1f}" height="{h:.1f}" '
                       f'fill="{colour}"><title>{escape(names[i])}: {what} {share * 100:.1f}%</title></rect>')
    base = TOP + ph
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}" class="axis"/>')
    if bins.categorical:
        for i, name in enumerate(names):
            short = name if len(name) <= 9 else name[:8] + "…"
            out.append(f'<text x="{LEFT + (i + 0.5) * gw:.1f}" y="{base + 13}" class="xtick">{escape(short)}</text>')
    else:
        every = max(1, math.ceil(len(bins.points) * 34 / pw))  # keep edge labels ~34 px apart
        for i, edge in enumerate(bins.points):
            if i % every:
                continue
            x = LEFT + (i + 1) * gw
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" class="axis"/>')
            out.append(f'<text x="{x:.1f}" y="{base + 14}" class="xtick">{_fmt(edge)}</text>')
    out.append("</svg>")
    return "".join(out)

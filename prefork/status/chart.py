"""
The status page's chart of requests per second over the last minutes: an
inline SVG, drawn on the server, that needs no script and no stylesheet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: The drawing's own units; the page scales it to the width it has.
WIDTH, HEIGHT = 1200, 150
#: Room for the rate labels on the left, and the time labels below.
_LEFT, _BOTTOM, _TOP = 56, 22, 10


def niceCeiling(value: float) -> float:
    """
    The smallest of 1, 2, 2.5, 5 times a power of ten that is at least
    C{value} (and at least 1): the top of the chart's scale.
    """
    if value <= 1:
        return 1.0
    power: float = 10 ** math.floor(math.log10(value))
    return next(power * m for m in (1, 2, 2.5, 5, 10) if power * m >= value)


def _number(value: float) -> str:
    return f"{value:g}" if value < 1000 else f"{value / 1000:g}k"


def describeSpan(seconds: float) -> str:
    """
    C{seconds} as C{"45 s"}, C{"5 min"} or C{"2 min 30 s"}.
    """
    seconds = round(seconds)
    minutes, seconds = divmod(seconds, 60)
    if not minutes:
        return f"{seconds} s"
    return f"{minutes} min" + (f" {seconds} s" if seconds else "")


def _points(rates: Sequence[float], top: float) -> list[tuple[float, float]]:
    plotWidth, plotHeight = WIDTH - _LEFT, HEIGHT - _BOTTOM - _TOP
    stepWidth = plotWidth / (len(rates) - 1)
    return [(_LEFT + i * stepWidth, _TOP + plotHeight * (1 - rate / top)) for i, rate in enumerate(rates)]


def _grid(top: float) -> list[str]:
    baseline = HEIGHT - _BOTTOM
    lines = []
    for fraction in (0, 0.5, 1):
        y = baseline - (baseline - _TOP) * fraction
        dash = "" if fraction == 0 else ' stroke-dasharray="4 4"'
        lines.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}" stroke="#d5dbe7"{dash}/>')
        lines.append(f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{_number(top * fraction)}</text>')
    return lines


def rateChart(rates: Sequence[float], step: float) -> str:
    """
    The SVG of a rate history: C{rates} are requests per second over each
    C{step} seconds, the oldest first, drawn across the chart's width.
    """
    if len(rates) < 2:
        return (
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>requests per second</title>'
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
            f"collecting: one point every {step:g} s</text></svg>"
        )
    top = niceCeiling(max(rates))
    points = _points(rates, top)
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    baseline = HEIGHT - _BOTTOM
    area = f"M{_LEFT},{baseline} L{line} L{WIDTH},{baseline} Z"
    span = describeSpan(step * (len(rates) - 1))
    return "".join([
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
        f"<title>requests per second over the last {span}, one point per {step:g} s</title>",
        *_grid(top),
        f'<path d="{area}" fill="#4f7be0" fill-opacity="0.15"/>',
        f'<polyline points="{line}" fill="none" stroke="#4f7be0" stroke-width="2" stroke-linejoin="round"/>',
        f'<text x="{_LEFT}" y="{HEIGHT - 4}">{span} ago</text>',
        f'<text x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end">now</text>',
        "</svg>",
    ])

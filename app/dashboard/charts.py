"""Server-drawn SVG bar charts: geometry here, markup in templates/dashboard/_bar_chart.html."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # for the <title> tooltip and the data table
    day: date
    value: int


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    max_label: str
    first_day: date | None
    last_day: date | None
    baseline: float
    top: float


def _nice_max(value: int) -> int:
    """Round the axis maximum up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def bar_chart(
    points: Sequence[tuple[date, int]],
    fmt: Callable[[int], str],
    width: int = 720,
    height: int = 200,
) -> BarChart:
    """Bars for (day, value) points; `fmt` turns a value into text for people."""
    top, bottom, left, right = 4.0, 4.0, 4.0, 4.0  # labels are HTML around the drawing
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max((v for _, v in points), default=0))
    n = max(1, len(points))
    slot = plot_w / n
    gap = min(2.0, slot * 0.2)
    bars = []
    for i, (day, value) in enumerate(points):
        h = plot_h * value / peak if peak else 0.0
        bars.append(
            Bar(
                x=round(left + i * slot + gap / 2, 2),
                y=round(top + plot_h - h, 2),
                width=round(max(1.0, slot - gap), 2),
                height=round(h, 2),
                label=f"{day.isoformat()}: {fmt(value)}",
                day=day,
                value=value,
            )
        )
    return BarChart(
        width=width,
        height=height,
        bars=bars,
        max_label=fmt(peak),
        first_day=points[0][0] if points else None,
        last_day=points[-1][0] if points else None,
        baseline=top + plot_h,
        top=top,
    )

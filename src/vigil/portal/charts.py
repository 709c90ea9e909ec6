"""Telemetry charts drawn on the server as SVG: no script, no chart library, nothing inline
that the CSP would have to allow (colours come from classes in portal.css).

The input is the telemetry service's buckets (min / max / average per bucket); the chart draws
the average as a line over the min-max band, breaking both where buckets are missing (a silent
device shows as a gap, not as a straight line across it). Coordinates only: the template writes
the elements, and the same buckets feed its data-table fallback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from vigil.monitoring.telemetry import Bucket

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 36


@dataclass(frozen=True, slots=True)
class Range:
    """A chart's time window and the bucket that keeps it under ~150 points."""

    name: str
    label: str
    span: timedelta
    bucket_seconds: int


RANGES = {
    r.name: r
    for r in (
        Range("1h", "Last hour", timedelta(hours=1), 60),
        Range("6h", "Last 6 hours", timedelta(hours=6), 300),
        Range("24h", "Last 24 hours", timedelta(days=1), 900),
        Range("7d", "Last 7 days", timedelta(days=7), 3600),
        Range("30d", "Last 30 days", timedelta(days=30), 21_600),
    )
}
DEFAULT_RANGE = "24h"


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    plot: tuple[int, int, int, int]  # left, top, right, bottom
    avg: str  # SVG path data, one sub-path per run of consecutive buckets
    band: str  # closed sub-paths: max forward, min back
    dots: list[tuple[float, float]]  # buckets standing alone (no line to draw)
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    low: float
    high: float


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _label(value: float, step: float) -> str:
    """As many decimals as the step has (2.5 -> one, 0.25 -> two, 20 -> none)."""
    decimals = len(f"{step:.10g}".partition(".")[2]) if "e" not in f"{step:g}" else 6
    return f"{value:.{decimals}f}"


def line_chart(
    buckets: list[Bucket], since: datetime, until: datetime, bucket_seconds: int
) -> Chart | None:
    if not buckets:
        return None
    left, top, right, bottom = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM
    low = min(b.min for b in buckets)
    high = max(b.max for b in buckets)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    step = _nice_step(high - low, 5)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step
    start, seconds = since.timestamp(), max((until - since).total_seconds(), 1)

    def x(moment: datetime) -> float:
        middle = moment.timestamp() + bucket_seconds / 2
        fraction = min(max((middle - start) / seconds, 0.0), 1.0)
        return round(left + fraction * (right - left), 1)

    def y(value: float) -> float:
        return round(bottom - (value - low) / (high - low) * (bottom - top), 1)

    runs: list[list[Bucket]] = []
    for b in buckets:
        if runs and (b.start - runs[-1][-1].start).total_seconds() <= bucket_seconds:
            runs[-1].append(b)
        else:
            runs.append([b])
    avg, band, dots = [], [], []
    for run in runs:
        if len(run) == 1:
            dots.append((x(run[0].start), y(run[0].avg)))
            continue
        avg.append("M" + " L".join(f"{x(b.start)},{y(b.avg)}" for b in run))
        forward = " L".join(f"{x(b.start)},{y(b.max)}" for b in run)
        back = " L".join(f"{x(b.start)},{y(b.min)}" for b in reversed(run))
        band.append(f"M{forward} L{back} Z")
    y_ticks = []
    value = low
    while value <= high + step / 2:
        y_ticks.append((y(value), _label(value, step)))
        value += step
    fmt = "%H:%M" if seconds <= 86_400 else "%m-%d %H:%M" if seconds <= 7 * 86_400 else "%m-%d"
    x_ticks = []
    for n in range(6):
        moment = since + (until - since) * n / 5
        x_ticks.append((round(left + n / 5 * (right - left), 1), moment.strftime(fmt)))
    return Chart(
        WIDTH,
        HEIGHT,
        (left, top, right, bottom),
        " ".join(avg),
        " ".join(band),
        dots,
        y_ticks,
        x_ticks,
        low,
        high,
    )

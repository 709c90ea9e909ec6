"""The server-drawn telemetry chart: coordinates from the telemetry service's buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vigil.monitoring.telemetry import Bucket
from vigil.portal.charts import HEIGHT, WIDTH, line_chart

START = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)


def bucket(n: int, value: float, spread: float = 1.0) -> Bucket:
    return Bucket(START + timedelta(minutes=n), 3, value - spread, value + spread, value)


def test_no_buckets_draw_no_chart() -> None:
    assert line_chart([], START, START + timedelta(hours=1), 60) is None


def test_a_gap_in_the_buckets_breaks_the_line_and_the_band() -> None:
    buckets = [bucket(n, 20 + n) for n in (0, 1, 2)] + [bucket(n, 10) for n in (10, 11)]
    chart = line_chart(buckets, START, START + timedelta(minutes=20), 60)
    assert chart is not None
    assert chart.avg.count("M") == 2  # two runs, not one line across the silence
    assert chart.band.count("M") == 2
    assert chart.band.count("Z") == 2
    assert chart.dots == []


def test_a_lone_bucket_is_a_dot_and_everything_stays_in_the_plot() -> None:
    buckets = [bucket(0, 5), bucket(1, 7), bucket(30, -3)]
    chart = line_chart(buckets, START, START + timedelta(hours=1), 60)
    assert chart is not None
    assert len(chart.dots) == 1
    left, top, right, bottom = chart.plot
    assert 0 < left < right < WIDTH
    assert 0 < top < bottom < HEIGHT
    for x, y in chart.dots:
        assert left <= x <= right
        assert top <= y <= bottom
    assert chart.low <= -4
    assert chart.high >= 8
    labels = [label for _, label in chart.y_ticks]
    assert labels == sorted(labels, key=float)
    assert len(chart.x_ticks) == 6


def test_a_flat_series_still_has_a_scale() -> None:
    chart = line_chart(
        [bucket(n, 1.0, 0.0) for n in range(5)], START, START + timedelta(minutes=5), 60
    )
    assert chart is not None
    assert chart.high > chart.low
    assert "nan" not in chart.avg

"""The token bucket in isolation, with an injected monotonic clock."""

from __future__ import annotations

from vigil.edge.rate_limit import TokenBuckets


class Ticker:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_burst_is_allowed_then_refused_with_wait() -> None:
    tick = Ticker()
    buckets = TokenBuckets(rate=2.0, burst=3, monotonic=tick)
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == 0.5


def test_tokens_refill_at_the_rate() -> None:
    tick = Ticker()
    buckets = TokenBuckets(rate=2.0, burst=3, monotonic=tick)
    for _ in range(3):
        buckets.take("k")
    tick.t = 0.5
    assert buckets.take("k") == 0.0
    assert buckets.take("k") > 0


def test_keys_are_independent() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, monotonic=Ticker())
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0

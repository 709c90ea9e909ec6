"""Rate limit per credential (per client address for anonymous calls): a token bucket.

Buckets live in the process; with N processes behind a balancer a caller gets up to N times the
rate, which is stated in docs/operations.md. 429 carries `Retry-After` (RFC 9110 section 10.2.3).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from vigil.auth.principal import Principal
from vigil.core.errors import RateLimited

MAX_BUCKETS = 100_000


class TokenBuckets:
    def __init__(
        self, rate: float, burst: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self._now = rate, burst, monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, key: str) -> float:
        """Seconds until `key` has a token, without taking one (0 if it has one now)."""
        now = self._now()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: str) -> float:
        """Take one token; return 0 if allowed, else seconds until a token is available."""
        now = self._now()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._buckets.move_to_end(key)
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


def rate_limit(
    buckets: TokenBuckets, principal: Principal | None, client_ip: str | None
) -> RateLimited | None:
    """Take a token for the credential (the client address when anonymous), or the 429."""
    key = f"cred:{principal.credential_id}" if principal else f"ip:{client_ip}"
    wait = buckets.take(key)
    if wait > 0:
        return RateLimited(max(1, math.ceil(wait)))
    return None

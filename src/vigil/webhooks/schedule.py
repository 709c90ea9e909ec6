"""When a failed delivery is tried again, and when an endpoint gives up.

The schedule is the one the best webhook services use (issue 7): immediately, then 5 s, 5 min,
30 min, 2 h, 5 h, 10 h and 10 h, about 28 hours in all, so a receiver down for a day still gets
everything. Jitter (±10 %) spreads the retries of many messages that failed together, so a
receiver coming back is not hit by all of them in the same second.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

# Delay before attempt n+1 after attempt n failed (attempt 1 is immediate).
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.1
# An endpoint that has failed without a single success for this long is disabled.
DISABLE_AFTER = timedelta(days=5)
# A Retry-After longer than this is capped: the receiver cannot park messages forever.
MAX_RETRY_AFTER = timedelta(hours=10)


def next_attempt_at(
    attempts_made: int,
    now: datetime,
    retry_after: timedelta | None = None,
    rand: random.Random | None = None,
) -> datetime | None:
    """When to try again after `attempts_made` failed attempts; None once they are exhausted.

    A receiver's Retry-After is honoured when it asks for longer than the schedule would wait.
    """
    if attempts_made >= MAX_ATTEMPTS:
        return None
    delay = RETRY_DELAYS[attempts_made - 1]
    factor = 1 + (rand or _random).uniform(-JITTER, JITTER)
    delay = timedelta(seconds=delay.total_seconds() * factor)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return now + delay


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """RFC 9110 section 10.2.3: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value[:9]))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, timedelta(0))


_random = random.SystemRandom()

"""Standard Webhooks signatures verify with the specification's own library, and the retry
schedule is the one issue 7 names, with jitter and Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook

from vigil.webhooks.schedule import MAX_ATTEMPTS, RETRY_DELAYS, next_attempt_at, parse_retry_after
from vigil.webhooks.signing import headers, new_secret

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_secrets_are_whsec_32_bytes_and_never_printed() -> None:
    secret = new_secret()
    assert secret.value.startswith("whsec_")
    assert len(secret.key) == 32
    assert secret.value not in repr(secret)
    assert new_secret() != secret


def test_signature_verifies_with_the_standard_webhooks_library() -> None:
    secret = new_secret()
    body = b'{"type":"site.armed","data":{}}'
    sent = headers([secret], "msg_1", int(datetime.now(UTC).timestamp()), body)
    assert Webhook(secret.value).verify(body, sent) == {"type": "site.armed", "data": {}}


def test_during_rotation_both_secrets_verify() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"a":1}'
    sent = headers([new, old], "msg_2", int(datetime.now(UTC).timestamp()), body)
    assert len(sent["webhook-signature"].split(" ")) == 2
    assert Webhook(old.value).verify(body, sent) == {"a": 1}
    assert Webhook(new.value).verify(body, sent) == {"a": 1}


def test_schedule_is_5s_5m_30m_2h_5h_10h_10h_within_jitter() -> None:
    expected = [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert [int(d.total_seconds()) for d in RETRY_DELAYS] == expected
    assert MAX_ATTEMPTS == 8
    rand = random.Random(7)
    for attempt, seconds in enumerate(expected, start=1):
        when = next_attempt_at(attempt, NOW, rand=rand)
        assert when is not None
        assert seconds * 0.9 <= (when - NOW).total_seconds() <= seconds * 1.1
    assert next_attempt_at(8, NOW) is None


def test_jitter_spreads_retries() -> None:
    rand = random.Random(1)
    times = {next_attempt_at(3, NOW, rand=rand) for _ in range(20)}
    assert len(times) > 10


def test_retry_after_is_honoured_when_longer_and_capped() -> None:
    assert parse_retry_after("120", NOW) == timedelta(seconds=120)
    assert parse_retry_after("Thu, 01 Jan 2026 00:10:00 GMT", NOW) == timedelta(minutes=10)
    assert parse_retry_after("soon", NOW) is None
    when = next_attempt_at(1, NOW, timedelta(minutes=3), random.Random(0))
    assert when == NOW + timedelta(minutes=3)
    capped = next_attempt_at(1, NOW, timedelta(days=30), random.Random(0))
    assert capped == NOW + timedelta(hours=10)

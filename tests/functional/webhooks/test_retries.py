"""Issue 7 delivery rules with an injected clock: the retry schedule, Retry-After, 410,
exhaustion (flag and event) and the 5-day auto-disable; and the SSRF check at connect time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from tests.support.hooks_world import HooksWorld
from tests.support.receivers import Received, Reply

from vigil.events.types import EventType
from vigil.storage.tables import outbox_events, webhook_endpoints
from vigil.webhooks.schedule import RETRY_DELAYS
from vigil.webhooks.service import Webhooks


def answer(hooks: HooksWorld, path: str, reply: Reply) -> None:
    previous = hooks.receivers.valid.reply

    def respond(r: Received) -> Reply:
        return reply if r.path == path else previous(r)

    hooks.receivers.valid.reply = respond


def got(hooks: HooksWorld, path: str) -> int:
    return len([r for r in hooks.receivers.valid.received if r.path == path])


def events_about(hooks: HooksWorld, endpoint_id: str) -> list[str]:
    with hooks.services.db.read() as conn:
        q = select(outbox_events.c.type).where(outbox_events.c.subject_id == endpoint_id)
        return list(conn.execute(q).scalars())


def test_failures_follow_the_schedule_then_exhaust_and_tell_the_dealer(hooks: HooksWorld) -> None:
    actor = hooks.tenant()
    answer(hooks, "/down", Reply(500, body=b"x" * 5000))
    created = hooks.endpoint(hooks.receivers.valid.url("/down"), actor)
    clock = hooks.frozen()
    hooks.emit(actor=actor)
    hooks.deliver(clock)
    assert got(hooks, "/down") == 1
    for n, delay in enumerate(RETRY_DELAYS, start=2):
        clock.advance(delay * 0.85)  # inside the jitter band: not due yet
        hooks.deliver(clock)
        assert got(hooks, "/down") == n - 1
        clock.advance(delay * 0.3)
        hooks.deliver(clock)
        assert got(hooks, "/down") == n
    [message] = hooks.messages(created.endpoint.id)
    assert (message["status"], message["exhausted"], message["attempts"]) == ("failed", 1, 8)
    attempts = hooks.attempts(created.endpoint.id)
    assert [a["attempt"] for a in attempts] == list(range(1, 9))
    assert len(attempts[0]["response_body"]) == 1024  # first 1 KiB kept
    assert "webhook.message_exhausted" in events_about(hooks, created.endpoint.id)
    actions = [r["action"] for r in hooks.audit_for(message["id"])]
    assert actions.count("webhook.delivery_attempted") == 8
    assert "webhook_message.exhausted" in actions
    clock.advance(timedelta(days=2))
    hooks.deliver(clock)
    assert got(hooks, "/down") == 8  # nothing more after exhaustion...
    replayed = hooks.services.webhooks.messages.replay_failed(
        actor, created.endpoint.id, message["created_at"] - timedelta(seconds=1)
    )
    answer(hooks, "/down", Reply(200))
    hooks.deliver()  # ...until a replay, which carries the same webhook-id
    assert replayed == 1
    assert hooks.receivers.valid.received[-1].headers["webhook-id"] == message["id"]
    assert hooks.messages(created.endpoint.id)[0]["status"] == "delivered"


def test_retry_after_is_honoured(hooks: HooksWorld) -> None:
    actor = hooks.tenant()
    answer(hooks, "/busy", Reply(503, {"retry-after": "3600"}))
    created = hooks.endpoint(hooks.receivers.valid.url("/busy"), actor)
    clock = hooks.frozen()
    hooks.emit(actor=actor)
    hooks.deliver(clock)
    [message] = hooks.messages(created.endpoint.id)
    assert message["next_attempt_at"] - clock.now() == timedelta(seconds=3600)
    clock.advance(timedelta(minutes=59))
    hooks.deliver(clock)
    assert got(hooks, "/busy") == 1
    clock.advance(timedelta(minutes=2))
    hooks.deliver(clock)
    assert got(hooks, "/busy") == 2


def test_a_receiver_answering_nul_is_delivered_and_its_answer_kept_without_it(
    hooks: HooksWorld,
) -> None:
    # The kept response body is the receiver's text; PostgreSQL cannot store NUL. The answer
    # must neither fail the worker's turn (and with it every result in the batch) nor be lost.
    actor = hooks.tenant()
    answer(hooks, "/nul", Reply(200, body=b"ok\x00then more"))
    created = hooks.endpoint(hooks.receivers.valid.url("/nul"), actor)
    hooks.emit(actor=actor)
    assert hooks.deliver() == 1
    [message] = hooks.messages(created.endpoint.id)
    assert message["status"] == "delivered"
    [attempt] = hooks.attempts(created.endpoint.id)
    assert (attempt["result"], attempt["response_body"]) == ("success", "ok\ufffdthen more")
    assert got(hooks, "/nul") == 1


def test_410_gone_disables_the_endpoint(hooks: HooksWorld) -> None:
    actor = hooks.tenant()
    answer(hooks, "/gone", Reply(410))
    created = hooks.endpoint(hooks.receivers.valid.url("/gone"), actor)
    hooks.emit(actor=actor)
    hooks.deliver()
    endpoint = hooks.services.webhooks.endpoints.get(actor, created.endpoint.id)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "gone_410")
    assert hooks.messages(created.endpoint.id)[0]["status"] == "failed"
    hooks.emit(actor=actor)
    hooks.deliver()
    assert got(hooks, "/gone") == 1  # nothing is sent once it said 410
    assert "webhook.endpoint_disabled" in events_about(hooks, created.endpoint.id)


def test_an_endpoint_failing_for_five_days_is_disabled(hooks: HooksWorld) -> None:
    actor = hooks.tenant()
    answer(hooks, "/flaky", Reply(500))
    created = hooks.endpoint(hooks.receivers.valid.url("/flaky"), actor)
    clock = hooks.frozen()
    for day in range(6):
        hooks.emit(actor=actor)
        hooks.deliver(clock)
        endpoint = hooks.services.webhooks.endpoints.get(actor, created.endpoint.id)
        assert endpoint.enabled is (day < 5), day
        clock.advance(timedelta(days=1))
    assert endpoint.disabled_reason == "failing_5_days"
    with hooks.services.db.read() as conn:
        since = conn.execute(
            select(webhook_endpoints.c.failing_since).where(
                webhook_endpoints.c.id == created.endpoint.id
            )
        ).scalar_one()
    assert since is not None


def test_a_success_resets_the_failure_window(hooks: HooksWorld) -> None:
    actor = hooks.tenant()
    answer(hooks, "/recovers", Reply(500))
    created = hooks.endpoint(hooks.receivers.valid.url("/recovers"), actor)
    clock = hooks.frozen()
    hooks.emit(actor=actor)
    hooks.deliver(clock)
    answer(hooks, "/recovers", Reply(200))
    clock.advance(timedelta(days=4))
    hooks.deliver(clock)
    answer(hooks, "/recovers", Reply(500))
    clock.advance(timedelta(days=2))
    hooks.emit(actor=actor)
    hooks.deliver(clock)
    assert hooks.services.webhooks.endpoints.get(actor, created.endpoint.id).enabled


class Rebinding:
    """Answers a public-looking allowed address at registration, a private one afterwards."""

    def __init__(self) -> None:
        self.answer = "127.0.0.1"

    def resolve(self, host: str, port: int) -> list[object]:
        from vigil.webhooks.ssrf import parse_ip_literal

        return [parse_ip_literal(self.answer)] if host == "rebind.test" else []


def test_dns_rebinding_after_registration_is_caught_at_connect_time(hooks: HooksWorld) -> None:
    actor = hooks.tenant()
    resolver = Rebinding()
    s = hooks.services
    webhooks = Webhooks.build(
        s.settings,
        s.db,
        s.audit,
        s.clock,
        s.encryption.secrets,
        s.encryption.records,
        resolver=resolver,  # type: ignore[arg-type]
    )
    port = hooks.receivers.valid.port
    created = webhooks.endpoints.create(
        actor, url=f"https://rebind.test:{port}/rebind", event_types=["site.armed"]
    )
    resolver.answer = "10.9.8.7"  # not allow-listed
    hooks.emit(EventType.SITE_ARMED, actor=actor)
    import asyncio

    worker = webhooks.worker()
    asyncio.run(worker.run_once())
    [attempt] = hooks.attempts(created.endpoint.id)
    assert attempt["reason"] == "address_not_allowed"
    [record] = hooks.audit_for(attempt["message_id"])
    assert record["result"] == "address_not_allowed"
    assert record["details"]["detail"] == "private"


def test_the_url_policy_is_applied_again_at_every_delivery(hooks: HooksWorld) -> None:
    """A URL stored before a policy change (here: written straight into the table, and the
    operator's allow list withdrawn) is refused at delivery, before any connection."""
    from sqlalchemy import update

    from vigil.config import Settings

    actor = hooks.tenant()
    port = hooks.receivers.valid.port
    literal = hooks.endpoint(f"https://127.0.0.1:{port}/literal", actor)
    plain = hooks.endpoint(hooks.receivers.valid.url("/was-https"), actor)
    with hooks.services.db.transaction() as conn:
        conn.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == plain.endpoint.id)
            .values(url=f"http://receiver.test:{port}/plain")
        )
    s = hooks.services
    strict = Settings(**(hooks.settings_env | {"webhook_allowed_networks": ""}))  # type: ignore[arg-type]
    webhooks = Webhooks.build(
        strict, s.db, s.audit, s.clock, s.encryption.secrets, s.encryption.records
    )
    hooks.emit(actor=actor)
    import asyncio

    asyncio.run(webhooks.worker().run_once())
    assert [a["reason"] for a in hooks.attempts(literal.endpoint.id)] == ["address_not_allowed"]
    assert [a["reason"] for a in hooks.attempts(plain.endpoint.id)] == ["url_not_allowed"]
    assert got(hooks, "/literal") == 0
    assert got(hooks, "/plain") == 0

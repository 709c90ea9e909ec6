"""From the outbox to messages: an endpoint receives only the types it subscribed to and only
what its app may read (issue 7: no `alarm.*` without `alarms:read`), narrowing an app's scopes
takes effect at once, and an event committed behind a worker's cursor is still fanned out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert
from tests.support import factories
from tests.support.hooks_world import HooksWorld

from vigil.auth.scopes import Scope
from vigil.events.outbox import payload_binding
from vigil.events.types import EventType
from vigil.storage.tables import outbox_events
from vigil.webhooks import fanout


def types_received(hooks: HooksWorld, endpoint_id: str) -> set[str]:
    return {m["event_type"] for m in hooks.messages(endpoint_id)}


def test_endpoints_get_only_what_their_app_may_read_and_subscribed_to(hooks: HooksWorld) -> None:
    owner = hooks.tenant()
    assert owner.tenant is not None
    url = hooks.receivers.valid.url("/fanout")
    sites_only = factories.credential(
        hooks.services,
        owner=hooks.services.dealers.get(owner.tenant.dealer_id),
        scopes={Scope.WEBHOOKS_WRITE, Scope.SITES_READ},
    )
    sites_actor = factories.actor_of(hooks.services, sites_only)
    everything = hooks.endpoint(url, owner)
    only_sites = hooks.endpoint(url, sites_actor)
    only_disarmed = hooks.endpoint(url, owner, types=["site.disarmed"])
    for event_type in (EventType.ALARM_CREATED, EventType.SITE_ARMED, EventType.SITE_DISARMED):
        hooks.emit(event_type, actor=owner)
    hooks.deliver()
    assert types_received(hooks, everything.endpoint.id) == {
        "alarm.created",
        "site.armed",
        "site.disarmed",
    }
    assert types_received(hooks, only_sites.endpoint.id) == {"site.armed", "site.disarmed"}
    assert types_received(hooks, only_disarmed.endpoint.id) == {"site.disarmed"}

    hooks.services.apps.grant(factories.OPERATOR, sites_only.app.id, {Scope.WEBHOOKS_WRITE})
    hooks.emit(EventType.SITE_ARMED, actor=owner)
    hooks.deliver()
    assert len(hooks.messages(only_sites.endpoint.id)) == 2  # nothing new once narrowed


def test_other_tenants_events_never_reach_an_endpoint(hooks: HooksWorld) -> None:
    mine, theirs = hooks.tenant(), hooks.tenant()
    created = hooks.endpoint(hooks.receivers.valid.url("/tenant"), mine)
    hooks.emit(n=3, actor=theirs)
    hooks.deliver()
    assert hooks.messages(created.endpoint.id) == []


def test_an_event_committed_behind_the_cursor_is_found_by_the_sweep(hooks: HooksWorld) -> None:
    actor = hooks.tenant()
    assert actor.tenant is not None
    created = hooks.endpoint(hooks.receivers.valid.url("/late"), actor)
    [first] = hooks.emit(actor=actor)
    worker = hooks.services.webhooks.worker()
    now = datetime.now(UTC)

    def event(seq: int, event_id: str) -> dict[str, object]:
        tenant = actor.tenant
        assert tenant is not None
        binding = payload_binding(tenant.dealer_id, tenant.environment.value, event_id)
        sealed = hooks.services.encryption.records.seal(binding, b'{"data":{}}')
        return {
            "seq": seq,
            "id": event_id,
            "dealer_id": actor.tenant.dealer_id,  # type: ignore[union-attr]
            "environment": actor.tenant.environment.value,  # type: ignore[union-attr]
            "type": "site.armed",
            "subject_type": "site",
            "subject_id": "site_late",
            "payload_sealed": sealed,
            "created_at": now,
        }

    with hooks.services.db.transaction() as conn:
        base = int(
            conn.execute(outbox_events.select().where(outbox_events.c.id == first)).one().seq
        )
        conn.execute(insert(outbox_events).values(event(base + 1000, "evt_visible_first")))
    with hooks.services.db.transaction() as conn:
        worker._fan_out_in(conn, now)  # the first turn sweeps, then follows its own cursor
    with hooks.services.db.transaction() as conn:  # committed late, with a lower seq
        conn.execute(insert(outbox_events).values(event(base + 500, "evt_committed_late")))
    with hooks.services.db.transaction() as conn:
        assert worker._fan_out_in(conn, now) == 0  # the hot path looks past its cursor only
    worker._next_sweep = 0.0
    with hooks.services.db.transaction() as conn:
        assert worker._fan_out_in(conn, now) == 1  # the sweep finds it
    event_ids = {m["event_id"] for m in hooks.messages(created.endpoint.id)}
    assert {first, "evt_visible_first", "evt_committed_late"} <= event_ids
    with hooks.services.db.transaction() as conn:
        moved = fanout.advance_watermark(conn, now + timedelta(minutes=10))
    assert moved >= base + 1000  # settled and all fanned out: the sweep starts past them now

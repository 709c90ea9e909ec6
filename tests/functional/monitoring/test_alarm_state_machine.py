"""The alarm state machine under random sequences of calls, in process through the service:
only legal paths succeed, a stale If-Match always loses, the timeline tells exactly the calls
that succeeded, and each success wrote exactly one outbox event (annotations none) and one
audit record, under the identity of whoever made the call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from tests.support import factories

from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.core.errors import Conflict, PreconditionFailed
from vigil.events.outbox import events_for
from vigil.monitoring.alarm_models import AlarmType, NewAlarm, ResolutionCode
from vigil.monitoring.alarm_states import AlarmAction, AlarmStatus
from vigil.services import Services
from vigil.storage.tables import audit_events

S, A = AlarmStatus, AlarmAction

# The reference model, written from issue 4 rather than read from the table under test.
MOVES = {
    (S.NEW, A.ACKNOWLEDGE): S.ACKNOWLEDGED,
    (S.ACKNOWLEDGED, A.DISPATCH): S.DISPATCHED,
    (S.NEW, A.RESOLVE): S.RESOLVED,
    (S.ACKNOWLEDGED, A.RESOLVE): S.RESOLVED,
    (S.DISPATCHED, A.RESOLVE): S.RESOLVED,
}
EVENT = {A.ACKNOWLEDGE: "alarm.acknowledged", A.DISPATCH: "alarm.dispatched"} | {
    A.RESOLVE: "alarm.resolved"
}
TIMELINE = {A.ACKNOWLEDGE: "acknowledged", A.DISPATCH: "dispatched"} | {
    A.RESOLVE: "resolved",
    A.ANNOTATE: "annotated",
}


@dataclass(frozen=True)
class Call:
    action: AlarmAction
    precondition: str  # "none", "current" or "stale" If-Match
    operator: int  # which of the two apps makes the call


CALLS = st.builds(
    Call,
    st.sampled_from(list(AlarmAction)),
    st.sampled_from(["none", "current", "stale"]),
    st.integers(0, 1),
)


class Desk:
    """Two apps of one dealer working alarms at one site. (A plain class, not a dataclass, so
    hypothesis' failure reports print this short repr instead of every service.)"""

    def __init__(self, services: Services, operators: list[Actor], site_id: str) -> None:
        self.services, self.operators, self.site_id = services, operators, site_id

    def __repr__(self) -> str:
        return f"Desk(site_id={self.site_id!r})"


@pytest.fixture(scope="module")
def desk(services: Services) -> Desk:
    dealer = factories.dealer(services)
    operators = [
        factories.actor_of(services, factories.credential(services, owner=dealer)) for _ in range(2)
    ]
    site = services.sites.create(operators[0], {"name": "Property-test site"})
    return Desk(services, operators, site.id)


def _attempt(desk: Desk, alarm_id: str, call: Call, if_match: int | None) -> int:
    """The HTTP status the call would answer: 200, 409 (illegal now) or 412 (stale If-Match)."""
    try:
        _perform(desk, alarm_id, call, if_match)
    except PreconditionFailed:
        return 412
    except Conflict:
        return 409
    return 200


def _perform(desk: Desk, alarm_id: str, call: Call, if_match: int | None) -> None:
    alarms, actor = desk.services.alarms, desk.operators[call.operator]
    perform: dict[AlarmAction, Callable[[], object]] = {
        A.ACKNOWLEDGE: lambda: alarms.acknowledge(actor, alarm_id, if_match=if_match),
        A.DISPATCH: lambda: alarms.dispatch(actor, alarm_id, agency="police", if_match=if_match),
        A.RESOLVE: lambda: alarms.resolve(
            actor, alarm_id, ResolutionCode.FALSE_ALARM, if_match=if_match
        ),
        A.ANNOTATE: lambda: alarms.annotate(actor, alarm_id, "a note", if_match=if_match),
    }
    perform[call.action]()


def _recorded(desk: Desk, alarm_id: str) -> tuple[list[str], list[str]]:
    """The alarm's outbox event types and audit actions, oldest first."""
    tenant = desk.operators[0].tenant
    assert tenant is not None
    with desk.services.db.read() as conn:
        events = [e["type"] for e in events_for(conn, tenant, alarm_id)]
        audit = list(
            conn.execute(
                select(audit_events.c.action)
                .where(audit_events.c.target_id == alarm_id)
                .order_by(audit_events.c.seq)
            ).scalars()
        )
    return events, audit


@settings(max_examples=40, deadline=None, database=None)
@given(calls=st.lists(CALLS, max_size=8))
def test_only_legal_paths_succeed_and_each_success_is_told_once(
    desk: Desk, calls: list[Call]
) -> None:
    alarms = desk.services.alarms
    new = NewAlarm(desk.site_id, AlarmType.BURGLARY, datetime.now(UTC))
    alarm_id = alarms.create(desk.operators[0], new).id
    status, version = S.NEW, 1
    succeeded: list[Call] = []
    for call in calls:
        before_events, before_audit = _recorded(desk, alarm_id)
        if_match = {"none": None, "current": version, "stale": version - 1 or 2}
        legal = call.action is A.ANNOTATE or (status, call.action) in MOVES
        answered = _attempt(desk, alarm_id, call, if_match[call.precondition])
        assert answered == (412 if call.precondition == "stale" else 200 if legal else 409)
        if answered == 200:
            status = MOVES.get((status, call.action), status)
            version += 1
            succeeded.append(call)
        events, audit = _recorded(desk, alarm_id)
        told = answered == 200 and call.action in EVENT
        assert len(events) - len(before_events) == (1 if told else 0)
        assert len(audit) - len(before_audit) == (1 if answered == 200 else 0)

    alarm = alarms.get(desk.operators[0], alarm_id)
    timeline = alarms.timeline(desk.operators[0], alarm_id, limit=50).items
    events, audit = _recorded(desk, alarm_id)
    assert (alarm.status, alarm.version) == (status, version)
    assert [(t.action, t.actor_id) for t in timeline] == [
        ("created", desk.operators[0].id),
        *((TIMELINE[c.action], desk.operators[c.operator].id) for c in succeeded),
    ]
    assert events == ["alarm.created"] + [EVENT[c.action] for c in succeeded if c.action in EVENT]
    assert audit == ["alarm.created"] + [f"alarm.{TIMELINE[c.action]}" for c in succeeded]


def test_a_change_whose_audit_record_cannot_be_written_leaves_no_trace(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S15, forced: the record is the last write of an acknowledgement's transaction (after the
    status, the timeline entry and the outbox event). When it fails, none of them remains;
    with the log working again the same call succeeds and leaves all four."""
    alarms, actor = desk.services.alarms, desk.operators[0]
    alarm_id = alarms.create(actor, NewAlarm(desk.site_id, AlarmType.FIRE, datetime.now(UTC))).id
    before = _recorded(desk, alarm_id)
    timeline_before = len(alarms.timeline(actor, alarm_id, limit=50).items)

    def unwritable(self: AuditLog, conn: object, record: object) -> None:
        raise OSError("the audit log's disk is gone")

    with monkeypatch.context() as patched:
        patched.setattr(AuditLog, "write_in", unwritable)
        with pytest.raises(OSError, match="disk is gone"):
            alarms.acknowledge(actor, alarm_id)
    alarm = alarms.get(actor, alarm_id)
    assert (alarm.status, alarm.version) == (S.NEW, 1)
    assert len(alarms.timeline(actor, alarm_id, limit=50).items) == timeline_before
    assert _recorded(desk, alarm_id) == before

    assert alarms.acknowledge(actor, alarm_id).status is S.ACKNOWLEDGED
    events, audit = _recorded(desk, alarm_id)
    assert events == [*before[0], "alarm.acknowledged"]
    assert audit == [*before[1], "alarm.acknowledged"]
    assert len(alarms.timeline(actor, alarm_id, limit=50).items) == timeline_before + 1

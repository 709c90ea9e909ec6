"""The alarm state machine table: exactly the arrows of issue 4, and 409s that say why."""

from __future__ import annotations

import pytest

from vigil.core.errors import Conflict
from vigil.monitoring.alarm_states import (
    DONE,
    TRANSITIONS,
    AlarmAction,
    AlarmStatus,
    allowed,
    next_status,
)

S, A = AlarmStatus, AlarmAction

# Written out by hand from the issue, independently of the table under test.
STATUS_CHANGES = {
    (S.NEW, A.ACKNOWLEDGE): S.ACKNOWLEDGED,
    (S.ACKNOWLEDGED, A.DISPATCH): S.DISPATCHED,
    (S.DISPATCHED, A.RESOLVE): S.RESOLVED,
    (S.NEW, A.RESOLVE): S.RESOLVED,
    (S.ACKNOWLEDGED, A.RESOLVE): S.RESOLVED,
}
ALL_PAIRS = [(s, a) for s in S for a in A]


def test_the_status_changes_are_exactly_those_of_the_issue() -> None:
    changes = {pair: to for pair, to in TRANSITIONS.items() if pair[1] is not A.ANNOTATE}
    assert changes == STATUS_CHANGES


def test_annotating_is_legal_in_every_status_and_keeps_it() -> None:
    for status in S:
        assert next_status(status, A.ANNOTATE) is status


@pytest.mark.parametrize(("status", "action"), ALL_PAIRS, ids=lambda v: str(v))
def test_an_action_is_legal_only_where_the_table_says(
    status: AlarmStatus, action: AlarmAction
) -> None:
    if (status, action) in STATUS_CHANGES or action is A.ANNOTATE:
        assert next_status(status, action) is TRANSITIONS[(status, action)]
        assert action in allowed(status)
    else:
        with pytest.raises(Conflict) as refused:
            next_status(status, action)
        assert refused.value.status == 409
        assert status.value in refused.value.detail
        assert refused.value.extra["alarm_status"] == status.value
        assert action.value not in refused.value.extra["allowed_actions"]


def test_a_resolved_alarm_can_only_be_annotated() -> None:
    assert allowed(S.RESOLVED) == [A.ANNOTATE]


def test_dispatch_needs_an_acknowledgement_first() -> None:
    with pytest.raises(Conflict, match="Cannot dispatch an alarm that is new"):
        next_status(S.NEW, A.DISPATCH)


def test_every_status_is_reachable_from_new_and_resolved_is_terminal() -> None:
    reached, frontier = {S.NEW}, [S.NEW]
    while frontier:
        here = frontier.pop()
        for action in allowed(here):
            there = next_status(here, action)
            if there not in reached:
                reached.add(there)
                frontier.append(there)
    assert reached == set(S)
    assert {next_status(S.RESOLVED, a) for a in allowed(S.RESOLVED)} == {S.RESOLVED}


def test_every_action_has_a_timeline_name() -> None:
    assert set(DONE) == set(A)

"""The alarm state machine, as data: which action is legal in which status, and where it leads.

    new ──acknowledge──▶ acknowledged ──dispatch──▶ dispatched ──resolve──▶ resolved
     └──────────────resolve──────────────┘ (from new or acknowledged)

Dispatch needs an acknowledgement first: responders are sent by someone who has looked at the
alarm, never straight off the wire. Annotating is legal in every status, resolved included (the
keyholder's call-back often comes after the alarm is closed), and leaves the status alone.

Pure data and one lookup, no I/O, so the table is tested on its own and the service cannot
disagree with it.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from vigil.core.errors import Conflict


class AlarmStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"


class AlarmAction(StrEnum):
    """What a caller does to an alarm (each its own endpoint)."""

    ACKNOWLEDGE = "acknowledge"
    DISPATCH = "dispatch"
    RESOLVE = "resolve"
    ANNOTATE = "annotate"


_S, _A = AlarmStatus, AlarmAction

TRANSITIONS: MappingProxyType[tuple[AlarmStatus, AlarmAction], AlarmStatus] = MappingProxyType(
    {
        (_S.NEW, _A.ACKNOWLEDGE): _S.ACKNOWLEDGED,
        (_S.NEW, _A.RESOLVE): _S.RESOLVED,
        (_S.ACKNOWLEDGED, _A.DISPATCH): _S.DISPATCHED,
        (_S.ACKNOWLEDGED, _A.RESOLVE): _S.RESOLVED,
        (_S.DISPATCHED, _A.RESOLVE): _S.RESOLVED,
        **{(status, _A.ANNOTATE): status for status in _S},
    }
)

# The timeline's name for each action once done ("created" is written by the alarm's creation).
DONE: MappingProxyType[AlarmAction, str] = MappingProxyType(
    {
        _A.ACKNOWLEDGE: "acknowledged",
        _A.DISPATCH: "dispatched",
        _A.RESOLVE: "resolved",
        _A.ANNOTATE: "annotated",
    }
)


def allowed(status: AlarmStatus) -> list[AlarmAction]:
    """The actions legal in `status`, in declaration order (for error messages and docs)."""
    return [action for action in AlarmAction if (status, action) in TRANSITIONS]


def next_status(status: AlarmStatus, action: AlarmAction) -> AlarmStatus:
    """Where `action` leads from `status`; an illegal one is a 409 naming the current status."""
    target = TRANSITIONS.get((status, action))
    if target is None:
        legal = ", ".join(a.value for a in allowed(status))
        raise Conflict(
            f"Cannot {action.value} an alarm that is {status.value}; "
            f"from {status.value} it can only: {legal}.",
            # Not `status`: in a problem document that member is the HTTP status code.
            alarm_status=status.value,
            allowed_actions=[a.value for a in allowed(status)],
        )
    return target

"""One audit record: a frozen value, built by fronts and the edge, written only by the audit log."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any

from vigil.audit import canonical
from vigil.audit.actions import AuditAction
from vigil.core.ids import new_ordered_id


@dataclass(frozen=True, slots=True)
class AuditRecord:
    occurred_at: datetime
    action: AuditAction
    result: str
    actor_type: str
    actor_id: str | None = None
    dealer_id: str | None = None
    environment: str | None = None
    app_id: str | None = None
    credential_id: str | None = None
    scope: str | None = None
    request_id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    method: str | None = None
    route: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: new_ordered_id("aud"))

    def __post_init__(self) -> None:
        # PostgreSQL cannot store NUL in text. A path segment, user agent or claimed client id
        # or issuer (the actor of a refusal) is the caller's choice and must not make this
        # record (and with it a whole group-commit batch) fail, so NUL is replaced, in every
        # text field, before anything is hashed or stored. (`details` goes in as JSON, where
        # NUL is escaped.) One join and one search when there is none: this runs per record.
        if "\x00" not in "".join(filter(None, _GET_TEXT(self))):
            return
        for name in _TEXT:
            value = getattr(self, name)
            if value is not None and "\x00" in value:
                object.__setattr__(self, name, value.replace("\x00", "\ufffd"))

    def as_row(self) -> dict[str, Any]:
        """The row to store. Text is cut to its column's width here, in one place: a value an
        attacker controls (a path segment, a user agent, a method) must never make a record,
        and with it a whole group-commit batch, fail to insert."""
        row = {name: getattr(self, name) for name in _COLUMNS}
        for name, width in WIDTHS.items():
            value = row[name]
            if isinstance(value, str) and len(value) > width:
                row[name] = value[:width]
        row["action"] = self.action.value
        return row

    def tail_values(self) -> list[Any]:
        """The hashed fields from `actor_type` to `result` (`TAIL`), cut like `as_row`.

        The writer's per-record path: one C-level attribute fetch and one pass over the widths,
        instead of a dict per record."""
        values = [
            v if v is None or len(v) <= w else v[:w]
            for v, w in zip(_GET_TAIL(self), _TAIL_WIDTHS, strict=True)
        ]
        values[_ACTION_AT] = self.action.value
        return values

    def stored_id(self) -> str:
        return self.id[: WIDTHS["id"]]


# Column widths of `audit_events` (see storage/tables.py).
WIDTHS = {
    "id": 40,
    "actor_type": 20,
    "actor_id": 200,
    "dealer_id": 40,
    "environment": 20,
    "app_id": 40,
    "credential_id": 40,
    "scope": 40,
    "request_id": 64,
    "source_ip": 64,
    "user_agent": 300,
    "method": 10,
    "route": 200,
    "target_type": 40,
    "target_id": 200,
    "result": 40,
}


_COLUMNS = tuple(f.name for f in fields(AuditRecord))
# Every text field: all but the time, the action (an enum), `details` and our own id.
_TEXT = tuple(n for n in _COLUMNS if n not in ("occurred_at", "action", "details", "id"))
_GET_TEXT = attrgetter(*_TEXT)

# The hashed fields a record supplies itself between `occurred_at` and `details`.
TAIL = canonical.FIELDS[canonical.FIELDS.index("occurred_at") + 1 : -1]
_GET_TAIL = attrgetter(*TAIL)
_ACTION_AT = TAIL.index("action")
_TAIL_WIDTHS = tuple(WIDTHS.get(name, 60) for name in TAIL)  # action: its column's 60

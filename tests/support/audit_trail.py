"""Reading audit rows in tests: `details` are sealed at rest (audit/sealing.py), so a test that
inspects them opens them with the services' platform audit key, as every reader in the product
does."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from vigil.services import Services


def opened_rows(services: Services, query: Select[Any]) -> list[dict[str, Any]]:
    """Rows of `query` (which must select `audit_events.c.id` when it selects `details`) as
    dicts, with `details` opened."""
    with services.db.read() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        if "details" in row:
            row["details"] = services.audit.details.value(row["id"], row["details"])
    return rows

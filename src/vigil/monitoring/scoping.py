"""Tenant-scoped data access: the only way monitoring services reach their tables.

A `TenantScope` is built from the caller (`scope_of(actor)`); every query it builds is filtered
by dealer and environment (S12, S13) and, for end users restricted to some sites, by site. There
is no unscoped path, so a service cannot forget the filter, and another tenant's id is simply
not found (404), which reveals nothing about its existence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, RowMapping, Select, Table, select

from vigil.auth.actor import Actor, Tenant
from vigil.core.errors import NotFound, PermissionDenied


@dataclass(frozen=True, slots=True)
class TenantScope:
    tenant: Tenant
    site_ids: frozenset[str] | None = None

    def where(self, table: Table) -> ColumnElement[bool]:
        c = table.c
        clause = (c.dealer_id == self.tenant.dealer_id) & (
            c.environment == self.tenant.environment.value
        )
        if self.site_ids is not None:
            site_column = c.id if table.name == "sites" else c.get("site_id")
            if site_column is not None:
                clause = clause & site_column.in_(sorted(self.site_ids))
        return clause

    def select(self, table: Table, *columns: Any) -> Select[Any]:
        query = select(*columns) if columns else select(table)
        return query.where(self.where(table))

    def values(self) -> dict[str, str]:
        return {"dealer_id": self.tenant.dealer_id, "environment": self.tenant.environment.value}

    def one(self, conn: Connection, table: Table, id: str, noun: str) -> RowMapping:
        row = conn.execute(self.select(table).where(table.c.id == id)).mappings().first()
        if row is None:
            raise NotFound(f"No {noun} '{id}'.")
        return row


def scope_of(actor: Actor) -> TenantScope:
    """Monitoring data always belongs to a tenant; a caller without one has no business here."""
    principal = actor.principal
    if principal is None:
        raise PermissionDenied("Monitoring data is reached through a dealer's credential.")
    return TenantScope(
        Tenant(principal.dealer_id, principal.environment),
        principal.site_ids,
    )

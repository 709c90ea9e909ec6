"""PostgreSQL: migrations run as the owner; the application connects as a lesser role.

After every migration the owner re-applies the application role's grants: everything it needs,
and on the audit tables only what appending needs. Without UPDATE, DELETE or TRUNCATE, even a
stolen application credential or an injected statement cannot rewrite history (S16).
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

APPEND_ONLY = ("audit_events", "audit_checkpoints", "audit_signing_keys", "audit_policy")


def app_role_of(app_url: str, owner_url: str) -> str | None:
    """The application role, when it differs from the owner; None for a single-role setup."""
    app_user = make_url(app_url).username
    owner_user = make_url(owner_url).username
    if not app_user or app_user == owner_user:
        return None
    return app_user


def apply_grants(conn: Connection, role: str) -> None:
    quoted = conn.dialect.identifier_preparer.quote(role)
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if exists is None:
        conn.execute(text(f"CREATE ROLE {quoted} LOGIN"))
    conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {quoted}"))
    conn.execute(
        text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}")
    )
    conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}"))
    for table in APPEND_ONLY:
        conn.execute(text(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {quoted}"))
    conn.execute(text(f"REVOKE DELETE, TRUNCATE ON audit_chain_heads FROM {quoted}"))
    conn.execute(text(f"GRANT UPDATE (retired_at) ON audit_signing_keys TO {quoted}"))
    conn.execute(text(f"REVOKE INSERT ON audit_policy FROM {quoted}"))
    conn.execute(text(f"REVOKE ALL ON alembic_version FROM {quoted}"))
    conn.execute(text(f"GRANT SELECT ON alembic_version TO {quoted}"))
    conn.execute(text(f"GRANT EXECUTE ON FUNCTION vigil_audit_purge(text, bigint) TO {quoted}"))

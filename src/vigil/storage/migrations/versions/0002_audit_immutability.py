"""Audit immutability enforced by the storage itself (S16, S17).

- Records and checkpoints refuse UPDATE (and TRUNCATE on PostgreSQL) outright.
- A record may be deleted only once it is past its dealer's retention (or the platform's, for
  platform records), so not even a bug or a stolen application credential can shorten the log.
- On PostgreSQL the application role gets no UPDATE/DELETE/TRUNCATE on audit tables at all
  (see `vigil.storage.roles`); purging goes through `vigil_audit_purge`, a SECURITY DEFINER
  function that removes only whole checkpointed segments, still under the retention trigger.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQLITE = [
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit records are immutable'); END""",
    """CREATE TRIGGER audit_events_retention_guard BEFORE DELETE ON audit_events
       WHEN OLD.occurred_at > strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || COALESCE(
            (SELECT audit_retention_days FROM dealers WHERE id = OLD.dealer_id),
            (SELECT platform_retention_days FROM audit_policy WHERE id = 1),
            2557) || ' days')
       BEGIN SELECT RAISE(ABORT, 'audit record is inside its retention period'); END""",
    """CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
       BEGIN SELECT RAISE(ABORT, 'audit checkpoints are immutable'); END""",
    """CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
       BEGIN SELECT RAISE(ABORT, 'audit checkpoints are immutable'); END""",
    """CREATE TRIGGER audit_signing_keys_no_delete BEFORE DELETE ON audit_signing_keys
       BEGIN SELECT RAISE(ABORT, 'audit signing keys are kept forever'); END""",
    """CREATE TRIGGER audit_signing_keys_fixed BEFORE UPDATE OF kid, public_key, created_at
       ON audit_signing_keys
       BEGIN SELECT RAISE(ABORT, 'audit signing keys are immutable'); END""",
    """CREATE TRIGGER audit_chain_heads_no_delete BEFORE DELETE ON audit_chain_heads
       BEGIN SELECT RAISE(ABORT, 'audit chain heads cannot be removed'); END""",
    """CREATE TRIGGER dealers_retention_never_shrinks BEFORE UPDATE OF audit_retention_days
       ON dealers WHEN NEW.audit_retention_days < OLD.audit_retention_days
       BEGIN SELECT RAISE(ABORT, 'audit retention can be extended, never shortened'); END""",
]

POSTGRES = [
    """CREATE FUNCTION vigil_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit data is immutable (% on %)', TG_OP, TG_TABLE_NAME; END $$""",
    """CREATE FUNCTION vigil_audit_retention_guard() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF OLD.occurred_at > now() - make_interval(days => COALESCE(
              (SELECT audit_retention_days FROM dealers WHERE id = OLD.dealer_id),
              (SELECT platform_retention_days FROM audit_policy WHERE id = 1),
              2557)) THEN
           RAISE EXCEPTION 'audit record % is inside its retention period', OLD.id;
         END IF;
         RETURN OLD;
       END $$""",
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
       FOR EACH ROW EXECUTE FUNCTION vigil_audit_refuse()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
       FOR EACH STATEMENT EXECUTE FUNCTION vigil_audit_refuse()""",
    """CREATE TRIGGER audit_events_retention_guard BEFORE DELETE ON audit_events
       FOR EACH ROW EXECUTE FUNCTION vigil_audit_retention_guard()""",
    """CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
       FOR EACH ROW EXECUTE FUNCTION vigil_audit_refuse()""",
    """CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
       FOR EACH STATEMENT EXECUTE FUNCTION vigil_audit_refuse()""",
    """CREATE TRIGGER audit_signing_keys_no_delete BEFORE DELETE ON audit_signing_keys
       FOR EACH ROW EXECUTE FUNCTION vigil_audit_refuse()""",
    """CREATE TRIGGER audit_chain_heads_no_delete BEFORE DELETE ON audit_chain_heads
       FOR EACH ROW EXECUTE FUNCTION vigil_audit_refuse()""",
    """CREATE FUNCTION vigil_audit_purge(p_chain text, p_through bigint) RETURNS bigint
       LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
       DECLARE removed bigint;
       BEGIN
         IF NOT EXISTS (SELECT 1 FROM audit_checkpoints
                        WHERE chain_id = p_chain AND seq = p_through) THEN
           RAISE EXCEPTION 'purge must end on a signed checkpoint';
         END IF;
         DELETE FROM audit_events WHERE chain_id = p_chain AND chain_seq <= p_through;
         GET DIAGNOSTICS removed = ROW_COUNT;
         RETURN removed;
       END $$""",
    "REVOKE ALL ON FUNCTION vigil_audit_purge(text, bigint) FROM PUBLIC",
    """CREATE FUNCTION vigil_retention_never_shrinks() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.audit_retention_days < OLD.audit_retention_days THEN
           RAISE EXCEPTION 'audit retention can be extended, never shortened';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER dealers_retention_never_shrinks BEFORE UPDATE OF audit_retention_days
       ON dealers FOR EACH ROW EXECUTE FUNCTION vigil_retention_never_shrinks()""",
]


def upgrade() -> None:
    statements = POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS vigil_audit_purge(text, bigint)")
        for table, trigger in [
            ("audit_events", "audit_events_no_update"),
            ("audit_events", "audit_events_no_truncate"),
            ("audit_events", "audit_events_retention_guard"),
            ("audit_checkpoints", "audit_checkpoints_no_change"),
            ("audit_checkpoints", "audit_checkpoints_no_truncate"),
            ("audit_signing_keys", "audit_signing_keys_no_delete"),
            ("audit_chain_heads", "audit_chain_heads_no_delete"),
            ("dealers", "dealers_retention_never_shrinks"),
        ]:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS vigil_audit_retention_guard()")
        op.execute("DROP FUNCTION IF EXISTS vigil_audit_refuse()")
        op.execute("DROP FUNCTION IF EXISTS vigil_retention_never_shrinks()")
        return
    for statement in SQLITE:
        name = statement.split()[2]
        op.execute(f"DROP TRIGGER IF EXISTS {name}")

"""S6-S8 for the audit log: record details are sealed at rest under the platform audit key, the
hash chain still verifies, and destroying a dealer's keys leaves its audit evidence readable."""

from __future__ import annotations

import json
import secrets

import pytest
from sqlalchemy import select
from tests.support import factories
from tests.support.server import VigilServer

from vigil.audit.actions import AuditAction
from vigil.audit.record import AuditRecord
from vigil.audit.sealing import Details, DetailsSealed, is_sealed
from vigil.audit.verify import verify_store
from vigil.auth.scopes import Scope
from vigil.crypto.errors import DecryptionFailed
from vigil.services import Services
from vigil.storage.tables import audit_events


def _stored_details(services: Services, request_id: str) -> list[str]:
    """The `details` column exactly as stored, read as text through the raw driver."""
    with services.db.read() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        mark = "?" if services.db.is_sqlite else "%s"
        cast = "details" if services.db.is_sqlite else "details::text"
        cur.execute(
            f"SELECT {cast} FROM audit_events WHERE request_id = {mark}",
            (request_id,),
        )
        rows = [str(r[0]) for r in cur.fetchall()]
        cur.close()
    return rows


def _operator_record(services: Services, note: str) -> AuditRecord:
    """An operator action's record with `note` in its details, as services write them."""
    return AuditRecord(
        occurred_at=services.clock.now(),
        action=AuditAction.DEALER_CREATED,
        result="success",
        actor_type="operator",
        actor_id="test",
        request_id=f"req_{secrets.token_hex(12)}",
        details={"note": note},
    )


def test_details_of_an_api_call_are_sealed_at_rest_and_read_back_through_the_api(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services, scopes=[Scope.AUDIT_READ])
    marker = f"marker-{secrets.token_hex(8)}"
    with server.client(cred.token) as client:
        missing = client.get(f"/v1/{marker}")
        assert missing.status_code == 404
        request_id = missing.headers["x-request-id"]
        stored = _stored_details(services, request_id)
        # The record of a refused path keeps the path, sealed: no marker in the column.
        assert len(stored) == 1
        assert marker not in stored[0]
        assert is_sealed(stored[0])
        # The dealer reads it back in the clear, through the API and the export.
        listed = client.get("/v1/audit-events", params={"request_id": request_id})
        assert listed.status_code == 200
        (item,) = listed.json()["data"]
        assert item["details"]["path"] == f"/v1/{marker}"
        export = client.get("/v1/audit-events/export")
        assert export.status_code == 200
    records = [json.loads(line) for line in export.text.splitlines()]
    mine = [r for r in records if r.get("request_id") == request_id]
    # Exports end at the newest signed checkpoint, which the export itself signs first.
    assert [r["details"]["path"] for r in mine] == [f"/v1/{marker}"]


def test_empty_details_are_stored_as_they_are(server: VigilServer, services: Services) -> None:
    """Nothing to hide, and the hot path (`GET /v1/me`) pays no encryption."""
    cred = factories.credential(services, scopes=[Scope.SITES_READ])
    with server.client(cred.token) as client:
        me = client.get("/v1/me")
    assert me.status_code == 200
    assert _stored_details(services, me.headers["x-request-id"]) == ["{}"]


def test_details_written_in_a_callers_transaction_are_sealed_too(services: Services) -> None:
    marker = f"marker-{secrets.token_hex(8)}"
    record = _operator_record(services, marker)
    with services.db.transaction() as conn:
        services.audit.write_in(conn, record)
    (stored,) = _stored_details(services, str(record.request_id))
    assert marker not in stored
    assert is_sealed(stored)
    assert services.audit.details.canonical(record.id, stored) == json.dumps(
        {"note": marker}, separators=(",", ":")
    )


def test_the_chain_verifies_with_the_platform_key_and_not_without_it(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services, scopes=[Scope.SITES_READ])
    with server.client(cred.token) as client:
        assert client.get("/v1/no-such-route").status_code == 404
    services.audit.checkpoint_all()
    dealer = cred.dealer.id
    with_key = verify_store(
        services.db, services.audit.signer, dealer, details=services.audit.details
    )
    assert with_key
    assert all(r.ok for r in with_key)
    # Without the key the verifier cannot confirm the records and says so: it fails closed.
    without = verify_store(services.db, services.audit.signer, dealer, details=Details())
    problems = [str(r.problem) for r in without if r.problem is not None]
    assert problems
    assert all("details cannot be opened" in p for p in problems)


def test_sealed_details_moved_to_another_record_do_not_open(services: Services) -> None:
    first, second = _operator_record(services, "first"), _operator_record(services, "second")
    with services.db.transaction() as conn:
        services.audit.write_in(conn, first)
        services.audit.write_in(conn, second)
    (sealed_first,) = _stored_details(services, str(first.request_id))
    codec = services.audit.details
    assert json.loads(codec.canonical(first.id, sealed_first)) == {"note": "first"}
    with pytest.raises(DecryptionFailed):
        codec.canonical(second.id, sealed_first)
    with pytest.raises(DetailsSealed):
        Details().canonical(first.id, sealed_first)


def test_deleting_a_dealer_keeps_its_audit_details_readable_and_verifiable(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services, scopes=[Scope.AUDIT_READ])
    marker = f"marker-{secrets.token_hex(8)}"
    with server.client(cred.token) as client:
        refused = client.get(f"/v1/{marker}")
    request_id = refused.headers["x-request-id"]
    deleted = server.run_cli("dealers", "delete", cred.dealer.id, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    # The dealer's data keys are gone; the platform audit key is not.
    with services.db.read() as conn:
        row = conn.execute(
            select(audit_events.c.id, audit_events.c.details).where(
                audit_events.c.request_id == request_id
            )
        ).one()
    opened = services.audit.details.value(row.id, row.details)
    assert isinstance(opened, dict)
    assert opened["path"] == f"/v1/{marker}"
    reports = verify_store(
        services.db, services.audit.signer, cred.dealer.id, details=services.audit.details
    )
    assert reports
    assert all(r.ok for r in reports)

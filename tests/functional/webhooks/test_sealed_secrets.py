"""S6 for credentials: webhook signing secrets (current and previous) and operators' TOTP seeds
are stored sealed, never as issued. On PostgreSQL the raw column values are what an attacker with
the database sees; on SQLite the file is SQLCipher (covered by test_encryption_at_rest), and the
values inside it are ciphertext too. A sealed value copied to another record does not open, and
one that does not open is a counted, audited failure (a failed delivery attempt retried on the
schedule; a refused second factor counted toward the lockout), never a crash or a 500."""

from __future__ import annotations

import asyncio
import base64
import json

import pyotp
import pytest
from sqlalchemy import Table, select, text, update
from standardwebhooks.webhooks import Webhook
from tests.support.factories import OPERATOR
from tests.support.hooks_world import HooksWorld
from tests.support.portal import operator

from vigil.crypto.errors import DecryptionFailed
from vigil.storage.tables import operator_accounts, webhook_endpoints, webhook_messages
from vigil.tenancy.roles import PortalRole
from vigil.webhooks.schedule import RETRY_DELAYS
from vigil.webhooks.sealing import open_secret
from vigil.webhooks.signing import SigningSecret, headers


def _raw_rows(hooks: HooksWorld, table: str) -> list[bytes]:
    """Every value of every row, as the database hands it out (bytes or text)."""
    with hooks.services.db.read() as conn:
        rows = conn.execute(text(f"SELECT * FROM {table}")).all()
    return [v if isinstance(v, bytes) else str(v).encode() for row in rows for v in row]


def _forms(secret: str) -> list[bytes]:
    """The secret as issued, and its key bytes (whsec_ is base64 of the HMAC key)."""
    forms = [secret.encode()]
    if secret.startswith("whsec_"):
        body = secret.removeprefix("whsec_")
        forms += [body.encode(), base64.b64decode(body)]
    return forms


def test_webhook_secrets_are_sealed_and_deliveries_still_verify(hooks: HooksWorld) -> None:
    receiver = hooks.receivers.valid
    created = hooks.endpoint(receiver.url("/sealed"))
    endpoints = hooks.services.webhooks.endpoints
    rotated = endpoints.rotate_secret(hooks.actor, created.endpoint.id)
    values = _raw_rows(hooks, "webhook_endpoints")
    for secret in (created.secret.value, rotated.secret.value):
        for form in _forms(secret):
            assert not any(form in v for v in values), "a signing secret is stored in clear"
    with hooks.services.db.read() as conn:
        row = (
            conn.execute(
                select(webhook_endpoints).where(webhook_endpoints.c.id == created.endpoint.id)
            )
            .mappings()
            .one()
        )
    cipher = hooks.services.encryption.secrets
    assert open_secret(cipher, row) == rotated.secret.value
    assert open_secret(cipher, row, previous=True) == created.secret.value
    # Bound to its column: the current ciphertext does not open as the previous secret.
    swapped = {**row, "previous_secret_sealed": row["secret_sealed"]}
    with pytest.raises(DecryptionFailed):
        open_secret(cipher, swapped, previous=True)

    hooks.emit()
    hooks.deliver()
    [got] = [r for r in receiver.received if r.path == "/sealed"]
    for secret in (created.secret, rotated.secret):
        assert Webhook(secret.value).verify(got.body, got.headers)["type"] == "site.armed"


def test_a_sealed_secret_copied_to_another_endpoint_does_not_open(hooks: HooksWorld) -> None:
    first = hooks.endpoint(hooks.receivers.valid.url("/first"))
    second = hooks.endpoint(hooks.receivers.valid.url("/second"))
    c = webhook_endpoints.c
    with hooks.services.db.transaction() as conn:
        sealed = conn.execute(select(c.secret_sealed).where(c.id == first.endpoint.id)).scalar()
        conn.execute(
            update(webhook_endpoints).where(c.id == second.endpoint.id).values(secret_sealed=sealed)
        )
        row = (
            conn.execute(select(webhook_endpoints).where(c.id == second.endpoint.id))
            .mappings()
            .one()
        )
    with pytest.raises(DecryptionFailed):
        open_secret(hooks.services.encryption.secrets, row)


def test_totp_seed_is_sealed_and_sign_in_still_checks_codes(hooks: HooksWorld) -> None:
    svc = hooks.services
    op = operator(svc, hooks.cred.dealer.id, PortalRole.OWNER)
    assert op.totp_secret is not None
    values = _raw_rows(hooks, "operator_accounts")
    assert not any(op.totp_secret.encode() in v for v in values), "a TOTP seed is stored in clear"
    assert not any(base64.b32decode(op.totp_secret) in v for v in values)
    with svc.db.read() as conn:
        sealed = conn.execute(
            select(operator_accounts.c.totp_secret_sealed).where(
                operator_accounts.c.user_id == op.user_id
            )
        ).scalar()
    assert isinstance(sealed, bytes)
    assert len(sealed) > len(op.totp_secret)

    account = svc.operators.account(op.user_id)
    assert account.mfa_enrolled
    totp = pyotp.TOTP(op.totp_secret)
    stale = totp.at(svc.clock.now().timestamp() - 3600)
    assert not svc.operators.second_factor(OPERATOR, account, stale)
    code = totp.at(svc.clock.now())
    assert svc.operators.second_factor(OPERATOR, account, code)


def _flip_last_byte(hooks: HooksWorld, table: Table, column: str, row_id: str) -> bytes:
    """Corrupt a sealed value in place, as someone with write access to the database would;
    returns the original."""
    c = table.c
    with hooks.services.db.transaction() as conn:
        original = bytes(conn.execute(select(c[column]).where(c.id == row_id)).scalar_one())
        bad = original[:-1] + bytes([original[-1] ^ 1])
        conn.execute(update(table).where(c.id == row_id).values({column: bad}))
    return original


def _put_back(hooks: HooksWorld, table: Table, column: str, row_id: str, value: bytes) -> None:
    with hooks.services.db.transaction() as conn:
        conn.execute(update(table).where(table.c.id == row_id).values({column: value}))


def test_a_signing_secret_that_does_not_open_is_a_recorded_failure_retried_on_schedule(
    hooks: HooksWorld,
) -> None:
    actor = hooks.tenant()
    receiver = hooks.receivers.valid
    created = hooks.endpoint(receiver.url("/unsealable-secret"), actor)
    endpoint_id = created.endpoint.id
    original = _flip_last_byte(hooks, webhook_endpoints, "secret_sealed", endpoint_id)
    clock = hooks.frozen()
    hooks.emit(actor=actor)
    assert hooks.deliver(clock) == 1  # the worker carries on: one attempt, made and recorded
    [attempt] = hooks.attempts(endpoint_id)
    assert (attempt["result"], attempt["reason"]) == ("failure", "secret_unavailable")
    [message] = hooks.messages(endpoint_id)
    assert (message["status"], message["attempts"]) == ("pending", 1)
    assert message["next_attempt_at"] > clock.now()  # on the retry schedule, not leased away
    [record] = [r for r in hooks.audit_for(message["id"]) if r["result"] != "success"]
    assert record["action"] == "webhook.delivery_attempted"
    assert record["result"] == "secret_unavailable"
    assert "could not be decrypted" in record["details"]["detail"]
    assert not [r for r in receiver.received if r.path == "/unsealable-secret"]

    clock.advance(RETRY_DELAYS[0] * 1.2)
    hooks.deliver(clock)  # still broken: a second failed attempt, as scheduled
    assert [a["reason"] for a in hooks.attempts(endpoint_id)] == ["secret_unavailable"] * 2

    _put_back(hooks, webhook_endpoints, "secret_sealed", endpoint_id, original)
    clock.advance(RETRY_DELAYS[1] * 1.2)
    hooks.deliver(clock)  # repaired: the retry goes out, signed with the real secret
    [got] = [r for r in receiver.received if r.path == "/unsealable-secret"]
    # Signed with the real secret (checked by recomputing: the frozen clock is 6 minutes
    # ahead, outside standardwebhooks' timestamp tolerance).
    expected = headers(
        (SigningSecret(created.secret.value),),
        got.headers["webhook-id"],
        int(got.headers["webhook-timestamp"]),
        got.body,
    )
    assert got.headers["webhook-signature"] == expected["webhook-signature"]
    assert json.loads(got.body)["type"] == "site.armed"
    assert hooks.messages(endpoint_id)[0]["status"] == "delivered"


def test_a_payload_that_does_not_open_is_a_recorded_failure_not_a_crashed_worker(
    hooks: HooksWorld,
) -> None:
    actor = hooks.tenant()
    receiver = hooks.receivers.valid
    created = hooks.endpoint(receiver.url("/unsealable-payload"), actor)
    endpoint_id = created.endpoint.id
    hooks.emit(actor=actor)
    with hooks.services.db.transaction() as conn:
        worker = hooks.services.webhooks.worker()
        worker._fan_out_in(conn, hooks.services.clock.now())
    [message] = hooks.messages(endpoint_id)
    _flip_last_byte(hooks, webhook_messages, "payload_sealed", message["id"])

    async def run_until_attempted() -> None:
        """The long-running loop `vigil serve` and `vigil worker` use."""
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        for _ in range(400):
            await asyncio.sleep(0.05)
            if await asyncio.to_thread(hooks.attempts, endpoint_id):
                break
        stop.set()
        await task

    asyncio.run(run_until_attempted())
    [attempt] = hooks.attempts(endpoint_id)
    assert (attempt["result"], attempt["reason"]) == ("failure", "payload_unavailable")
    [message] = hooks.messages(endpoint_id)
    assert message["status"] == "pending"
    assert message["next_attempt_at"] is not None
    audited = [r["result"] for r in hooks.audit_for(message["id"])]
    assert "payload_unavailable" in audited
    assert not [r for r in receiver.received if r.path == "/unsealable-payload"]

"""S6 for credentials: webhook signing secrets (current and previous) and operators' TOTP seeds
are stored sealed, never as issued. On PostgreSQL the raw column values are what an attacker with
the database sees; on SQLite the file is SQLCipher (covered by test_encryption_at_rest), and the
values inside it are ciphertext too. A sealed value copied to another record does not open."""

from __future__ import annotations

import base64

import pyotp
import pytest
from sqlalchemy import select, text, update
from standardwebhooks.webhooks import Webhook
from tests.support.factories import OPERATOR
from tests.support.hooks_world import HooksWorld
from tests.support.portal import operator

from vigil.crypto.errors import DecryptionFailed
from vigil.storage.tables import operator_accounts, webhook_endpoints
from vigil.tenancy.roles import PortalRole
from vigil.webhooks.sealing import open_secret


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

"""S7-S8 with a key the enterprise brings (BYOK): `vigil kms provision --dealer ID --key REF`.

Vigil proves it can use the customer's key before recording anything, wraps the dealer's new
data keys with it, moves older wraps to it on `rewrap`, never rotates it, and on `vigil dealers
delete` destroys every wrapped data key of the dealer (and every KMS key Vigil made for it) but
leaves the customer's key alone. Against a real OpenBao dev server (the whole product: server,
CLI, API) and AWS KMS simulated by moto (the services, in process; moto is a simulator: see
docs/encryption.md)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import DatabaseFactory
from tests.support.audit_trail import opened_rows
from tests.support.encrypted_world import ALL_INTACT, populate, read_back
from tests.support.factories import OPERATOR, credential, dealer
from tests.support.openbao import OpenBaoServer
from tests.support.server import VigilServer

from vigil.config import Settings
from vigil.core.errors import InvalidInput
from vigil.crypto import envelope
from vigil.crypto.binding import Binding
from vigil.crypto.errors import KeyUnavailable
from vigil.crypto.keyring import wrap_context
from vigil.crypto.keystore import Purpose
from vigil.crypto.kms.port import canonical_context
from vigil.services import Services
from vigil.storage.tables import alarms, audit_events, data_keys, dealers
from vigil.tenancy.models import Plan

# ------------------------------------------------------------------------ OpenBao Transit


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBaoServer]:
    with OpenBaoServer() as server:
        yield server


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, new_database: DatabaseFactory, bao: OpenBaoServer
) -> Iterator[tuple[VigilServer, Services]]:
    """A Vigil whose KMS is the OpenBao server (platform key and all)."""
    srv = new_database.server(
        tmp_path_factory.mktemp("byok"),
        kms="transit",
        kms_transit_url=bao.url,
        kms_transit_token=bao.token,
    )
    srv.start()
    svc = srv.services()
    try:
        yield srv, svc
    finally:
        svc.close()
        srv.stop()


def _cli(srv: VigilServer, *args: str) -> dict[str, Any]:
    out = srv.run_cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def _customer_key(bao: OpenBaoServer, prefix: str = "acme", **options: object) -> str:
    """The customer's administrator makes a key in its own KMS, outside Vigil."""
    name = f"{prefix}-{os.urandom(4).hex()}"
    body = {"type": "aes256-gcm96", "derived": True, **options}
    assert bao.api("POST", f"transit/keys/{name}", body).status_code in (200, 204)
    return name


def _dealer_key(svc: Services, dealer_id: str) -> tuple[str | None, str]:
    with svc.db.read() as conn:
        row = conn.execute(
            select(dealers.c.kms_key_ref, dealers.c.kms_key_managed).where(
                dealers.c.id == dealer_id
            )
        ).one()
    return row.kms_key_ref, row.kms_key_managed


def _wrap_refs(svc: Services, dealer_id: str) -> list[tuple[bytes, int, str]]:
    with svc.db.read() as conn:
        query = select(data_keys.c.keyset_id, data_keys.c.version, data_keys.c.kms_key_ref)
        rows = conn.execute(query.where(data_keys.c.dealer_id == dealer_id))
        return sorted((bytes(r.keyset_id), r.version, r.kms_key_ref) for r in rows)


def _audit(svc: Services, dealer_id: str, action: str) -> list[dict[str, Any]]:
    c = audit_events.c
    query = (
        select(c.id, c.result, c.details)
        .where(c.target_id == dealer_id, c.action == action)
        .order_by(c.seq)
    )
    return opened_rows(svc, query)


def test_an_enterprise_dealer_brings_its_own_transit_key(
    world: tuple[VigilServer, Services], bao: OpenBaoServer
) -> None:
    srv, svc = world
    owner = dealer(svc, Plan.ENTERPRISE)
    tenant = populate(srv, svc, owner=owner)  # under its platform-managed key, made on first use
    created = _cli(srv, "kms", "provision", "--dealer", owner.id)  # then a key Vigil creates
    theirs = _customer_key(bao)

    configured = _cli(srv, "kms", "provision", "--dealer", owner.id, "--key", theirs)
    again = _cli(srv, "kms", "provision", "--dealer", owner.id, "--key", theirs)
    assert created["kms_key_ref"] == f"vigil-dealer-{owner.id}"
    assert created["kms_key_managed"] == "platform"
    assert (configured["kms_key_ref"], configured["kms_key_managed"]) == (theirs, "customer")
    assert configured["new"] is True
    assert again["new"] is False  # idempotent: no new generations, same key
    assert _dealer_key(svc, owner.id) == (theirs, "customer")

    # Data sealed from now on is under the customer's key: its generation's wrap names it, the
    # sealed value's header names that generation, and the customer's own KMS unwraps it. (A
    # running server moves to the new generation when its cached one expires, within
    # VIGIL_KEY_CACHE_TTL_SECONDS; a restart makes that now.)
    srv.stop()
    srv.start()
    with srv.client(tenant.cred.token) as client:
        made = client.post("/v1/alarms", json={
            "site_id": tenant.site_id, "type": "fire", "occurred_at": datetime.now(UTC).isoformat(),
            "description": "sealed under the customer's key",
        })  # fmt: skip
        alarm_id = made.json()["id"]
        assert client.get(f"/v1/alarms/{alarm_id}").json()["description"] == (
            "sealed under the customer's key"
        )
    current = svc.encryption.store.current(owner.id, Purpose.RECORDS)
    assert current is not None
    assert current.kms_key_ref == theirs
    assert current.wrapped.startswith(b"vault:v1:")
    context = wrap_context(owner.id, Purpose.RECORDS, current.keyset_id, current.version)
    unwrapped = bao.api("POST", f"transit/decrypt/{theirs}", {
        "ciphertext": current.wrapped.decode(),
        "context": base64.b64encode(canonical_context(context)).decode(),
    })  # fmt: skip
    assert unwrapped.status_code == 200
    with svc.db.read() as conn:
        sealed = conn.execute(
            select(alarms.c.description_sealed).where(alarms.c.id == alarm_id)
        ).scalar_one()
    assert envelope.key_ref(sealed) == (current.keyset_id, current.version)
    # Older wraps (platform-managed, then Vigil-created) still open until rewrap moves them.
    assert read_back(srv, tenant) == ALL_INTACT
    assert len({ref for _k, _v, ref in _wrap_refs(svc, owner.id)}) > 1

    # Rotation: the customer's key is theirs to rotate; Vigil starts new generations only.
    rotated = _cli(srv, "kms", "rotate", "--dealer", owner.id)
    human = srv.run_cli("kms", "rotate", "--dealer", owner.id)
    assert (rotated["rotated"], rotated["kms_key_managed"]) == (False, "customer")
    assert "rotating it is the customer's job" in human.stdout
    assert bao.api("GET", f"transit/keys/{theirs}").json()["data"]["latest_version"] == 1
    rewrapped = _cli(srv, "kms", "rewrap", "--dealer", owner.id)
    assert int(rewrapped["rewrapped"]) >= 2
    assert {ref for _k, _v, ref in _wrap_refs(svc, owner.id)} == {theirs}
    assert read_back(srv, tenant) == ALL_INTACT

    provisioned = _audit(svc, owner.id, "kms_key.provisioned")
    sources = [(r["details"].get("source"), r["details"].get("new")) for r in provisioned]
    assert ("created", True) in sources
    assert sources[-2:] == [("configured", True), ("configured", False)]
    assert [r["details"]["kek_rotated"] for r in _audit(svc, owner.id, "kms_key.rotated")] == [
        False,
        False,
    ]

    # Crypto-shredding: the dealer's wraps and Vigil's keys are destroyed; the customer's key
    # stays in the customer's KMS, usable, and the delete says it left it to them.
    wraps = list(svc.encryption.store.list_keys(owner.id))
    # The key Vigil created before the switch was kept until now (nothing is destroyed early).
    assert bao.api("GET", f"transit/keys/vigil-dealer-{owner.id}").status_code == 200
    deleted = srv.run_cli("dealers", "delete", owner.id, "--yes")
    assert f"KMS key {theirs} is the customer's and was left to them" in deleted.stdout
    details = _audit(svc, owner.id, "dealer.deleted")[-1]["details"]
    assert details["kms_keys_left_to_customer"] == [theirs]
    assert details["kms_keys_destroyed"] == sorted(
        [f"vigil-dealer-{owner.id}", f"vigil-standard-{owner.id}"]
    )
    for vigils in details["kms_keys_destroyed"]:
        assert bao.api("GET", f"transit/keys/{vigils}").status_code == 404
    still = bao.api("POST", f"transit/datakey/plaintext/{theirs}", {"context": "YWNtZQ=="})
    assert still.status_code == 200
    assert wraps  # there were wraps to destroy, and none is left
    assert list(svc.encryption.store.list_keys(owner.id)) == []
    fresh = srv.services()
    try:
        binding = Binding(owner.id, "sandbox", "alarm", alarm_id, "description")
        with pytest.raises(KeyUnavailable):
            fresh.encryption.records.open(binding, sealed)
        with pytest.raises(KeyUnavailable):  # and no fresh key springs up for it
            fresh.encryption.records.seal(binding, b"new life")
    finally:
        fresh.close()
    with srv.client(tenant.cred.token) as client:
        assert client.get(f"/v1/alarms/{alarm_id}").status_code == 401
    verify = srv.run_cli("audit", "verify")
    assert verify.returncode == 0, verify.stderr + verify.stdout


def _limited_token(bao: OpenBaoServer) -> str:
    """A token that may use every Transit key except the customer's `locked-*` ones: what
    Vigil holds when the customer has not (yet) granted it their key."""
    policy = (
        'path "transit/*" { capabilities = ["create", "read", "update", "delete", "list"] }\n'
        'path "transit/datakey/plaintext/locked-*" { capabilities = ["deny"] }\n'
    )
    assert bao.api("PUT", "sys/policies/acl/vigil-limited", {"policy": policy}).status_code < 300
    made = bao.api("POST", "auth/token/create", {"policies": ["vigil-limited"]})
    return str(made.json()["auth"]["client_token"])


def test_a_key_vigil_cannot_use_is_refused_with_nothing_changed(
    world: tuple[VigilServer, Services], bao: OpenBaoServer
) -> None:
    srv, svc = world
    owner = dealer(svc, Plan.ENTERPRISE)
    populate(srv, svc, owner=owner)
    neighbour = dealer(svc, Plan.ENTERPRISE)
    neighbours = _customer_key(bao, "neighbour")
    _cli(srv, "kms", "provision", "--dealer", neighbour.id, "--key", neighbours)
    standard = credential(svc).dealer
    locked = _customer_key(bao, "locked")
    cases = [
        (owner.id, f"absent-{os.urandom(3).hex()}", "no Transit key by that name"),
        (owner.id, "../sys/policies", "1-128 characters"),
        (owner.id, _customer_key(bao, "flat", derived=False), "derived=true"),
        (owner.id, "vigil-platform", "one of Vigil's own keys"),
        (owner.id, f"vigil-standard-{standard.id}", "one of Vigil's own keys"),
        (owner.id, neighbours, "another dealer's: one KMS key per tenant"),
        (owner.id, locked, "permission denied"),
        (standard.id, _customer_key(bao), "Only enterprise dealers"),
    ]
    env = srv.env | {"VIGIL_KMS_TRANSIT_TOKEN": _limited_token(bao)}
    before = {d: (_dealer_key(svc, d), _wrap_refs(svc, d)) for d in (owner.id, standard.id)}
    refusals = {d: len(_refused(svc, d)) for d in before}
    for dealer_id, ref, reason in cases:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "vigil",
                "kms",
                "provision",
                "--dealer",
                dealer_id,
                "--key",
                ref,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, (ref, out.stderr)
        assert reason in _one_line(out.stderr), (ref, out.stderr)
        assert "Traceback" not in out.stderr
        assert out.stdout == ""
    after = {d: (_dealer_key(svc, d), _wrap_refs(svc, d)) for d in before}
    assert after == before  # nothing changed
    assert _dealer_key(svc, neighbour.id) == (neighbours, "customer")
    refused = _refused(svc, owner.id)[refusals[owner.id] :]
    assert [r["details"]["kms_key_ref"] for r in refused] == [c[1] for c in cases[:-1]]
    assert "Nothing was changed" in refused[0]["details"]["reason"]
    assert len(_refused(svc, standard.id)) == refusals[standard.id] + 1
    # The same key, once granted (here: the unrestricted token), is accepted.
    assert _cli(srv, "kms", "provision", "--dealer", owner.id, "--key", locked)["new"] is True


def _one_line(text: str) -> str:
    """CLI errors as one line (the terminal may wrap long ones)."""
    return " ".join(text.split())


def _refused(svc: Services, dealer_id: str) -> list[dict[str, Any]]:
    rows = _audit(svc, dealer_id, "kms_key.provisioned")
    return [r for r in rows if r["result"] == "refused"]


def test_the_local_kms_refuses_a_customer_key_and_says_why(server: VigilServer) -> None:
    """With `VIGIL_KMS=local` every key lives in Vigil's own key file: "customer-managed" would
    be a label without the property, so it is refused, clearly."""
    svc = server.services()
    try:
        owner = dealer(svc, Plan.ENTERPRISE)
        out = server.run_cli(
            "kms", "provision", "--dealer", owner.id, "--key", "platform", check=False
        )
        assert out.returncode == 2
        assert "needs VIGIL_KMS=transit or VIGIL_KMS=aws" in _one_line(out.stderr)
        assert "Traceback" not in out.stderr
        assert _dealer_key(svc, owner.id) == (None, "platform")
    finally:
        svc.close()


# ------------------------------------------------------------------------- AWS (moto)


@pytest.fixture
def aws(tmp_path: Path, new_database: DatabaseFactory) -> Iterator[tuple[Services, Any]]:
    """Services on a fresh database of the kind under test, with AWS KMS (moto) as the KMS,
    and the customer's KMS client (same account, as the simulator has one)."""
    import boto3
    from moto import mock_aws

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with mock_aws():
            client = boto3.client("kms", region_name="us-east-1")
            platform = client.create_key(Description="vigil platform")["KeyMetadata"]["Arn"]
            home = tmp_path / "home"
            url = new_database(home)
            svc = Services.build(
                Settings(
                    home=home,
                    database_url=url,
                    database_owner_url=new_database.owner_url(url),
                    kms="aws",
                    kms_aws_key_id=platform,
                    kms_aws_region="us-east-1",
                )
            )
            try:
                yield svc, client
            finally:
                svc.close()


def test_an_enterprise_dealer_brings_its_own_aws_key(aws: tuple[Services, Any]) -> None:
    svc, client = aws
    owner = dealer(svc, Plan.ENTERPRISE)
    before = Binding(owner.id, "production", "alarm", "alm_before", "description")
    sealed_before = svc.encryption.records.seal(before, b"before BYOK")
    other = dealer(svc)  # a standard dealer with its platform-managed key
    svc.encryption.records.seal(Binding(other.id, "production", "alarm", "a", "d"), b"x")
    others_key = client.describe_key(KeyId=f"alias/vigil-standard-{other.id}")["KeyMetadata"]
    key = client.create_key(Description="acme's own")["KeyMetadata"]
    alias = f"alias/acme-{os.urandom(3).hex()}"
    client.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    disabled = client.create_key(Description="disabled")["KeyMetadata"]["KeyId"]
    client.disable_key(KeyId=disabled)
    signing = client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]

    state = (_dealer_key(svc, owner.id), _wrap_refs(svc, owner.id))
    for bad, reason in [
        ("alias/no-such-key", "NotFoundException"),
        ("key id? no", "not an AWS KMS key id"),
        (disabled, "the key is Disabled"),
        (signing["Arn"], "symmetric ENCRYPT_DECRYPT"),
        (svc.encryption.kms.platform_key_ref, "one of Vigil's own keys"),
        (f"alias/vigil-standard-{other.id}", "one of Vigil's own keys"),
        (others_key["Arn"], "one of Vigil's own keys"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            svc.tenant_keys.provision(OPERATOR, owner.id, bad)
    assert (_dealer_key(svc, owner.id), _wrap_refs(svc, owner.id)) == state

    done = svc.tenant_keys.provision(OPERATOR, owner.id, alias)
    again = svc.tenant_keys.provision(OPERATOR, owner.id, key["Arn"])
    assert (done.kms_key_ref, done.managed.value, done.new) == (key["Arn"], "customer", True)
    assert (again.kms_key_ref, again.new) == (key["Arn"], False)  # the alias named this key

    after = Binding(owner.id, "production", "alarm", "alm_after", "description")
    sealed_after = svc.encryption.records.seal(after, b"after BYOK")
    current = svc.encryption.store.current(owner.id, Purpose.RECORDS)
    assert current is not None
    assert current.kms_key_ref == key["Arn"]
    assert envelope.key_ref(sealed_after) == (current.keyset_id, current.version)
    context = wrap_context(owner.id, Purpose.RECORDS, current.keyset_id, current.version)
    unwrapped = client.decrypt(  # the customer's own KMS unwraps it under the customer's key
        CiphertextBlob=current.wrapped, KeyId=key["Arn"], EncryptionContext=context
    )
    assert len(unwrapped["Plaintext"]) == 32
    assert svc.encryption.records.open(before, sealed_before) == b"before BYOK"
    assert svc.encryption.records.open(after, sealed_after) == b"after BYOK"

    rotated = svc.tenant_keys.rotate(OPERATOR, owner.id)
    assert (rotated.kek_rotated, rotated.managed.value) == (False, "customer")
    assert client.list_key_rotations(KeyId=key["KeyId"])["Rotations"] == []
    assert len(list(svc.tenant_keys.rewrap(owner.id))) >= 2
    assert {ref for _k, _v, ref in _wrap_refs(svc, owner.id)} == {key["Arn"]}
    svc.encryption.keyring.clear()  # from the KMS again, after the rewrap
    assert svc.encryption.records.open(before, sealed_before) == b"before BYOK"

    shredded = svc.tenant_keys.delete_dealer(OPERATOR, owner.id)
    assert shredded.kms_keys_left_to_customer == (key["Arn"],)
    assert key["Arn"] not in shredded.kms_keys_destroyed
    assert shredded.data_keys_destroyed >= 2
    meta = client.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert (meta["KeyState"], meta["Enabled"]) == ("Enabled", True)
    usable = client.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
    assert len(usable["Plaintext"]) == 32
    standard = client.describe_key(KeyId=f"alias/vigil-standard-{owner.id}")["KeyMetadata"]
    assert standard["KeyState"] == "PendingDeletion"  # Vigil's key for it: shredded
    for binding, sealed in [(before, sealed_before), (after, sealed_after)]:
        with pytest.raises(KeyUnavailable):
            svc.encryption.records.open(binding, sealed)

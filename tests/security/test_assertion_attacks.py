"""S11: JWT-bearer assertions (RFC 7523) from partners, signed by libraries we did not write
(PyJWT, jwcrypto), and every attack on them refused beside the legitimate case that passes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwk as jwc_jwk
from jwcrypto import jwt as jwc_jwt
from sqlalchemy import select
from tests.support import factories, oauth
from tests.support.audit_trail import opened_rows
from tests.support.server import VigilServer

from vigil.audit.actions import AuditAction
from vigil.auth.scopes import Scope
from vigil.core.errors import InvalidInput
from vigil.services import Services
from vigil.storage.tables import audit_events
from vigil.tenancy.models import Dealer

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class World:
    server: VigilServer
    services: Services
    dealer: Dealer
    partner_id: str
    key: ec.EllipticCurvePrivateKey
    kid: str

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.partner_id,
            "sub": self.dealer.id,
            "aud": self.server.base_url,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
        } | overrides
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, headers: dict[str, Any] | None = None, **overrides: Any) -> str:
        """Signed by PyJWT, as a partner's own code would."""
        return pyjwt.encode(
            self.claims(**overrides),
            self.key,
            algorithm="ES256",
            headers={"kid": self.kid, "typ": "JWT"} | (headers or {}),
        )

    def exchange(self, assertion: str, **extra: str) -> httpx.Response:
        with self.server.client() as http:
            return http.post(
                "/oauth/token", data={"grant_type": GRANT, "assertion": assertion} | extra
            )

    def assert_refused(self, assertion: str, reason: str) -> None:
        refused = self.exchange(assertion)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_grant"
        assert reason in refused.json()["error_description"]
        legit = self.exchange(self.sign())
        assert legit.status_code == 200, legit.text


def public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return jwk | {"kid": kid}


@pytest.fixture
def world(server: VigilServer, services: Services) -> World:
    dealer = factories.dealer(services)
    key = ec.generate_private_key(ec.SECP256R1())
    partner = services.partners.create(
        factories.OPERATOR,
        name="Monitoring partner",
        environment=factories.Environment.SANDBOX,
        scopes={Scope.SITES_READ, Scope.ALARMS_READ, Scope.ALARMS_WRITE},
        jwks={"keys": [public_jwk(key, "2026-01")]},
    )
    services.partners.authorize(
        factories.OPERATOR, partner.id, dealer.id, {Scope.SITES_READ, Scope.AUDIT_READ}
    )
    return World(server, services, dealer, partner.id, key, "2026-01")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- interoperability -----------------------------------------------------------------------


def test_pyjwt_assertion_gets_a_short_token_with_intersected_scopes(world: World) -> None:
    issued = world.exchange(world.sign())
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["access_token"].startswith("vgl_at_")
    assert "refresh_token" not in body
    assert body["expires_in"] <= 3600
    assert body["scope"] == "sites:read"  # partner {sites, alarms} ∩ dealer {sites, audit}
    with world.server.client(body["access_token"]) as api:
        me = api.get("/v1/me").json()
        assert me["credential_kind"] == "assertion_access_token"
        assert me["dealer_id"] == world.dealer.id
        assert api.get("/v1/sites").status_code == 200
        assert api.get("/v1/audit-events").status_code == 403


@pytest.mark.parametrize(
    ("kty", "alg"), [("OKP", "EdDSA"), ("RSA", "PS256"), ("RSA", "RS256"), ("EC", "ES256")]
)
def test_jwcrypto_assertions_are_accepted(world: World, kty: str, alg: str) -> None:
    params = {"OKP": {"crv": "Ed25519"}, "RSA": {"size": 2048}, "EC": {"crv": "P-256"}}[kty]
    key = jwc_jwk.JWK.generate(kty=kty, kid=f"jwc-{alg}", **params)
    world.services.partners.add_keys(
        factories.OPERATOR, world.partner_id, {"keys": [json.loads(key.export_public())]}
    )
    token = jwc_jwt.JWT(header={"alg": alg, "kid": f"jwc-{alg}"}, claims=world.claims())
    token.make_signed_token(key)
    issued = world.exchange(token.serialize())
    assert issued.status_code == 200, issued.text


# --- header attacks -------------------------------------------------------------------------


def test_alg_none_is_refused(world: World) -> None:
    unsigned = ".".join(
        [
            _b64(json.dumps({"alg": "none", "kid": world.kid}).encode()),
            _b64(json.dumps(world.claims()).encode()),
            "",
        ]
    )
    world.assert_refused(unsigned, "Algorithm 'none' is not allowed")


def test_hs256_signed_with_the_public_key_is_refused(world: World) -> None:
    """Algorithm confusion: the attacker MACs with the public key the verifier would use."""
    header = _b64(json.dumps({"alg": "HS256", "kid": world.kid, "typ": "JWT"}).encode())
    payload = _b64(json.dumps(world.claims()).encode())
    public = json.dumps(public_jwk(world.key, world.kid)).encode()
    mac = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    world.assert_refused(f"{header}.{payload}.{_b64(mac)}", "Algorithm 'HS256' is not allowed")


def test_unknown_kid_is_refused(world: World) -> None:
    world.assert_refused(
        world.sign(headers={"kid": "never-registered"}), "No active registered key"
    )


def test_key_from_a_jku_url_is_never_used(world: World) -> None:
    assertion = world.sign(headers={"jku": "https://attacker.example/jwks.json"})
    world.assert_refused(assertion, "Header 'jku' is not accepted")


def test_explicit_typ_of_another_kind_of_jwt_is_refused(world: World) -> None:
    world.assert_refused(world.sign(headers={"typ": "at+jwt"}), "typ must be JWT")


def test_wrong_signature_is_refused(world: World) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    forged = pyjwt.encode(world.claims(), other, algorithm="ES256", headers={"kid": world.kid})
    world.assert_refused(forged, "signature does not verify")


def test_retired_key_is_refused(world: World) -> None:
    fresh = ec.generate_private_key(ec.SECP256R1())
    world.services.partners.add_keys(
        factories.OPERATOR, world.partner_id, {"keys": [public_jwk(fresh, "2026-02")]}
    )
    now = world.services.clock.now()
    world.services.partners.retire_key(factories.OPERATOR, world.partner_id, world.kid, now)
    refused = world.exchange(world.sign())
    assert refused.json()["error"] == "invalid_grant"
    world.key, world.kid = fresh, "2026-02"
    assert world.exchange(world.sign()).status_code == 200


# --- claim attacks --------------------------------------------------------------------------


def test_expired_assertion_is_refused(world: World) -> None:
    now = int(time.time())
    world.assert_refused(world.sign(iat=now - 400, exp=now - 200), "expired")


def test_nbf_in_the_future_is_refused(world: World) -> None:
    world.assert_refused(world.sign(nbf=int(time.time()) + 600), "nbf is in the future")


def test_exp_too_far_ahead_is_refused(world: World) -> None:
    world.assert_refused(world.sign(exp=int(time.time()) + 3600), "ahead")


@pytest.mark.parametrize(
    "audience",
    ["{issuer}/oauth/token", ["{issuer}", "https://other.example"], "https://other.example", None],
    ids=["token-endpoint", "extra-audience", "other", "missing"],
)
def test_wrong_audience_is_refused(world: World, audience: Any) -> None:
    issuer = world.server.base_url
    aud = (
        [a.format(issuer=issuer) for a in audience]
        if isinstance(audience, list)
        else (audience.format(issuer=issuer) if audience else None)
    )
    world.assert_refused(world.sign(aud=aud), "aud must be exactly")


def test_wrong_issuer_is_refused(world: World, services: Services) -> None:
    other = oauth.partner(services, authorize={world.dealer.id: {Scope.SITES_READ}})
    world.assert_refused(world.sign(iss=other.partner.id), "No active registered key")


def test_dealer_that_never_authorized_the_partner_is_refused(
    world: World, services: Services
) -> None:
    stranger = factories.dealer(services)
    world.assert_refused(world.sign(sub=stranger.id), "sub is not acceptable")


def test_replayed_jti_is_refused(world: World) -> None:
    assertion = world.sign()
    assert world.exchange(assertion).status_code == 200
    world.assert_refused(assertion, "jti has been used")


def test_concurrent_replays_of_one_jti_yield_exactly_one_token(world: World) -> None:
    """Grants that arrive together commit together (group commit): a jti used twice in the
    same batch is still used once, and the other grants of the batch are not harmed."""
    replayed = world.sign()
    distinct = [world.sign() for _ in range(6)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(world.exchange, [replayed] * 6 + distinct))
    replays, fresh = answers[:6], answers[6:]
    assert sorted(r.status_code for r in replays) == [200] + [400] * 5
    assert all(
        "jti has been used" in r.json()["error_description"]
        for r in replays
        if r.status_code == 400
    )
    assert all(r.status_code == 200 for r in fresh), [r.text for r in fresh]
    tokens = {r.json()["access_token"] for r in replays + fresh if r.status_code == 200}
    assert len(tokens) == 7
    jtis = [pyjwt.decode(a, options={"verify_signature": False})["jti"] for a in distinct]
    issued = [
        r["details"]["jti"]
        for r in opened_rows(
            world.services,
            select(audit_events.c.id, audit_events.c.details).where(
                audit_events.c.action == AuditAction.OAUTH_TOKEN_ISSUED.value,
                audit_events.c.actor_id == world.partner_id,
            ),
        )
    ]
    replayed_jti = pyjwt.decode(replayed, options={"verify_signature": False})["jti"]
    assert sorted(issued) == sorted([*jtis, replayed_jti])  # one record per token issued


def test_each_grant_request_is_recorded_once_with_its_token_beside_it(world: World) -> None:
    """S14/S15: the call's own record commits in the grant's transaction (one durable commit),
    so the edge adds none: a granted request has its `oauth_token.issued` and exactly one
    `api.request` (result 200); a refused one is recorded by the edge as before (400)."""
    granted = world.exchange(world.sign())
    replay_of = world.sign()
    world.exchange(replay_of)
    refused = world.exchange(replay_of)
    assert (granted.status_code, refused.status_code) == (200, 400)

    def actions(response: httpx.Response) -> list[tuple[str, str]]:
        rows = opened_rows(
            world.services,
            select(audit_events.c.id, audit_events.c.action, audit_events.c.result).where(
                audit_events.c.request_id == response.headers["x-request-id"]
            ),
        )
        return sorted((r["action"], r["result"]) for r in rows)

    assert actions(granted) == [
        ("api.request", "200"),
        (AuditAction.OAUTH_TOKEN_ISSUED.value, "success"),
    ]
    call = opened_rows(
        world.services,
        select(audit_events).where(
            audit_events.c.request_id == granted.headers["x-request-id"],
            audit_events.c.action == "api.request",
        ),
    )[0]
    assert (call["method"], call["route"], call["source_ip"]) == (
        "POST",
        "/oauth/token",
        "127.0.0.1",
    )
    refusal = actions(refused)
    assert refusal.count(("api.request", "400")) == 1
    assert (AuditAction.ASSERTION_REFUSED.value, "refused") in refusal


def test_missing_jti_is_refused(world: World) -> None:
    world.assert_refused(world.sign(jti=None), "jti must be")


def test_scope_outside_the_authorization_is_refused(world: World) -> None:
    refused = world.exchange(world.sign(), scope="alarms:read")
    assert refused.json()["error"] == "invalid_scope"
    assert world.exchange(world.sign(), scope="sites:read").status_code == 200


def test_refused_assertions_are_audited(world: World) -> None:
    world.exchange(world.sign(aud="https://other.example"))
    rows = opened_rows(
        world.services,
        select(audit_events.c.id, audit_events.c.details, audit_events.c.actor_id).where(
            audit_events.c.action == AuditAction.ASSERTION_REFUSED.value,
            audit_events.c.target_id == world.partner_id,
        ),
    )
    assert any(r["details"]["reason"] == "aud" for r in rows)
    assert all("eyJ" not in json.dumps(r["details"]) for r in rows)  # never the assertion


# --- key registration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (jwc_jwk.JWK.generate(kty="RSA", size=1024, kid="small"), "at least 2048 bits"),
        (jwc_jwk.JWK.generate(kty="oct", size=256, kid="hmac"), "public keys only"),
        (jwc_jwk.JWK.generate(kty="EC", crv="P-384", kid="p384"), "only EC P-256"),
    ],
    ids=["rsa-1024", "symmetric", "p-384"],
)
def test_weak_or_secret_keys_cannot_be_registered(
    world: World, key: jwc_jwk.JWK, message: str
) -> None:
    exported = json.loads(key.export_public() if key.has_public else key.export())
    with pytest.raises(InvalidInput, match=message):
        world.services.partners.add_keys(factories.OPERATOR, world.partner_id, {"keys": [exported]})


def test_private_key_material_cannot_be_registered(world: World) -> None:
    key = jwc_jwk.JWK.generate(kty="EC", crv="P-256", kid="private")
    with pytest.raises(InvalidInput, match="public keys only"):
        world.services.partners.add_keys(
            factories.OPERATOR, world.partner_id, {"keys": [json.loads(key.export_private())]}
        )


# --- private_key_jwt client authentication (RFC 7523 section 2.2) ---------------------------


def test_private_key_jwt_client_authenticates_with_the_same_verifier(
    server: VigilServer, services: Services
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cred = factories.credential(services)
    services.oauth_clients.register(
        factories.OPERATOR,
        cred.app.id,
        client_type=oauth.ClientType.CONFIDENTIAL,
        auth_method=oauth.AuthMethod.PRIVATE_KEY_JWT,
        redirect_uris=[oauth.REDIRECT],
        jwks={"keys": [public_jwk(key, "client-1")]},
    )
    c = oauth.Client(cred, services.oauth_clients.get(cred.app.id), None)  # type: ignore[arg-type]
    u = oauth.user(services, cred.dealer.id)

    def client_assertion(aud: str) -> dict[str, str]:
        now = int(time.time())
        claims = {"iss": c.id, "sub": c.id, "aud": aud, "exp": now + 60, "iat": now,
                  "jti": uuid.uuid4().hex}  # fmt: skip
        signed = pyjwt.encode(claims, key, algorithm="ES256", headers={"kid": "client-1"})
        return {
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": signed,
        }

    verifier, challenge = oauth.pkce_pair()
    with server.client() as http:
        found = oauth.code_from(oauth.sign_in(http, oauth.authorize_params(c, challenge), u.email))
        form = {
            "grant_type": "authorization_code",
            "code": found["code"],
            "redirect_uri": oauth.REDIRECT,
            "code_verifier": verifier,
        }
        wrong_aud = http.post(
            "/oauth/token", data=form | client_assertion(server.base_url + "/oauth/token")
        )
        assert wrong_aud.status_code == 401
        assert wrong_aud.json()["error"] == "invalid_client"
        ok = http.post("/oauth/token", data=form | client_assertion(server.base_url))
        assert ok.status_code == 200, ok.text

"""S5 and S14 over real TLS: a valid receiver gets a signed delivery the standardwebhooks library
verifies; self-signed, expired, wrong-host and unknown-CA receivers get nothing and the audit
says why; an approved internal CA is trusted for its one endpoint only."""

from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook
from tests.support import factories
from tests.support.hooks_world import HooksWorld

from vigil.core.errors import PermissionDenied


def test_valid_receiver_gets_a_signed_event_and_the_attempt_is_audited(hooks: HooksWorld) -> None:
    receiver = hooks.receivers.valid
    created = hooks.endpoint(receiver.url("/valid"))
    [event_id] = hooks.emit()
    hooks.deliver()
    got = [r for r in receiver.received if r.path == "/valid"]
    assert len(got) == 1
    payload = Webhook(created.secret.value).verify(got[0].body, got[0].headers)
    assert payload["type"] == "site.armed"
    [message] = hooks.messages(created.endpoint.id)
    assert got[0].headers["webhook-id"] == message["id"]
    assert message["status"] == "delivered"
    [attempt] = hooks.attempts(created.endpoint.id)
    assert attempt["status_code"] == 204
    assert attempt["tls"].startswith("TLSv1.")
    [record] = hooks.audit_for(message["id"])
    assert record["action"] == "webhook.delivery_attempted"
    assert record["result"] == "success"
    assert record["actor_type"] == "system"
    assert record["details"]["event_id"] == event_id
    assert record["details"]["attempt"] == 1
    assert created.secret.value not in json.dumps(record["details"])


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("self_signed", "self-signed"),
        ("expired", "expired"),
        ("wrong_host", "mismatch"),
        ("unknown_ca", "unable to get local issuer"),
    ],
)
def test_untrusted_receivers_get_nothing_and_the_audit_says_why(
    hooks: HooksWorld, kind: str, why: str
) -> None:
    receiver = getattr(hooks.receivers, kind)
    created = hooks.endpoint(receiver.url(f"/{kind}"))
    hooks.emit()
    hooks.deliver()
    assert [r for r in receiver.received if r.path == f"/{kind}"] == []
    [message] = hooks.messages(created.endpoint.id)
    assert message["status"] == "pending"  # retried later, on schedule
    [attempt] = hooks.attempts(created.endpoint.id)
    assert attempt["reason"] == "certificate_verify_failed"
    assert why in attempt["tls"].lower()
    [record] = hooks.audit_for(message["id"])
    assert record["result"] == "certificate_verify_failed"
    assert why in record["details"]["detail"].lower()


def test_approved_internal_ca_is_trusted_for_that_endpoint_only(hooks: HooksWorld) -> None:
    internal, other = hooks.receivers.internal, hooks.receivers.internal_too
    mine = hooks.endpoint(internal.url("/mine"))
    theirs = hooks.endpoint(other.url("/theirs"))
    hooks.emit()
    hooks.deliver()
    assert internal.received == []
    assert other.received == []

    request = hooks.services.webhooks.endpoints.request_ca(
        hooks.actor, mine.endpoint.id, hooks.receivers.internal_ca_pem, "our PKI"
    )
    with pytest.raises(PermissionDenied):  # an app cannot approve its own CA
        hooks.services.webhooks.endpoints.approve_ca(hooks.actor, request.id)
    approved = hooks.services.webhooks.endpoints.approve_ca(factories.OPERATOR, request.id)
    assert approved.status == "approved"
    for endpoint in (mine, theirs):
        hooks.services.webhooks.messages.replay(
            hooks.actor, hooks.messages(endpoint.endpoint.id)[0]["id"]
        )
    hooks.deliver()
    assert [r.path for r in internal.received] == ["/mine"]
    assert other.received == []
    [record] = [r for r in hooks.audit_for(request.id) if r["action"] == "webhook_ca.approved"]
    assert record["actor_id"] == factories.OPERATOR.id

    moved = hooks.services.webhooks.endpoints.update(
        hooks.actor, mine.endpoint.id, {"url": internal.url("/mine", host="127.0.0.1")}, None
    )
    assert moved.internal_ca is False  # approval was for the old host; a new host needs a new one


def test_rotation_signs_with_both_secrets_until_the_overlap_ends(hooks: HooksWorld) -> None:
    receiver = hooks.receivers.valid
    created = hooks.endpoint(receiver.url("/rotating"))
    rotated = hooks.services.webhooks.endpoints.rotate_secret(hooks.actor, created.endpoint.id)
    assert rotated.secret != created.secret
    hooks.emit()
    hooks.deliver()
    [got] = [r for r in receiver.received if r.path == "/rotating"]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (created.secret, rotated.secret):
        assert Webhook(secret.value).verify(got.body, got.headers)["type"] == "site.armed"


def test_redirects_are_not_followed(hooks: HooksWorld) -> None:
    from tests.support.receivers import Reply

    receiver = hooks.receivers.valid
    target = receiver.url("/redirect-target")
    receiver.reply = lambda r: Reply(302, {"location": target}) if r.path == "/moved" else Reply()
    try:
        created = hooks.endpoint(receiver.url("/moved"))
        hooks.emit()
        hooks.deliver()
    finally:
        receiver.reply = lambda r: Reply()
    assert [r for r in receiver.received if r.path == "/redirect-target"] == []
    [attempt] = hooks.attempts(created.endpoint.id)
    assert attempt["status_code"] == 302
    assert attempt["reason"] == "redirect_not_followed"

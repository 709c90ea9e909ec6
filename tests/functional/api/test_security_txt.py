"""S20: security.txt per RFC 9116, checked by an independent parser."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sectxt import Parser
from sqlalchemy import select
from tests.support.server import VigilServer

from vigil.services import Services
from vigil.storage.tables import audit_events


def test_security_txt_is_valid_rfc9116(server: VigilServer) -> None:
    with server.client() as client:
        response = client.get("/.well-known/security.txt")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    parser = Parser(
        response.content, urls=f"https://localhost:{server.https_port}/.well-known/security.txt"
    )
    assert parser.errors == []
    assert parser.is_valid()
    fields = parser._values
    assert fields["contact"] == ["mailto:security@vigil.example"]
    assert fields["canonical"] == [
        f"https://localhost:{server.https_port}/.well-known/security.txt"
    ]


def test_expires_is_under_a_year_ahead(server: VigilServer) -> None:
    with server.client() as client:
        text = client.get("/.well-known/security.txt").text
    line = next(x for x in text.splitlines() if x.startswith("Expires: "))
    expires = datetime.strptime(line.removeprefix("Expires: "), "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )
    now = datetime.now(UTC)
    assert now + timedelta(days=30) < expires < now + timedelta(days=365)


def test_security_txt_needs_no_credential_and_is_still_audited(
    server: VigilServer, services: Services
) -> None:
    with server.client() as client:
        response = client.get("/.well-known/security.txt")
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=63072000")
    with services.db.read() as conn:
        rows = conn.execute(
            select(audit_events.c.action, audit_events.c.actor_type, audit_events.c.result).where(
                audit_events.c.request_id == response.headers["x-request-id"]
            )
        ).all()
    assert [tuple(r) for r in rows] == [("api.request", "anonymous", "200")]


def test_security_md_states_the_policy_security_txt_points_to(server: VigilServer) -> None:
    """S20's SECURITY.md: the same contact as security.txt, the promised response times, a
    scope and a safe harbour, each under its own heading."""
    policy = (Path(__file__).resolve().parents[3] / "SECURITY.md").read_text()
    with server.client() as client:
        text = client.get("/.well-known/security.txt").text
    contact = next(x for x in text.splitlines() if x.startswith("Contact: "))
    assert contact.removeprefix("Contact: mailto:") in policy
    headings = [line for line in policy.splitlines() if line.startswith("## ")]
    for heading in ("## Reporting a vulnerability", "## Scope", "## Safe harbour"):
        assert heading in headings
    assert re.search(r"acknowledge[^\n]*within \*\*24 hours\*\*", policy)
    assert re.search(r"triage[^\n]*within \*\*72 hours\*\*", policy)

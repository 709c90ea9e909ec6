"""S20: security.txt per RFC 9116, checked by an independent parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sectxt import Parser
from tests.support.server import VigilServer


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


def test_security_txt_needs_no_credential_and_is_still_audited(server: VigilServer) -> None:
    with server.client() as client:
        response = client.get("/.well-known/security.txt")
    assert response.headers["x-request-id"]
    assert response.headers["strict-transport-security"].startswith("max-age=63072000")

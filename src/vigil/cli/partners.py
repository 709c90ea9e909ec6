"""`vigil partners …`: assertion partners (S11), their uploaded keys and dealers' consent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from vigil.auth.principal import Environment
from vigil.auth.scopes import encode_scopes, parse_scopes
from vigil.cli.context import open_services
from vigil.cli.output import JsonOption, emit, friendly_errors, operator, split_csv

app = typer.Typer(help="Manage service partners that sign JWT assertions.", no_args_is_help=True)

JwksOption = typer.Option(
    ..., "--jwks", help="File with the partner's public JWKS (uploaded; never fetched from a URL)."
)

IpAllowOption = typer.Option(
    None, "--ip-allow", help="CIDRs the partner's tokens may be used from (comma-separated)."
)


def read_jwks(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read a JWKS from {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("a JWKS is a JSON object with a 'keys' array")  # noqa: TRY004
    return data


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Partner name."),
    environment: Environment = typer.Option(..., "--environment", help="sandbox or production."),
    scopes: str = typer.Option(..., "--scopes", help="The most the partner may ever hold."),
    jwks: Path = JwksOption,
    ip_allow: str | None = IpAllowOption,
    as_json: bool = JsonOption,
) -> None:
    """Register a partner with its public keys."""
    with friendly_errors(), open_services() as svc:
        partner = svc.partners.create(
            operator(),
            name=name,
            environment=environment,
            scopes=parse_scopes(split_csv(scopes)),
            jwks=read_jwks(jwks),
            ip_allow_list=split_csv(ip_allow),
        )
        emit(partner.as_json(), as_json, lambda p: typer.echo(f"Created partner {p['id']}"))


@app.command("add-keys")
def add_keys(
    partner: str = typer.Option(..., "--partner", help="Partner id."),
    jwks: Path = JwksOption,
    as_json: bool = JsonOption,
) -> None:
    """Add keys (rotation: add the next key, then retire the old one)."""
    with friendly_errors(), open_services() as svc:
        kids = svc.partners.add_keys(operator(), partner, read_jwks(jwks))
        emit({"kids": kids}, as_json, lambda d: typer.echo("Added " + ", ".join(d["kids"])))


@app.command("retire-key")
def retire_key(
    partner: str = typer.Option(..., "--partner", help="Partner id."),
    kid: str = typer.Option(..., "--kid", help="Key id."),
    at: datetime | None = typer.Option(None, "--at", help="When (ISO 8601, UTC); default now."),
) -> None:
    """Stop accepting a key from a date on."""
    with friendly_errors(), open_services() as svc:
        when = (at.replace(tzinfo=at.tzinfo or UTC)) if at else svc.clock.now()
        svc.partners.retire_key(operator(), partner, kid, when)
        typer.echo(f"Key {kid} retires at {when.isoformat()}")


@app.command("authorize")
def authorize(
    partner: str = typer.Option(..., "--partner", help="Partner id."),
    dealer: str = typer.Option(..., "--dealer", help="The dealer giving its consent."),
    scopes: str = typer.Option("", "--scopes", help="Scopes the partner may use; empty withdraws."),
    as_json: bool = JsonOption,
) -> None:
    """Record a dealer's authorization of a partner."""
    with friendly_errors(), open_services() as svc:
        granted = svc.partners.authorize(
            operator(), partner, dealer, parse_scopes(split_csv(scopes))
        )
        emit(
            {"partner_id": partner, "dealer_id": dealer, "scopes": encode_scopes(granted)},
            as_json,
            lambda d: typer.echo(f"{d['dealer_id']} authorizes {d['partner_id']}: {d['scopes']}"),
        )


@app.command("disable")
def disable(partner: str = typer.Option(..., "--partner", help="Partner id.")) -> None:
    """Stop the partner: no new token, and every token it holds revoked at once."""
    with friendly_errors(), open_services() as svc:
        revoked = svc.partners.set_disabled(operator(), partner, True)
        typer.echo(f"Disabled {partner}; {revoked} token(s) revoked")


@app.command("enable")
def enable(partner: str = typer.Option(..., "--partner", help="Partner id.")) -> None:
    """Let a disabled partner obtain tokens again (revoked tokens stay revoked)."""
    with friendly_errors(), open_services() as svc:
        svc.partners.set_disabled(operator(), partner, False)
        typer.echo(f"Enabled {partner}")


@app.command("set-ip-allow-list")
def set_ip_allow_list(
    partner: str = typer.Option(..., "--partner", help="Partner id."),
    ip_allow: str = typer.Option("", "--ip-allow", help="CIDRs, comma-separated; empty clears."),
    as_json: bool = JsonOption,
) -> None:
    """Bind the partner's tokens to networks, checked on every request."""
    with friendly_errors(), open_services() as svc:
        updated = svc.partners.set_ip_allow_list(operator(), partner, split_csv(ip_allow))
        emit(
            updated.as_json(),
            as_json,
            lambda p: typer.echo(f"{p['id']} allow list: {', '.join(p['ip_allow_list']) or '-'}"),
        )

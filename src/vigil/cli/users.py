"""`vigil users …`: the people who sign in to grant apps access (S10)."""

from __future__ import annotations

import sys

import typer

from vigil.audit.actions import AuditAction
from vigil.cli.context import open_services
from vigil.cli.output import (
    JsonOption,
    emit,
    fail,
    friendly_errors,
    operator,
    record_read,
    split_csv,
    table,
)
from vigil.tenancy.users import Role

app = typer.Typer(help="Manage users who sign in to grant apps access.", no_args_is_help=True)


def _password(from_stdin: bool) -> str:
    """Never a command-line option: argv is visible to every local user and lands in history."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = typer.prompt("Password", hide_input=True)
    if typer.prompt("Repeat password", hide_input=True) != first:
        fail("The passwords differ.", 2)
    return str(first)


@app.command("create")
def create(
    dealer: str = typer.Option(..., "--dealer", help="Dealer id."),
    email: str = typer.Option(..., "--email", help="Sign-in e-mail."),
    role: Role = typer.Option(..., "--role", help="operator or site_user."),
    sites: str | None = typer.Option(None, "--sites", help="Site ids (site users), comma-sep."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create a user with an argon2id password."""
    with friendly_errors(), open_services() as svc:
        user = svc.users.create(
            operator(),
            dealer_id=dealer,
            email=email,
            role=role,
            password=_password(password_stdin),
            site_ids=split_csv(sites),
        )
        emit(user.as_json(), as_json, lambda u: typer.echo(f"Created user {u['id']} ({u['role']})"))


@app.command("list")
def list_users(
    dealer: str | None = typer.Option(None, "--dealer", help="Only this dealer's users."),
    as_json: bool = JsonOption,
) -> None:
    """List users (never their password hashes)."""
    with friendly_errors(), open_services() as svc:
        rows = [u.as_json() for u in svc.users.list(dealer)]
        record_read(svc, AuditAction.USERS_LISTED, "user", len(rows), dealer=dealer)
        columns = ["id", "dealer_id", "email", "role", "site_ids", "disabled_at"]
        emit(rows, as_json, lambda r: table(r, columns, "Users"))


@app.command("disable")
def disable(
    user_id: str = typer.Argument(..., help="User id."), as_json: bool = JsonOption
) -> None:
    """Disable a user: sign-in refused; their tokens, grants and portal sessions revoked now."""
    with friendly_errors(), open_services() as svc:
        counts = svc.users.set_disabled(operator(), user_id, True)
        emit(
            {"id": user_id, **counts},
            as_json,
            lambda d: typer.echo(
                f"Disabled {user_id}: {d['tokens_revoked']} token(s), {d['grants_revoked']} "
                f"grant(s), {d['sessions_revoked']} portal session(s) revoked"
            ),
        )


@app.command("enable")
def enable(user_id: str = typer.Argument(..., help="User id.")) -> None:
    """Let a disabled user sign in again (apps must ask for consent again)."""
    with friendly_errors(), open_services() as svc:
        svc.users.set_disabled(operator(), user_id, False)
        typer.echo(f"Enabled {user_id}")

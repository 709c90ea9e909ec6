"""Entry point for the `vigil` command."""

from __future__ import annotations

import os

import typer

from vigil.cli import (
    apps,
    audit,
    dealers,
    keys,
    kms,
    oauth,
    oauth_clients,
    partners,
    serve,
    users,
    webhooks,
)

cli = typer.Typer(
    name="vigil",
    help="Vigil: video-verified alarm monitoring, secure by construction.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cli.command("init")(serve.init)
cli.command("serve")(serve.serve)
cli.add_typer(dealers.app, name="dealers")
cli.add_typer(apps.app, name="apps")
cli.add_typer(keys.app, name="keys")
cli.add_typer(audit.app, name="audit")
cli.add_typer(users.app, name="users")
cli.add_typer(oauth_clients.app, name="oauth-clients")
cli.add_typer(oauth.app, name="oauth")
cli.add_typer(partners.app, name="partners")
cli.add_typer(webhooks.app, name="webhooks")
cli.command("worker")(webhooks.worker)
cli.add_typer(kms.app, name="kms")


def main() -> None:
    # Everything Vigil writes (database, WAL, keys, certificates, exports) is private to the
    # service account, whatever umask the shell had.
    os.umask(0o077)
    cli()

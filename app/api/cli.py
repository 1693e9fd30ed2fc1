"""flask commands for the API: create-api-key, revoke-api-key, list-api-keys,
purge-idempotency-keys."""

from __future__ import annotations

import click
from flask import Flask

from app.api import idempotency, keys
from app.models import ApiKeyScope
from app.payments.audit import Actor
from app.payments.errors import NotFound

CLI = Actor("system", "cli")


def init_app(app: Flask) -> None:
    @app.cli.command("create-api-key")
    @click.argument("name")
    @click.option(
        "--scope",
        type=click.Choice([s.value for s in ApiKeyScope]),
        default=ApiKeyScope.WRITE.value,
        show_default=True,
    )
    def create_api_key_command(name: str, scope: str) -> None:
        """Create an API key; the key is printed once and never stored."""
        key, token = keys.create_api_key(name, scope, CLI)
        click.echo(f"API key {key.prefix} ({key.scope}) for {key.name!r}:")
        click.echo(token)
        click.echo("Store it now: it is shown only this once (only its hash is kept).")

    @app.cli.command("revoke-api-key")
    @click.argument("prefix")
    def revoke_api_key_command(prefix: str) -> None:
        """Revoke an API key by its prefix (kassa_...)."""
        try:
            key = keys.revoke_api_key(prefix, CLI)
        except NotFound as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"API key {key.prefix} ({key.name!r}) is revoked.")

    @app.cli.command("list-api-keys")
    def list_api_keys_command() -> None:
        """List API keys: prefix, scope, name, last use, revoked."""
        for key in keys.list_api_keys():
            used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            click.echo(f"{key.prefix}  {key.scope:5}  {state:18}  last used {used}  {key.name}")

    @app.cli.command("purge-idempotency-keys")
    def purge_idempotency_keys_command() -> None:
        """Delete stored Idempotency-Key responses older than their replay window."""
        click.echo(f"Deleted {idempotency.purge_expired()} expired idempotency key(s).")

"""Kassa: a self-hosted, server-rendered checkout and payments app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent


class Kassa(Flask):
    """Flask, without an inspect call per hook and view on every request.

    Flask's ensure_sync asks inspect whether each before/after/teardown hook and the view
    is a coroutine function, every time it calls one (about a dozen per request here).
    The answer does not change: plain callables already seen are returned at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_callables: set[Any] = set()

    def ensure_sync(self, func: Any) -> Any:
        try:
            if func in self._plain_callables:
                return func
        except TypeError:  # unhashable: ask every time
            return super().ensure_sync(func)
        result = super().ensure_sync(func)
        if result is func and len(self._plain_callables) < 4096:
            self._plain_callables.add(func)
        return result


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the application: settings, extensions, gateways, blueprints, CLI, errors."""
    instance_path = (config or {}).get("INSTANCE_PATH") or ROOT / "instance"
    app = Kassa(
        __name__,
        instance_path=str(instance_path),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    from app.config import check_production, load_settings

    app.config.update(load_settings(Path(app.instance_path)))
    if config:
        app.config.update(config)
    check_production(app.config)
    from app import crypto

    crypto.init_app(app)  # the keys of the encrypted columns; refuses bad ones

    from app import db as db_setup
    from app import jobs, live
    from app.extensions import csrf, db, htmx, limiter, login_manager, migrate
    from app.gateways import registry

    db.init_app(app)
    db_setup.configure_engine(app)
    migrate.init_app(
        app,
        db,
        directory=str(ROOT / "migrations"),
        # Alembic takes a comparison function too (flask_migrate types it as bool only).
        compare_type=db_setup.compare_migration_type,  # type: ignore[arg-type]
        render_item=db_setup.render_migration_item,
    )
    csrf.init_app(app)
    login_manager.init_app(app)
    htmx.init_app(app)
    from app.ratelimit_store import default_storage_uri  # registers "database://"

    app.config["RATELIMIT_STORAGE_URI"] = default_storage_uri(
        app.config.get("RATELIMIT_STORAGE_URI"), app.config.get("REDIS_URL")
    )
    limiter.init_app(app)
    jobs.init_app(app)
    live.init_app(app)
    registry.init_app(app)

    from app import auth, cli, errors, i18n, security, templating
    from app.auth.routes import bp as auth_bp
    from app.checkout import bp as checkout_bp
    from app.dashboard import bp as dashboard_bp
    from app.sandbox import bp as sandbox_bp
    from app.webhooks import bp as webhooks_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(checkout_bp)
    from app.api import init_app as init_api  # the JSON door: /api/v1, /api/docs

    init_api(app)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(dashboard_bp)
    if "sandbox" in app.extensions["kassa_gateways"]:
        app.register_blueprint(sandbox_bp)
    auth.init_app(app)
    security.init_app(app)  # headers/CSP on every response, session lifetimes
    i18n.init_app(app)
    templating.init_app(app)
    errors.init_app(app)
    cli.init_app(app)
    from app import observability, serving

    observability.init_app(app)
    serving.init_app(app)  # outermost: a request waits in line before anything runs

    # Imported here: a module-level `logging` name would be shadowed by app/logging.py.
    import logging

    logging.getLogger("app").setLevel(app.config.get("LOG_LEVEL", "INFO"))
    return app

"""flask commands: seed-demo, create-merchant, reconcile, expire-checkouts, reprocess-webhook,
seed-bench."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app.extensions import db
from app.models import Product, Role, User

DEMO_EMAIL = "demo@kassa.localhost"

DEMO_PRODUCTS = [
    # sku, name, description, unit_amount (minor units), currency, stock (None = unlimited)
    ("tee-usd", "Kassa T-shirt", "Organic cotton, screen printed.", 2500, "USD", None),
    ("mug-eur", "Enamel mug", "Holds 350 ml of coffee; survives camping.", 1450, "EUR", None),
    ("notebook-inr", "Dot-grid notebook", "A5, 120 gsm, lay-flat binding.", 49900, "INR", None),
    ("tenugui-jpy", "Tenugui towel", "Hand-dyed cotton towel from Osaka.", 1800, "JPY", None),
    (
        "print-usd",
        "Signed print (limited)",
        "Numbered risograph print, 30 x 40 cm.",
        6000,
        "USD",
        5,
    ),
]


DEMO_PLANS = [
    # sku, name, description, amount (minor units), currency, interval, trial days
    (
        "coffee-club-eur",
        "Coffee club",
        "A bag of fresh beans every month.",
        1200,
        "EUR",
        "month",
        0,
    ),
    (
        "zine-inr",
        "Monthly zine",
        "A printed zine in the post; first week free.",
        19900,
        "INR",
        "month",
        7,
    ),
]


def seed_demo_plans() -> list[str]:
    """The demo store's subscription plans, if missing (`flask seed-demo` only: the tests'
    databases start without plans). Returns the SKUs created."""
    from app.models import Plan
    from app.payments import subscriptions
    from app.payments.audit import SYSTEM

    created = []
    for sku, name, description, amount, currency, interval, trial in DEMO_PLANS:
        if db.session.execute(select(Plan.id).where(Plan.sku == sku)).first():
            continue
        subscriptions.create_plan(
            sku=sku,
            name=name,
            description=description,
            amount=amount,
            currency=currency,
            interval=interval,
            trial_days=trial,
            actor=SYSTEM,
        )
        created.append(sku)
    return created


def seed_demo_data() -> tuple[list[str], str, str | None]:
    """Create the demo catalog and merchant if missing. Returns (created skus, email, password)."""
    created = []
    for sku, name, description, amount, currency, stock in DEMO_PRODUCTS:
        if db.session.execute(select(Product).where(Product.sku == sku)).scalar_one_or_none():
            continue
        db.session.add(
            Product(
                sku=sku,
                name=name,
                description=description,
                unit_amount=amount,
                currency=currency,
                stock=stock,
                active=True,
            )
        )
        created.append(sku)
    password_file = Path(current_app.instance_path) / "demo_merchant_password.txt"
    password = password_file.read_text().strip() if password_file.exists() else None
    user = db.session.execute(select(User).where(User.email == DEMO_EMAIL)).scalar_one_or_none()
    if user is None:
        password = secrets.token_urlsafe(12)
        db.session.add(
            User(
                email=DEMO_EMAIL,
                password_hash=generate_password_hash(password),
                role=Role.OWNER,
                session_token=secrets.token_hex(16),
            )
        )
        password_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password)
    db.session.commit()
    return created, DEMO_EMAIL, password


def create_merchant(email: str, role: str, password: str) -> User:
    email = email.strip().lower()
    user = db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()
    if user is None:
        user = User(
            email=email,
            role=role,
            password_hash=generate_password_hash(password),
            session_token=secrets.token_hex(16),
        )
        db.session.add(user)
    else:
        user.role = role
        user.password_hash = generate_password_hash(password)
        user.session_token = secrets.token_hex(16)  # a new password ends old sessions
    db.session.commit()
    return user


def init_app(app: Flask) -> None:
    init_reliability_commands(app)

    @app.cli.command("seed-demo")
    def seed_demo() -> None:
        """Create the demo catalog and a demo merchant (idempotent)."""
        created, email, password = seed_demo_data()
        plans = seed_demo_plans()
        click.echo(
            f"Demo catalog: {len(created)} product(s) added "
            f"({len(DEMO_PRODUCTS) - len(created)} already there); "
            f"{len(plans)} plan(s) added ({len(DEMO_PLANS) - len(plans)} already there)."
        )
        if password:
            click.echo(f"Demo merchant: {email} / password: {password}")
        else:
            click.echo(
                f"Demo merchant: {email} (password set earlier; reset it with "
                f"`flask --app wsgi create-merchant {email} --role owner`)"
            )

    @app.cli.command("create-merchant")
    @click.argument("email")
    @click.option(
        "--role", type=click.Choice([r.value for r in Role]), default="owner", show_default=True
    )
    @click.option("--password", help="Prompted for (hidden) when not given.")
    def create_merchant_command(email: str, role: str, password: str | None) -> None:
        """Create a merchant user, or reset an existing one's role and password."""
        if password is None:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        from app.auth.passwords import password_problem

        problem = password_problem(password, email=email)
        if problem:
            raise click.BadParameter(problem, param_hint="--password")
        user = create_merchant(email, role, password)
        click.echo(f"Merchant {user.email} ({user.role}) is ready.")

    @app.cli.command("generate-encryption-key")
    def generate_encryption_key_command() -> None:
        """Print a new Fernet key (for ENCRYPTION_KEYS) and a new BLIND_INDEX_KEY."""
        import secrets

        from cryptography.fernet import Fernet

        click.echo(f"ENCRYPTION_KEYS={Fernet.generate_key().decode()}")
        click.echo(f"BLIND_INDEX_KEY={secrets.token_urlsafe(48)}")

    @app.cli.command("rotate-encryption-key")
    @click.option("--batch-size", default=500, show_default=True, help="Rows per transaction.")
    def rotate_encryption_key_command(batch_size: int) -> None:
        """Re-encrypt every encrypted column with the first key of ENCRYPTION_KEYS.

        Put the new key first in ENCRYPTION_KEYS everywhere (keep the old ones after it),
        restart, run this; then the old keys can be dropped. Also recomputes the email
        hashes if BLIND_INDEX_KEY changed. Safe to interrupt and run again."""
        from app.crypto import count_encrypted_rows, keyring, rotate_all
        from app.extensions import db

        total = count_encrypted_rows(db.engine, db.metadata)
        with click.progressbar(length=total, label="Re-encrypting", show_pos=True) as bar:
            stats = rotate_all(
                db.engine, db.metadata, keyring(), batch_size=batch_size, progress=bar.update
            )
        click.echo(
            f"{stats.rows} rows read: {stats.reencrypted} value(s) re-encrypted with the "
            f"first key, {stats.rehashed} email hash(es) recomputed."
        )
        if stats.changed_meanwhile:
            click.echo(
                f"{stats.changed_meanwhile} row(s) changed while this ran and were left as "
                "the app wrote them; run the command again to check them."
            )
        else:
            click.echo(
                "Every encrypted value now uses the first key of ENCRYPTION_KEYS: the "
                "other keys can be removed."
            )

    @app.cli.command("seed-bench")
    @click.argument("count", type=click.IntRange(1, 50_000_000))
    @click.option("--batch", default=20_000, show_default=True, help="rows per COPY/commit")
    @click.option("--days", default=730, show_default=True, help="spread over this many days")
    def seed_bench_command(count: int, batch: int, days: int) -> None:
        """Append COUNT realistic orders and payments (benchmarks; PostgreSQL uses COPY)."""
        from app.seed import seed_bench

        seed_demo_data()
        with click.progressbar(
            length=count, label="Seeding payments", show_pos=True, show_eta=True
        ) as bar:
            seed_bench(count, batch=batch, days=days, progress=bar.update)
        click.echo(f"Added {count} orders and payments.")


def init_reliability_commands(app: Flask) -> None:
    @app.cli.command("reconcile")
    @click.option(
        "--grace",
        type=int,
        default=None,
        help="Skip records changed in the last N seconds (default: RECONCILE_GRACE_SECONDS).",
    )
    def reconcile_command(grace: int | None) -> None:
        """Bring open payments and pending refunds up to date from the gateways."""
        from app.payments.reconcile import reconcile

        if grace is not None:
            current_app.config["RECONCILE_GRACE_SECONDS"] = grace
        report = reconcile()
        for line in report.lines():
            click.echo(line)
        if report.errors:
            raise SystemExit(1)

    @app.cli.command("expire-checkouts")
    def expire_checkouts_command() -> None:
        """Expire every pending order whose checkout window has passed (stock is released),
        in batches; says how many are left when some could not be closed."""
        from app.payments.reconcile import expire_due

        run = expire_due()
        for line in run.lines():
            click.echo(line)
        if run.left:
            raise SystemExit(1)

    @app.cli.command("reprocess-webhook")
    @click.argument("event_row_id", type=int)
    def reprocess_webhook_command(event_row_id: int) -> None:
        """Process a failed or dead webhook event again (by its inbox row id)."""
        from app.payments.events import reprocess

        click.echo(f"Outcome: {reprocess(event_row_id)}")

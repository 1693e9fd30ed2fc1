"""customers, their gateway ids and saved payment methods; payments gain the customer, the
saved method charged, the consent to save, and the requires_action status

Revision ID: 5c1d7e2a9b34
Revises: 99f90d3538bc
Create Date: 2026-12-07 09:10:00

Emails, names, gateway customer ids and gateway tokens are Fernet tokens (app/crypto.py
EncryptedString); customers are found by email through email_hash (the keyed blind index).

"""

import sqlalchemy as sa
from alembic import op

revision = "5c1d7e2a9b34"
down_revision = "99f90d3538bc"
branch_labels = None
depends_on = None

_OLD_STATUSES = (
    "'created', 'processing', 'authorized', 'succeeded', 'partially_refunded', "
    "'refunded', 'failed', 'canceled', 'expired'"
)
_NEW_STATUSES = (
    "'created', 'processing', 'requires_action', 'authorized', 'succeeded', "
    "'partially_refunded', 'refunded', 'failed', 'canceled', 'expired'"
)


def upgrade():
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("public_id", name=op.f("uq_customers_public_id")),
        sa.UniqueConstraint("email_hash", name=op.f("uq_customers_email_hash")),
    )
    op.create_index(op.f("ix_customers_created_at"), "customers", ["created_at"], unique=False)
    op.create_table(
        "customer_gateway_ids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("gateway", sa.String(length=20), nullable=False),
        sa.Column("gateway_customer_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_gateway_ids_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_gateway_ids")),
        sa.UniqueConstraint(
            "customer_id", "gateway", name=op.f("uq_customer_gateway_ids_customer_id_gateway")
        ),
    )
    op.create_table(
        "saved_payment_methods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("gateway", sa.String(length=20), nullable=False),
        sa.Column("gateway_token", sa.Text(), nullable=False),
        sa.Column("brand", sa.String(length=40), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("wallet", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("source_payment_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detached_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'detached')", name=op.f("ck_saved_payment_methods_status_valid")
        ),
        sa.CheckConstraint(
            "exp_month IS NULL OR exp_month BETWEEN 1 AND 12",
            name=op.f("ck_saved_payment_methods_exp_month_range"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_saved_payment_methods_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_payment_id"],
            ["payments.id"],
            name=op.f("fk_saved_payment_methods_source_payment_id_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_payment_methods")),
        sa.UniqueConstraint("public_id", name=op.f("uq_saved_payment_methods_public_id")),
        sa.UniqueConstraint(
            "source_payment_id", name=op.f("uq_saved_payment_methods_source_payment_id")
        ),
    )
    op.create_index(
        op.f("ix_saved_payment_methods_customer_id"),
        "saved_payment_methods",
        ["customer_id"],
        unique=False,
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("saved_method_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "save_payment_method", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.create_index(batch_op.f("ix_payments_customer_id"), ["customer_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_payments_customer_id_customers"), "customers", ["customer_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_payments_saved_method_id_saved_payment_methods"),
            "saved_payment_methods",
            ["saved_method_id"],
            ["id"],
        )
        batch_op.drop_constraint(op.f("ck_payments_status_valid"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_payments_status_valid"), f"status IN ({_NEW_STATUSES})"
        )


def downgrade():
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payments_status_valid"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_payments_status_valid"), f"status IN ({_OLD_STATUSES})"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_payments_saved_method_id_saved_payment_methods"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_payments_customer_id_customers"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_payments_customer_id"))
        batch_op.drop_column("save_payment_method")
        batch_op.drop_column("saved_method_id")
        batch_op.drop_column("customer_id")
    op.drop_index(op.f("ix_saved_payment_methods_customer_id"), table_name="saved_payment_methods")
    op.drop_table("saved_payment_methods")
    op.drop_table("customer_gateway_ids")
    op.drop_index(op.f("ix_customers_created_at"), table_name="customers")
    op.drop_table("customers")

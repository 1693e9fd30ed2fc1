"""saved_payment_methods.account_email: a saved wallet's account (PayPal's payer email),
encrypted at rest like the customer's own email

Revision ID: 7a3e9c1b5d20
Revises: 2f48e122d0bc
Create Date: 2026-12-07 12:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "7a3e9c1b5d20"
down_revision = "2f48e122d0bc"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, no default: existing rows (cards) have no wallet account; an add-column
    # needs no table rebuild on SQLite.
    with op.batch_alter_table("saved_payment_methods") as batch_op:
        batch_op.add_column(sa.Column("account_email", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("saved_payment_methods") as batch_op:
        batch_op.drop_column("account_email")

"""orders.locale: the customer's language at checkout

The language the customer's pages were in when they ordered (app/i18n.py); receipts and
other emails to them are written in it. Existing orders keep NULL: DEFAULT_LOCALE.

Revision ID: 5d2c8e4a1b70
Revises: feb1ca03fa89
Create Date: 2026-12-07 09:50:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "5d2c8e4a1b70"
down_revision = "feb1ca03fa89"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("locale", sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("locale")

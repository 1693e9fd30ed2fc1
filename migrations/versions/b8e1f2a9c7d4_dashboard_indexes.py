"""dashboard overview: covering index for the per-day sums

Revision ID: b8e1f2a9c7d4
Revises: ec0d3b61ec30
Create Date: 2026-11-23 17:00:00

Measured with bench/dashboard.py at a million payments (app.dashboard.queries.overview,
90 days, ~120k rows): ~160 ms with a heap scan, ~80-100 ms as an index-only scan of this
index (on a loaded 2-CPU machine). On a big live table create it first by hand with
CREATE INDEX CONCURRENTLY (same name); this migration then has nothing to do.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "b8e1f2a9c7d4"
down_revision = "ec0d3b61ec30"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payments_created_overview",
            ["created_at"],
            unique=False,
            postgresql_include=["status", "gateway", "currency", "amount"],
            if_not_exists=True,
        )


def downgrade():
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_created_overview")

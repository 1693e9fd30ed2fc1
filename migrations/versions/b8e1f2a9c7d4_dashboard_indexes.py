"""dashboard indexes: e-mail prefix search and the overview's index-only scan

Revision ID: b8e1f2a9c7d4
Revises: ec0d3b61ec30
Create Date: 2026-11-23 17:00:00

Measured with bench/dashboard.py at a million payments: an e-mail search went from a
sequential scan (~0.6-1.4 s) to an index range scan, and the 90-day overview (grouped by
UTC day) from a heap scan plus an on-disk sort of ~120k rows (~300-400 ms) to a parallel
index-only scan with a hash aggregate (~70 ms), thanks to the covering index and the
expression statistics. On a big live table, create them by hand first
with CREATE INDEX CONCURRENTLY (same names); this migration then has nothing to do.
"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'b8e1f2a9c7d4'
down_revision = 'ec0d3b61ec30'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index('ix_payments_email_pattern', ['customer_email'], unique=False,
                              postgresql_ops={'customer_email': 'varchar_pattern_ops'},
                              if_not_exists=True)
        batch_op.create_index('ix_payments_created_overview', ['created_at'], unique=False,
                              postgresql_include=['status', 'currency', 'amount',
                                                  'amount_refunded'],
                              if_not_exists=True)
    if op.get_bind().dialect.name == 'postgresql':
        # Tells the planner how many distinct days there are, so the overview's GROUP BY
        # day hashes in memory instead of sorting ~100k rows to disk (~2x faster).
        op.execute("CREATE STATISTICS IF NOT EXISTS st_payments_created_day "
                   "ON (date_trunc('day', created_at AT TIME ZONE 'UTC')) FROM payments")
        op.execute("ANALYZE payments")


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP STATISTICS IF EXISTS st_payments_created_day")
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_created_overview')
        batch_op.drop_index('ix_payments_email_pattern')

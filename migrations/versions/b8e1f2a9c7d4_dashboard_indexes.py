"""dashboard indexes: e-mail prefix search and the overview's index-only scan

Revision ID: b8e1f2a9c7d4
Revises: ec0d3b61ec30
Create Date: 2026-11-23 17:00:00

Measured with bench/dashboard.py at a million payments: an e-mail search went from a
sequential scan (~0.6-1.4 s) to an index range scan, and the 90-day overview from a heap
scan of ~120k rows to an index-only scan. On a big live table, create them by hand first
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


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_created_overview')
        batch_op.drop_index('ix_payments_email_pattern')

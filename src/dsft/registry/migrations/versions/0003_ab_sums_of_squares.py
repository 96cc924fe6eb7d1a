"""ab stats: sums of squares of ratings and latencies (Welch's variances, the sequential test)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 00:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A test started before this revision has no squares: its means stay undecided (abtest._moments).
    with op.batch_alter_table('ab_stats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('latency_ms_sq_sum', sa.Double(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('rating_sq_sum', sa.Double(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('ab_stats', schema=None) as batch_op:
        batch_op.drop_column('rating_sq_sum')
        batch_op.drop_column('latency_ms_sq_sum')

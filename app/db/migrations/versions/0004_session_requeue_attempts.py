"""processing_sessions.requeue_attempts: how often the reconciler re-enqueued a photo

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('processing_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requeue_attempts', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('processing_sessions', schema=None) as batch_op:
        batch_op.drop_column('requeue_attempts')

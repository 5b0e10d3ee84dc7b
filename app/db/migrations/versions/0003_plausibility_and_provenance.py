"""plausibility reasons and model card provenance on each session

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Why a count may be wrong (app.ml.plausibility): [{"check", "message", "value", "limit"}, ...].
    op.add_column('processing_sessions', sa.Column('doubts', sa.JSON(), nullable=False, server_default='[]'))
    # Which model cards produced the counts: {"segmentation": id, "detection": id}.
    op.add_column('processing_sessions', sa.Column('model_cards', sa.JSON(), nullable=False, server_default='{}'))
    op.add_column('processing_sessions', sa.Column('region_mode', sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column('processing_sessions', 'region_mode')
    op.drop_column('processing_sessions', 'model_cards')
    op.drop_column('processing_sessions', 'doubts')

"""Recounts: processing_sessions.recount_model and stock_movements.recount_model

A photo keeps one counting session (recount_model '') and gets one recount session per model;
a counted region's batch keeps one `count` movement and gets one `recount` movement per model.
The single-column unique constraints become (photo_id, recount_model) and (batch_id, recount_model).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0001 left these constraints unnamed: PostgreSQL named them <table>_<column>_key; on SQLite the batch
# mode's naming convention names the reflected ones (Alembic's recipe for unnamed constraints).
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_OLD = {"processing_sessions": ("photo_id", "uq_session_photo_model"),
        "stock_movements": ("batch_id", "uq_movement_batch_model")}


def _old_name(table: str, column: str) -> str:
    if op.get_bind().dialect.name == "sqlite":
        return f"uq_{table}_{column}"
    return f"{table}_{column}_key"


def upgrade() -> None:
    for table, (column, new) in _OLD.items():
        with op.batch_alter_table(table, schema=None, naming_convention=_SQLITE_NAMES) as batch_op:
            batch_op.add_column(sa.Column('recount_model', sa.String(length=128), server_default='', nullable=False))
            batch_op.drop_constraint(_old_name(table, column), type_='unique')
            batch_op.create_unique_constraint(new, [column, 'recount_model'])


def downgrade() -> None:
    op.execute("DELETE FROM stock_movements WHERE recount_model <> ''")
    op.execute("DELETE FROM processing_sessions WHERE recount_model <> ''")
    for table, (column, new) in _OLD.items():
        with op.batch_alter_table(table, schema=None, naming_convention=_SQLITE_NAMES) as batch_op:
            batch_op.drop_constraint(new, type_='unique')
            batch_op.create_unique_constraint(_old_name(table, column), [column])
            batch_op.drop_column('recount_model')

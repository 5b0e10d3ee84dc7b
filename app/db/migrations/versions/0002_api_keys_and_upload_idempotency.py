"""API keys, photo tenants, upload idempotency and duplicate detection

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('prefix')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_tenant'), ['tenant'], unique=False)

    with op.batch_alter_table('photos', schema=None) as batch_op:
        # Photos taken in before keys existed belong to the default tenant.
        batch_op.add_column(sa.Column('tenant', sa.String(length=64), server_default='default', nullable=False))
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('request_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('content_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('duplicate_of', sa.Uuid(), nullable=True))
        batch_op.create_unique_constraint('uq_photo_tenant_idempotency_key', ['tenant', 'idempotency_key'])
        batch_op.create_index('ix_photos_tenant_created', ['tenant', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_photos_tenant_sha256', ['tenant', 'content_sha256'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.drop_index('ix_photos_tenant_sha256')
        batch_op.drop_index('ix_photos_tenant_created')
        batch_op.drop_constraint('uq_photo_tenant_idempotency_key', type_='unique')
        batch_op.drop_column('duplicate_of')
        batch_op.drop_column('content_sha256')
        batch_op.drop_column('request_sha256')
        batch_op.drop_column('idempotency_key')
        batch_op.drop_column('tenant')

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_tenant'))

    op.drop_table('api_keys')

"""Retraining: the review inbox, the model registry and the training lock.

Revision ID: 0004_retraining
Revises: 0003_wechat
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004_retraining'
down_revision = '0003_wechat'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('review_items',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('group_key', sa.String(length=255), nullable=False),
    sa.Column('predicted_intent', sa.String(length=64), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('second_intent', sa.String(length=64), nullable=True),
    sa.Column('second_confidence', sa.Float(), nullable=True),
    sa.Column('correction', JSON, nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('dedupe_key', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('intent', sa.String(length=64), nullable=True),
    sa.Column('entities', JSON, nullable=False),
    sa.Column('reviewed_by', sa.String(length=64), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("source IN ('fallback', 'unsure', 'deny', 'ticket_category', 'ticket_location')", name=op.f('ck_review_items_source')),
    sa.CheckConstraint("status IN ('new', 'accepted', 'rejected')", name=op.f('ck_review_items_status')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_review_items_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_items')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_review_items_dedupe_key'))
    )
    op.create_index(op.f('ix_review_items_status_group_key'), 'review_items', ['status', 'group_key'], unique=False)
    op.create_table('model_registry',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress', sa.Integer(), nullable=False),
    sa.Column('data_hash', sa.String(length=64), nullable=True),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('log_path', sa.Text(), nullable=True),
    sa.Column('metrics', JSON, nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('activated_by', sa.String(length=64), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'validating', 'training', 'evaluating', 'candidate', 'failed', 'active', 'retired')",
                       name=op.f('ck_model_registry_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_registry'))
    )
    op.create_table('training_lock',
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_training_lock'))
    )


def downgrade() -> None:
    op.drop_table('training_lock')
    op.drop_table('model_registry')
    op.drop_index(op.f('ix_review_items_status_group_key'), table_name='review_items')
    op.drop_table('review_items')

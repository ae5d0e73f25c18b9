"""常用语: reply templates admins keep per action (办结, 退单, 延期) and category ('' = every
category), which workers pick and edit on a ticket's action forms (bot/console/services/replies.py).

Revision ID: 0013_reply_templates
Revises: 0012_handoff
"""
import sqlalchemy as sa
from alembic import op

revision = '0013_reply_templates'
down_revision = '0012_handoff'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reply_templates',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('title', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("action IN ('resolve', 'return', 'extend')", name=op.f('ck_reply_templates_action')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reply_templates')),
    sa.UniqueConstraint('action', 'category', 'title', name=op.f('uq_reply_templates_action_category_title'))
    )


def downgrade() -> None:
    op.drop_table('reply_templates')

"""The phone number a resident gave the complaint form, held server-side until the ticket
is filed (bot/storage/pending_phones.py): the tracker store keeps it masked.

Revision ID: 0010_pending_phones
Revises: 0009_ticket_search
"""
import sqlalchemy as sa
from alembic import op

revision = '0010_pending_phones'
down_revision = '0009_ticket_search'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pending_phones',
    sa.Column('sender_id', sa.String(length=255), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('kept_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sender_id', name=op.f('pk_pending_phones'))
    )


def downgrade() -> None:
    op.drop_table('pending_phones')

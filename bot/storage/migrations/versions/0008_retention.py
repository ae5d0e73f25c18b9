"""Retention (bot/services/retention.py): the background jobs' lease and which tickets were
anonymised.

job_leases: one row per job — who runs it now (holder, until expires_at) and when it last
finished; anonymised_tickets: the tickets whose personal fields were removed.

Revision ID: 0008_retention
Revises: 0007_api_key_scope
"""
import sqlalchemy as sa
from alembic import op

revision = '0008_retention'
down_revision = '0007_api_key_scope'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_leases',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('holder', sa.String(length=96), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_job_leases'))
    )
    op.create_table('anonymised_tickets',
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('anonymised_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_anonymised_tickets_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('ticket_id', name=op.f('pk_anonymised_tickets'))
    )


def downgrade() -> None:
    op.drop_table('anonymised_tickets')
    op.drop_table('job_leases')

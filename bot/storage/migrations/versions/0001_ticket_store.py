"""Ticket store: queues, routing rules, tickets, reports, the append-only event log, counters.

The event log's append-only triggers are bot.storage.tables.TRIGGER_DDL (init_db also
re-applies them idempotently on every start).

Revision ID: 0001_ticket_store
Revises: None
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001_ticket_store'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('queues',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.CheckConstraint("kind IN ('department', 'street', 'dispatch')", name=op.f('ck_queues_kind')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_queues'))
    )
    op.create_table('routing_rules',
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('lead', sa.String(length=64), nullable=False),
    sa.Column('co', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('dispatch_class', sa.String(length=16), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('category', name=op.f('pk_routing_rules'))
    )
    op.create_table('ticket_counters',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_ticket_counters'))
    )
    op.create_table('tickets',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('location_text', sa.Text(), nullable=False),
    sa.Column('district_code', sa.String(length=12), nullable=True),
    sa.Column('street_code', sa.String(length=12), nullable=True),
    sa.Column('community_code', sa.String(length=12), nullable=True),
    sa.Column('lead_queue', sa.String(length=64), nullable=False),
    sa.Column('co_queues', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('dispatch_class', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('report_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets')),
    sa.UniqueConstraint('number', name=op.f('uq_tickets_number'))
    )
    op.create_index(op.f('ix_tickets_category_community_code_created_at'), 'tickets', ['category', 'community_code', 'created_at'], unique=False)
    op.create_index(op.f('ix_tickets_lead_queue_state'), 'tickets', ['lead_queue', 'state'], unique=False)
    op.create_table('ticket_reports',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('sender_id', sa.String(length=255), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('location_text', sa.Text(), nullable=False),
    sa.Column('photo', sa.Text(), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('confidential', sa.Boolean(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_reports_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_reports')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_ticket_reports_idempotency_key'))
    )
    op.create_index(op.f('ix_ticket_reports_sender_id'), 'ticket_reports', ['sender_id'], unique=False)
    op.create_index(op.f('ix_ticket_reports_ticket_id'), 'ticket_reports', ['ticket_id'], unique=False)
    op.create_table('ticket_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('from_state', sa.String(length=8), nullable=True),
    sa.Column('to_state', sa.String(length=8), nullable=True),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_events_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_events')),
    sa.UniqueConstraint('ticket_id', 'seq', name=op.f('uq_ticket_events_ticket_id_seq'))
    )
    from bot.storage.tables import TRIGGER_DDL

    for statement in TRIGGER_DDL.get(op.get_bind().dialect.name, ()):
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ticket_events_no_update_delete ON ticket_events")
        op.execute("DROP TRIGGER IF EXISTS ticket_events_no_truncate ON ticket_events")
        op.execute("DROP FUNCTION IF EXISTS ticket_events_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS ticket_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS ticket_events_no_delete")
    op.drop_table('ticket_events')
    op.drop_index(op.f('ix_ticket_reports_sender_id'), table_name='ticket_reports')
    op.drop_index(op.f('ix_ticket_reports_ticket_id'), table_name='ticket_reports')
    op.drop_table('ticket_reports')
    op.drop_index(op.f('ix_tickets_category_community_code_created_at'), table_name='tickets')
    op.drop_index(op.f('ix_tickets_lead_queue_state'), table_name='tickets')
    op.drop_table('tickets')
    op.drop_table('ticket_counters')
    op.drop_table('routing_rules')
    op.drop_table('queues')

"""A handler's question to a ticket's resident and the answer (bot/console/tables.py
ticket_questions; the events 询问居民 and 居民补充 live in ticket_events).

Revision ID: 0015_ticket_questions
Revises: 0014_handoff_delivery
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_ticket_questions'
down_revision = '0014_handoff_delivery'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ticket_questions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('report_id', sa.Integer(), nullable=False),
    sa.Column('sender_id', sa.String(length=255), nullable=False),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('asked_by', sa.Integer(), nullable=False),
    sa.Column('asked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answer_key', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_questions_ticket_id_tickets')),
    sa.ForeignKeyConstraint(['report_id'], ['ticket_reports.id'],
                            name=op.f('fk_ticket_questions_report_id_ticket_reports')),
    sa.ForeignKeyConstraint(['asked_by'], ['users.id'], name=op.f('fk_ticket_questions_asked_by_users')),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_ticket_questions_outbox_id_outbox')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_questions'))
    )
    op.create_index(op.f('ix_ticket_questions_ticket_id'), 'ticket_questions', ['ticket_id'], unique=False)
    op.create_index(op.f('ix_ticket_questions_sender_id_answered_at'), 'ticket_questions',
                    ['sender_id', 'answered_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_ticket_questions_sender_id_answered_at'), table_name='ticket_questions')
    op.drop_index(op.f('ix_ticket_questions_ticket_id'), table_name='ticket_questions')
    op.drop_table('ticket_questions')

"""Who saw a resident's personal data in the console (bot/console/privacy.py): one row per
revealed phone number or unmasked description, and per CSV export (with the reason when it
includes 保密 tickets).

personal_data_views is an audit trail like ticket_events: the database refuses edits
(triggers below, on both databases).

Revision ID: 0011_personal_data_views
Revises: 0010_pending_phones
"""
import sqlalchemy as sa
from alembic import op

revision = '0011_personal_data_views'
down_revision = '0010_pending_phones'
branch_labels = None
depends_on = None

MESSAGE = 'personal_data_views is append-only'
TRIGGERS = {
    'sqlite': (
        f"""CREATE TRIGGER personal_data_views_no_update BEFORE UPDATE ON personal_data_views
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",
        f"""CREATE TRIGGER personal_data_views_no_delete BEFORE DELETE ON personal_data_views
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",
    ),
    'postgresql': (
        f"""CREATE OR REPLACE FUNCTION personal_data_views_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$""",
        """CREATE TRIGGER personal_data_views_no_update_delete BEFORE UPDATE OR DELETE ON personal_data_views
        FOR EACH ROW EXECUTE FUNCTION personal_data_views_append_only()""",
        """CREATE TRIGGER personal_data_views_no_truncate BEFORE TRUNCATE ON personal_data_views
        FOR EACH STATEMENT EXECUTE FUNCTION personal_data_views_append_only()""",
    ),
}


def upgrade() -> None:
    op.create_table('personal_data_views',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('report_id', sa.Integer(), nullable=True),
    sa.Column('field', sa.String(length=16), nullable=False),
    sa.Column('export_table', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.CheckConstraint("field IN ('phone', 'description', 'export')", name=op.f('ck_personal_data_views_field')),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_personal_data_views_ticket_id_tickets')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_personal_data_views_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_personal_data_views'))
    )
    op.create_index(op.f('ix_personal_data_views_at'), 'personal_data_views', ['at'], unique=False)
    op.create_index(op.f('ix_personal_data_views_ticket_id'), 'personal_data_views', ['ticket_id'], unique=False)
    for statement in TRIGGERS.get(op.get_bind().dialect.name, ()):
        op.execute(statement)


def downgrade() -> None:
    op.drop_index(op.f('ix_personal_data_views_ticket_id'), table_name='personal_data_views')
    op.drop_index(op.f('ix_personal_data_views_at'), table_name='personal_data_views')
    op.drop_table('personal_data_views')  # its triggers go with it
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS personal_data_views_append_only()')

"""A conversation handed to a person (转人工, bot/storage/handoff.py): the hand-off, its events
and the live chat's messages; the console's new role 坐席 (agent) and users.languages.

users' role CHECK is widened. SQLite cannot alter a CHECK, and re-creating users (Alembic's
batch copy) would DROP TABLE users, whose implicit DELETE cascades to sessions and
user_queues. Widening a CHECK changes nothing on disk, so SQLite's documented procedure for
such changes is used instead: rewrite the table's SQL in sqlite_schema (writable_schema) and
bump schema_version, in the migration's transaction (sqlite.org/lang_altertable.html, "otheralter").

Revision ID: 0012_handoff
Revises: 0011_personal_data_views
"""
import sqlalchemy as sa
from alembic import op

revision = '0012_handoff'
down_revision = '0011_personal_data_views'
branch_labels = None
depends_on = None

OLD_ROLES = "role IN ('worker', 'department', 'dispatcher', 'admin')"
NEW_ROLES = "role IN ('worker', 'department', 'dispatcher', 'admin', 'agent')"
ONE_OPEN = sa.text("state IN ('left', 'offered', 'taken', 'waiting')")


def _sqlite_roles(old: str, new: str) -> None:
    bind = op.get_bind()
    version = bind.exec_driver_sql('PRAGMA schema_version').scalar()
    bind.exec_driver_sql('PRAGMA writable_schema = ON')
    changed = bind.exec_driver_sql("UPDATE sqlite_master SET sql = replace(sql, ?, ?) "
                                   "WHERE type = 'table' AND name = 'users'", (old, new)).rowcount
    bind.exec_driver_sql(f'PRAGMA schema_version = {int(version) + 1}')
    bind.exec_driver_sql('PRAGMA writable_schema = OFF')
    assert changed == 1, 'users table not found'


def upgrade() -> None:
    op.add_column('users', sa.Column('languages', sa.String(length=32), server_default='zh', nullable=False))
    if op.get_bind().dialect.name == 'sqlite':
        _sqlite_roles(OLD_ROLES, NEW_ROLES)
    else:
        op.drop_constraint(op.f('ck_users_role'), 'users', type_='check')
        op.create_check_constraint(op.f('ck_users_role'), 'users', NEW_ROLES)
    op.create_table('handoffs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('sender_id', sa.String(length=255), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('agent', sa.String(length=80), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_handoffs'))
    )
    op.create_index('ix_handoffs_one_open', 'handoffs', ['sender_id'], unique=True,
                    sqlite_where=ONE_OPEN, postgresql_where=ONE_OPEN)
    op.create_index(op.f('ix_handoffs_state_requested_at'), 'handoffs', ['state', 'requested_at'], unique=False)
    op.create_table('handoff_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('handoff_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['handoff_id'], ['handoffs.id'], name=op.f('fk_handoff_events_handoff_id_handoffs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_handoff_events'))
    )
    op.create_index(op.f('ix_handoff_events_handoff_id'), 'handoff_events', ['handoff_id'], unique=False)
    op.create_table('handoff_messages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('handoff_id', sa.Integer(), nullable=False),
    sa.Column('sender_id', sa.String(length=255), nullable=False),
    sa.Column('author', sa.String(length=80), nullable=False),
    sa.Column('outgoing', sa.Boolean(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['handoff_id'], ['handoffs.id'], name=op.f('fk_handoff_messages_handoff_id_handoffs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_handoff_messages'))
    )
    op.create_index(op.f('ix_handoff_messages_handoff_id'), 'handoff_messages', ['handoff_id'], unique=False)
    op.create_index(op.f('ix_handoff_messages_sender_id_outgoing_delivered_at'), 'handoff_messages',
                    ['sender_id', 'outgoing', 'delivered_at'], unique=False)


def downgrade() -> None:
    op.drop_table('handoff_messages')
    op.drop_table('handoff_events')
    op.drop_table('handoffs')
    op.execute("DELETE FROM users WHERE role = 'agent'")
    if op.get_bind().dialect.name == 'sqlite':
        _sqlite_roles(NEW_ROLES, OLD_ROLES)
        op.execute('ALTER TABLE users DROP COLUMN languages')  # SQLite 3.35+: no table copy
    else:
        op.drop_constraint(op.f('ck_users_role'), 'users', type_='check')
        op.create_check_constraint(op.f('ck_users_role'), 'users', OLD_ROLES)
        op.drop_column('users', 'languages')

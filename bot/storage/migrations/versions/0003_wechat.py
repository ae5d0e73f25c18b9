"""WeChat channel: dedupe with a processing lease, nonces, residents, the shared
access_token.

Before this migration init_db made the WeChat tables with create_all: such a database
is adopted — existing tables are kept (and wechat_inbound gains its lease columns),
missing ones created.

Revision ID: 0003_wechat
Revises: 0002_console
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003_wechat'
down_revision = '0002_console'
branch_labels = None
depends_on = None


def _existing() -> set:
    return set(sa.inspect(op.get_bind()).get_table_names())


def upgrade() -> None:
    existing = _existing()
    if 'wechat_inbound' not in existing:
        op.create_table('wechat_inbound',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('msg_key', sa.String(length=160), nullable=False),
        sa.Column('openid', sa.String(length=64), nullable=False),
        sa.Column('msg_type', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reply', sa.Text(), nullable=True),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('lease_owner', sa.String(length=96), nullable=True),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_wechat_inbound')),
        sa.UniqueConstraint('msg_key', name=op.f('uq_wechat_inbound_msg_key'))
        )
        with op.batch_alter_table('wechat_inbound', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_wechat_inbound_openid_received_at'), ['openid', 'received_at'], unique=False)
            batch_op.create_index(batch_op.f('ix_wechat_inbound_received_at'), ['received_at'], unique=False)
    else:  # made by create_all before the processing lease existed
        columns = {c['name'] for c in sa.inspect(op.get_bind()).get_columns('wechat_inbound')}
        with op.batch_alter_table('wechat_inbound', schema=None) as batch_op:
            if 'lease_owner' not in columns:
                batch_op.add_column(sa.Column('lease_owner', sa.String(length=96), nullable=True))
            if 'lease_until' not in columns:
                batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
            if 'attempts' not in columns:
                batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='1'))
        if 'attempts' not in columns:
            with op.batch_alter_table('wechat_inbound', schema=None) as batch_op:
                batch_op.alter_column('attempts', server_default=None)

    if 'wechat_nonces' not in existing:
        op.create_table('wechat_nonces',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('timestamp', sa.String(length=16), nullable=False),
        sa.Column('nonce', sa.String(length=64), nullable=False),
        sa.Column('body_sha256', sa.String(length=64), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_wechat_nonces')),
        sa.UniqueConstraint('timestamp', 'nonce', name=op.f('uq_wechat_nonces_timestamp_nonce'))
        )
        with op.batch_alter_table('wechat_nonces', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_wechat_nonces_seen_at'), ['seen_at'], unique=False)

    if 'wechat_residents' not in existing:
        op.create_table('wechat_residents',
        sa.Column('openid', sa.String(length=64), nullable=False),
        sa.Column('last_inbound_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('buttons', sa.JSON(none_as_null=True).with_variant(
            postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), 'postgresql'), nullable=True),
        sa.Column('scene_community', sa.String(length=16), nullable=True),
        sa.Column('scene_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('openid', name=op.f('pk_wechat_residents'))
        )

    if 'wechat_tokens' not in existing:
        op.create_table('wechat_tokens',
        sa.Column('appid', sa.String(length=64), nullable=False),
        sa.Column('access_token', sa.Text(), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('lease_owner', sa.String(length=64), nullable=True),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('refreshes', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('appid', name=op.f('pk_wechat_tokens'))
        )


def downgrade() -> None:
    op.drop_table('wechat_tokens')
    op.drop_table('wechat_residents')
    with op.batch_alter_table('wechat_nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wechat_nonces_seen_at'))
    op.drop_table('wechat_nonces')
    with op.batch_alter_table('wechat_inbound', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wechat_inbound_received_at'))
        batch_op.drop_index(batch_op.f('ix_wechat_inbound_openid_received_at'))
    op.drop_table('wechat_inbound')

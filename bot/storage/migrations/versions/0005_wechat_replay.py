"""WeChat: keep an async message until its answer is delivered, for a replay.

wechat_inbound.replay_body (nullable JSON): the decrypted message of an "async" row (the
bot was too slow for a passive reply, WeChat was answered "success"); a recovery sweep
redoes it when its worker died before sending the answer, and it is cleared as soon as
the answer is delivered or given up on.

Revision ID: 0005_wechat_replay
Revises: 0004_retraining
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0005_wechat_replay'
down_revision = '0004_retraining'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('wechat_inbound', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replay_body', sa.JSON(none_as_null=True).with_variant(
            postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), 'postgresql'), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('wechat_inbound', schema=None) as batch_op:
        batch_op.drop_column('replay_body')

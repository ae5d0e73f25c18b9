"""Open311 keys get a scope: what a keyed client may read beyond the public view.

api_keys.scope: 'public' (the default, and every key made before: the same masked output
as a client without a key) or 'personal' (descriptions and addresses as residents wrote
them, phone numbers included).

Revision ID: 0007_api_key_scope
Revises: 0006_holiday_calendar
"""
import sqlalchemy as sa
from alembic import op

revision = '0007_api_key_scope'
down_revision = '0006_holiday_calendar'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=16), nullable=False, server_default='public'))


def downgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('scope')

"""Hand-off messages on WeChat and at rest (bot/storage/handoff.py): why an outgoing message
could not be delivered yet (the 48-hour customer-service window, an API error; shown to the
agent), and the resident's words as typed, kept beside the masked text only while a phone
role may need them (cleared by the retention job after PENDING_PHONE_HOURS).

Revision ID: 0014_handoff_delivery
Revises: 0013_reply_templates
"""
import sqlalchemy as sa
from alembic import op

revision = '0014_handoff_delivery'
down_revision = '0013_reply_templates'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('handoff_messages') as batch:
        batch.add_column(sa.Column('delivery_note', sa.Text(), nullable=True))
        batch.add_column(sa.Column('typed', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('handoff_messages') as batch:
        batch.drop_column('typed')
        batch.drop_column('delivery_note')

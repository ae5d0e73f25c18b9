"""Holiday calendar the city keeps, and per-step time limits.

holiday_days / holiday_years: the schedule of each year the city entered (休 holidays and
班 make-up working days, with the notice they come from); it takes precedence over the
chinese_calendar library (bot/domain/workcal.py, bot/storage/holidays.py).
tickets.time_limits: the 签收/办结 limits a ticket was filed under; NULL for tickets filed
under the old single-limit rule, which keep their stored deadlines.

Revision ID: 0006_holiday_calendar
Revises: 0005_wechat_replay
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0006_holiday_calendar'
down_revision = '0005_wechat_replay'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('holiday_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=2), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('entered_by', sa.String(length=255), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('休', '班')", name=op.f('ck_holiday_days_kind')),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_holiday_days'))
    )
    with op.batch_alter_table('holiday_days', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_holiday_days_year'), ['year'], unique=False)
    op.create_table('holiday_years',
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('entered_by', sa.String(length=255), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('year', name=op.f('pk_holiday_years'))
    )
    # A ticket store made by create_all of today's tables (adopted, see engine._BASELINES) has it already.
    if 'time_limits' not in {c['name'] for c in sa.inspect(op.get_bind()).get_columns('tickets')}:
        with op.batch_alter_table('tickets', schema=None) as batch_op:
            batch_op.add_column(sa.Column('time_limits', JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_column('time_limits')
    op.drop_table('holiday_years')
    with op.batch_alter_table('holiday_days', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_holiday_days_year'))
    op.drop_table('holiday_days')

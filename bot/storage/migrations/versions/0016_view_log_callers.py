"""The personal-data view log (0011) records more: an admin's look-up and erasure of a phone
caller's data (caller_export, caller_erasure, with the caller's number masked in `caller`
and the admin's reason), and refused reveals (`denied`).

personal_data_views stays append-only: its triggers are kept on both databases. SQLite cannot
alter a CHECK: as in 0012, the table's SQL is rewritten in sqlite_schema (widening a CHECK
changes nothing on disk), and the columns are added in place (no table copy, so the triggers
stay).

Revision ID: 0016_view_log_callers
Revises: 0015_ticket_questions
"""
import sqlalchemy as sa
from alembic import op

revision = '0016_view_log_callers'
down_revision = '0015_ticket_questions'
branch_labels = None
depends_on = None

OLD_FIELDS = "field IN ('phone', 'description', 'export')"
NEW_FIELDS = "field IN ('phone', 'description', 'export', 'caller_export', 'caller_erasure')"
NEW_KINDS = "('caller_export', 'caller_erasure')"


def _sqlite_fields(old: str, new: str) -> None:
    bind = op.get_bind()
    version = bind.exec_driver_sql('PRAGMA schema_version').scalar()
    bind.exec_driver_sql('PRAGMA writable_schema = ON')
    changed = bind.exec_driver_sql("UPDATE sqlite_master SET sql = replace(sql, ?, ?) "
                                   "WHERE type = 'table' AND name = 'personal_data_views'", (old, new)).rowcount
    bind.exec_driver_sql(f'PRAGMA schema_version = {int(version) + 1}')
    bind.exec_driver_sql('PRAGMA writable_schema = OFF')
    assert changed == 1, 'personal_data_views table not found'


def upgrade() -> None:
    op.add_column('personal_data_views', sa.Column('denied', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('personal_data_views', sa.Column('caller', sa.String(length=32), nullable=True))
    if op.get_bind().dialect.name == 'sqlite':
        _sqlite_fields(OLD_FIELDS, NEW_FIELDS)
    else:
        op.drop_constraint(op.f('ck_personal_data_views_field'), 'personal_data_views', type_='check')
        op.create_check_constraint(op.f('ck_personal_data_views_field'), 'personal_data_views', NEW_FIELDS)


def downgrade() -> None:
    # the log refuses deletes: its guard is lifted for the rows the old schema cannot hold
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('DROP TRIGGER personal_data_views_no_delete')
        op.execute(f'DELETE FROM personal_data_views WHERE denied OR field IN {NEW_KINDS}')
        op.execute("""CREATE TRIGGER personal_data_views_no_delete BEFORE DELETE ON personal_data_views
        BEGIN SELECT RAISE(ABORT, 'personal_data_views is append-only'); END""")
        _sqlite_fields(NEW_FIELDS, OLD_FIELDS)
        op.execute('ALTER TABLE personal_data_views DROP COLUMN caller')  # SQLite 3.35+: no table copy
        op.execute('ALTER TABLE personal_data_views DROP COLUMN denied')
    else:
        op.execute('ALTER TABLE personal_data_views DISABLE TRIGGER personal_data_views_no_update_delete')
        op.execute(f'DELETE FROM personal_data_views WHERE denied OR field IN {NEW_KINDS}')
        op.execute('ALTER TABLE personal_data_views ENABLE TRIGGER personal_data_views_no_update_delete')
        op.drop_constraint(op.f('ck_personal_data_views_field'), 'personal_data_views', type_='check')
        op.create_check_constraint(op.f('ck_personal_data_views_field'), 'personal_data_views', OLD_FIELDS)
        op.drop_column('personal_data_views', 'caller')
        op.drop_column('personal_data_views', 'denied')

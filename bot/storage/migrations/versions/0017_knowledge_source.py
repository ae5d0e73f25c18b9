"""The review inbox's source `knowledge`: a 咨询 question whose answer an agent added to the
knowledge base (bot/console/handoff_knowledge.py), offered to the admins as a consult example.

review_items' source CHECK is widened. As in 0012: SQLite cannot alter a CHECK, and a
widened one changes nothing on disk, so the table's SQL is rewritten in sqlite_schema
(writable_schema, schema_version bumped) in the migration's transaction.

Revision ID: 0017_knowledge_source
Revises: 0016_view_log_callers
"""
from alembic import op

revision = '0017_knowledge_source'
down_revision = '0016_view_log_callers'
branch_labels = None
depends_on = None

OLD = "source IN ('fallback', 'unsure', 'deny', 'ticket_category', 'ticket_location')"
NEW = "source IN ('fallback', 'unsure', 'deny', 'ticket_category', 'ticket_location', 'knowledge')"


def _sqlite_check(old: str, new: str) -> None:
    bind = op.get_bind()
    version = bind.exec_driver_sql('PRAGMA schema_version').scalar()
    bind.exec_driver_sql('PRAGMA writable_schema = ON')
    changed = bind.exec_driver_sql("UPDATE sqlite_master SET sql = replace(sql, ?, ?) "
                                   "WHERE type = 'table' AND name = 'review_items'", (old, new)).rowcount
    bind.exec_driver_sql(f'PRAGMA schema_version = {int(version) + 1}')
    bind.exec_driver_sql('PRAGMA writable_schema = OFF')
    assert changed == 1, 'review_items table not found'


def _check(old: str, new: str) -> None:
    if op.get_bind().dialect.name == 'sqlite':
        _sqlite_check(old, new)
    else:
        op.drop_constraint(op.f('ck_review_items_source'), 'review_items', type_='check')
        op.create_check_constraint(op.f('ck_review_items_source'), 'review_items', new)


def upgrade() -> None:
    _check(OLD, NEW)


def downgrade() -> None:
    op.execute("DELETE FROM review_items WHERE source = 'knowledge'")
    _check(NEW, OLD)

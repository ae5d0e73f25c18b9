"""Word search over ticket descriptions (bot/storage/search.py): ticket_search holds each
ticket's jieba words; SQLite indexes them with an FTS5 table (external content, triggers keep
it in step), PostgreSQL with a GIN index on the text[]. Existing tickets are indexed here.

Revision ID: 0009_ticket_search
Revises: 0008_retention
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0009_ticket_search'
down_revision = '0008_retention'
branch_labels = None
depends_on = None

FTS = 'ticket_search_fts'
SQLITE_DDL = (
    # IF NOT EXISTS: a test database whose tables were dropped (drop_all) keeps this one.
    f"""CREATE VIRTUAL TABLE IF NOT EXISTS {FTS} USING fts5(words, content='ticket_search',
        content_rowid='ticket_id', tokenize='unicode61 remove_diacritics 0')""",
    f"""CREATE TRIGGER IF NOT EXISTS ticket_search_ai AFTER INSERT ON ticket_search BEGIN
        INSERT INTO {FTS}(rowid, words) VALUES (new.ticket_id, new.words); END""",
    f"""CREATE TRIGGER IF NOT EXISTS ticket_search_ad AFTER DELETE ON ticket_search BEGIN
        INSERT INTO {FTS}({FTS}, rowid, words) VALUES ('delete', old.ticket_id, old.words); END""",
    f"""CREATE TRIGGER IF NOT EXISTS ticket_search_au AFTER UPDATE ON ticket_search BEGIN
        INSERT INTO {FTS}({FTS}, rowid, words) VALUES ('delete', old.ticket_id, old.words);
        INSERT INTO {FTS}(rowid, words) VALUES (new.ticket_id, new.words); END""",
)


def upgrade() -> None:
    from bot.storage.search import index_description

    conn = op.get_bind()
    sqlite = conn.dialect.name == 'sqlite'
    words = sa.Text() if sqlite else postgresql.ARRAY(sa.Text())
    op.create_table('ticket_search',
    sa.Column('ticket_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('words', words, nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_search_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('ticket_id', name=op.f('pk_ticket_search'))
    )
    if sqlite:
        op.create_index(op.f('ix_ticket_search_words'), 'ticket_search', ['words'], sqlite_where=sa.text('0'))
        for statement in SQLITE_DDL:
            op.execute(statement)
        op.execute(f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')")  # a kept table forgets its old rows
    else:
        op.create_index(op.f('ix_ticket_search_words'), 'ticket_search', ['words'], postgresql_using='gin')
    # Backfill: every ticket filed so far, cut into words by the same code as new ones.
    rows = conn.execute(sa.text('SELECT id, description FROM tickets ORDER BY id'))
    for ticket_id, description in rows.fetchall():
        index_description(conn, ticket_id, description)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for name in ('ticket_search_ai', 'ticket_search_ad', 'ticket_search_au'):
            op.execute(f'DROP TRIGGER IF EXISTS {name}')
        op.execute(f'DROP TABLE IF EXISTS {FTS}')
    op.drop_index(op.f('ix_ticket_search_words'), table_name='ticket_search')
    op.drop_table('ticket_search')

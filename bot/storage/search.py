"""Word search over ticket descriptions, the same on SQLite and PostgreSQL.

The database cannot cut Chinese into words, so jieba does it here: ticket_search holds each
ticket's description as its words (jieba's search mode, so 不牵绳 is also found as 牵绳), written
with the ticket in the same transaction (SqlTicketRepository, retention's anonymising).
SQLite indexes them with an FTS5 table over ticket_search (external content, kept in step by
triggers); PostgreSQL keeps them as a text[] under a GIN index. A query is cut into words the
same way and every word must be one of the ticket's words: a query's text never reaches FTS5
or SQL as syntax (each word is a quoted FTS5 string / an array element).

Phone and ID numbers are masked before the cut and their remains dropped, so a phone number
is only ever found by the console's phone search, which checks who may (services.access).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

from sqlalchemy import Integer, Text, bindparam, column, insert, select, text, type_coerce, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from bot.storage.tables import ticket_reports, ticket_search, tickets
from bot.text import mask_personal_data

FTS_TABLE = "ticket_search_fts"  # SQLite only (migration 0009_ticket_search)
MAX_QUERY_WORDS = 12
MAX_QUERY_CHARS = 200

# What masking leaves of a phone or ID number (138****5678, 0471-****12): dropped whole.
_MASKED = re.compile(r"[0-9Xx\-]*\*+[0-9Xx]*")
# FTS5's unicode61 tokenizer keeps letters and numbers together and splits on anything else
# (_ included): words are cut the same way here, so both databases see the same words.
_SEPARATORS = re.compile(r"[\W_]+")
_lock = threading.Lock()
_ready = False


def _jieba():  # noqa: ANN202 - jieba has no types
    """jieba's shared tokenizer with our dictionaries (places, complaint words) loaded, as the
    NLU uses it: the index and the queries must be cut with the same dictionaries."""
    global _ready
    import jieba

    from bot.reference.dictionaries import load_into_jieba

    if not _ready:
        with _lock:
            if not _ready:
                load_into_jieba()
                _ready = True
    return jieba


def _normalise(words: Iterable[str]) -> list[str]:
    out: dict[str, None] = {}
    for word in words:
        for part in _SEPARATORS.split(word.lower()):
            if part:
                out[part] = None
    return list(out)


def description_words(description: str) -> list[str]:
    """The words a description is found by (search mode: long words and their parts)."""
    clean = _MASKED.sub(" ", mask_personal_data(description or ""))
    return _normalise(_jieba().cut_for_search(clean))


def query_words(query: str) -> list[str]:
    """The words of a search box's text (precise mode); every one must match."""
    clean = _MASKED.sub(" ", mask_personal_data(query[:MAX_QUERY_CHARS]))
    return _normalise(_jieba().cut(clean))[:MAX_QUERY_WORDS]


def index_description(conn: Connection, ticket_id: int, description: str) -> None:
    """Store (or replace) a ticket's words, in the caller's transaction."""
    words = description_words(description)
    changed = conn.execute(update(ticket_search).where(ticket_search.c.ticket_id == ticket_id).values(words=words))
    if changed.rowcount == 0:
        conn.execute(insert(ticket_search).values(ticket_id=ticket_id, words=words))


def index_ticket(conn: Connection, ticket_id: int) -> None:
    """Store (or replace) a ticket's words from its description and every report's, in the
    caller's transaction: what a resident merged in later (并单) is found too."""
    texts = [conn.execute(select(tickets.c.description).where(tickets.c.id == ticket_id)).scalar_one_or_none() or ""]
    texts += conn.execute(select(ticket_reports.c.description).where(ticket_reports.c.ticket_id == ticket_id)
                          .order_by(ticket_reports.c.id)).scalars().all()
    index_description(conn, ticket_id, "\n".join(t for t in dict.fromkeys(texts) if t))


def fts5_query(words: Iterable[str]) -> str:
    """An FTS5 MATCH string: each word a quoted string (no operator, column filter or prefix
    survives), all of them required."""
    return " AND ".join('"' + w.replace('"', '""') + '"' for w in words)


def matching_ids(dialect: str, words: list[str]) -> ColumnElement:
    """tickets.id IN (the tickets whose description has every word)."""
    if not words:
        return tickets.c.id.isnot(None)
    if dialect == "sqlite":
        fts = text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :fts_query")
        return tickets.c.id.in_(fts.bindparams(fts_query=fts5_query(words)).columns(column("rowid", Integer)))
    wanted = bindparam("search_words", list(words), type_=ARRAY(Text))
    return tickets.c.id.in_(
        select(ticket_search.c.ticket_id).where(type_coerce(ticket_search.c.words, ARRAY(Text)).contains(wanted))
    )

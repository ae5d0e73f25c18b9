"""A fresh ticket store at the newest schema, for fixtures (tests/conftest.py's `engine`, the
security fuzzers' `any_engine`)."""
from __future__ import annotations

from sqlalchemy.engine import Engine


def fresh_store(url: str) -> Engine:
    """The store at `url` with every feature's tables empty at the newest schema (PostgreSQL:
    the schema lives for the test session, so tables are dropped and made again)."""
    import bot.storage.all_tables  # noqa: F401  (every feature's tables, dropped too)
    from bot.storage.engine import init_db, make_engine
    from bot.storage.tables import metadata

    eng = make_engine(url)
    metadata.drop_all(eng)
    with eng.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    init_db(eng)
    return eng

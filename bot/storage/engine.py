"""Engine construction and schema creation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

from bot.storage.tables import TRIGGER_DDL, metadata

REPO_ROOT = Path(__file__).resolve().parents[2]
DATABASE_URL_ENV = "QC_DATABASE_URL"


def default_url() -> str:
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    var = REPO_ROOT / "var"
    var.mkdir(exist_ok=True)
    return f"sqlite:///{var / 'qingcheng.db'}"


def _json_dumps(value: Any) -> str:
    # Keep Chinese readable in the database.
    return json.dumps(value, ensure_ascii=False)


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create a 2.0-style engine; `kwargs` go to create_engine."""
    url = url or default_url()
    kwargs.setdefault("json_serializer", _json_dumps)
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, **kwargs.get("connect_args", {})}
        engine = create_engine(url, future=True, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, future=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN is ours (see _on_begin).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout = 5000")  # first: switching to WAL may wait for a lock
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Take the write lock up front: a deferred transaction that reads and then
        # writes fails with SQLITE_BUSY at once under concurrency instead of waiting.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def init_db(engine: Engine) -> None:
    """Create tables and triggers; safe to run on every start."""
    import bot.storage.all_tables  # noqa: F401  (registers every feature's tables)

    with engine.begin() as conn:
        metadata.create_all(conn)
        for statement in TRIGGER_DDL.get(engine.dialect.name, ()):
            conn.exec_driver_sql(statement)

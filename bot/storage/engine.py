"""Engine construction and schema creation."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

from bot.paths import VAR_DIR
from bot.storage.tables import TRIGGER_DDL, metadata

DATABASE_URL_ENV = "QC_DATABASE_URL"


def default_url() -> str:
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    from bot.security.private import private_dir

    var = private_dir(VAR_DIR)  # 0700: the stores and uploads below hold residents' data
    return f"sqlite:///{var / 'qingcheng.db'}"


def _json_dumps(value: Any) -> str:
    # Keep Chinese readable in the database.
    return json.dumps(value, ensure_ascii=False)


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create a 2.0-style engine; `kwargs` go to create_engine."""
    url = url or default_url()
    kwargs.setdefault("json_serializer", _json_dumps)
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        from bot.security.private import private_sqlite

        if make_url(url).database:
            private_sqlite(make_url(url).database)  # 0600 before SQLite creates it
        kwargs["connect_args"] = {"check_same_thread": False, **kwargs.get("connect_args", {})}
        engine = create_engine(url, future=True, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, future=True, **kwargs)


def _switch_to_wal(cursor: Any, tries: int = 40) -> None:
    """WAL, when the file is not in it yet. The switch needs the file to itself and fails at once
    with "database is locked" (no busy wait) while another connection is in a transaction — a
    reader connecting beside the WeChat channel's loops failed 1 run in 3. It is retried briefly,
    then left to the next connection: the mode is stored in the file, and this connection works
    in the file's current mode meanwhile."""
    for _ in range(tries):
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.05)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN is ours (see _on_begin).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout = 5000")  # first: switching to WAL may wait for a lock
        cursor.execute("PRAGMA foreign_keys = ON")
        _switch_to_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Take the write lock up front: a deferred transaction that reads and then
        # writes fails with SQLITE_BUSY at once under concurrency instead of waiting.
        # A read-only connection (the holiday calendar's read-through, which may run while
        # this process holds the write lock) reads a WAL snapshot instead.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("qc_read_only") else "BEGIN IMMEDIATE")


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Tables whose schema Alembic owns (bot/storage/migrations/versions). A feature's new
# tables are created by create_all until it adds a migration and lists them here.
MIGRATED_TABLES = frozenset(
    {
        # 0001 ticket store
        "queues", "routing_rules", "tickets", "ticket_reports", "ticket_events", "ticket_counters",
        # 0002 work console
        "users", "user_queues", "sessions", "outbox", "attachments", "api_keys", "feed_cursors",
        # 0003 WeChat channel
        "wechat_inbound", "wechat_nonces", "wechat_residents", "wechat_tokens",
        # 0004 retraining (review inbox, model registry, training lock)
        "review_items", "model_registry", "training_lock",
        # 0006 holiday calendar (tickets.time_limits too)
        "holiday_days", "holiday_years",
        # 0008 retention (job lease, anonymised tickets)
        "job_leases", "anonymised_tickets",
        # 0009 ticket search (SQLite: also the FTS5 table ticket_search_fts, not in the metadata)
        "ticket_search",
        # 0010 the phone a complaint form holds until filing
        "pending_phones",
        # 0011 personal-data view log
        "personal_data_views",
        # 0012 hand-off to a person (users.languages and the agent role too)
        "handoffs", "handoff_events", "handoff_messages",
        # 0013 reply templates (常用语)
        "reply_templates",
        # 0014 hand-off messages: delivery_note, typed
        # 0015 a handler's questions to residents (询问居民)
        "ticket_questions",
    }
)
# Databases made by create_all before Alembic: the newest revision whose tables are all there.
_BASELINES = (("0002_console", ("users", "outbox", "feed_cursors")), ("0001_ticket_store", ("tickets",)))


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest migration (`alembic upgrade head`), then triggers;
    safe to run on every start and from several processes."""
    from alembic import command
    from sqlalchemy import inspect

    import bot.storage.all_tables  # noqa: F401  (registers every feature's tables)

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # One migrator at a time (the web server and the action server start together);
            # SQLite's BEGIN IMMEDIATE already serialises.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242013)")
        tables = set(inspect(conn).get_table_names())
        if "alembic_version" in tables and "tickets" not in tables:
            # Tables dropped behind Alembic's back (tests drop_all): start over.
            conn.exec_driver_sql("DROP TABLE alembic_version")
            tables.discard("alembic_version")
        config = alembic_config(conn)
        if "alembic_version" not in tables:
            for revision, needed in _BASELINES:
                if all(t in tables for t in needed):
                    command.stamp(config, revision)  # made by create_all before migrations existed
                    break
        command.upgrade(config, "head")
        # Tables of features without a migration yet (see MIGRATED_TABLES).
        metadata.create_all(conn, tables=[t for t in metadata.sorted_tables if t.name not in MIGRATED_TABLES])
        for statement in TRIGGER_DDL.get(engine.dialect.name, ()):
            conn.exec_driver_sql(statement)

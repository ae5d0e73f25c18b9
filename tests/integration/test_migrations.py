"""Alembic owns the schema: init_db runs `upgrade head`; the migrated schema equals the
SQLAlchemy tables; databases made by create_all before Alembic are adopted (stamped)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint, insert, inspect, select
from sqlalchemy.engine import Engine

import bot.storage.all_tables  # noqa: F401
from bot.channels.wechat.store import wechat_inbound, wechat_residents
from bot.storage.engine import MIGRATED_TABLES, alembic_config, init_db, make_engine
from bot.storage.tables import TRIGGER_DDL, UtcDateTime, metadata, queues


@pytest.fixture(params=["sqlite", "postgresql"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'm.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    eng = make_engine(url)
    metadata.drop_all(eng)
    with eng.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    yield eng
    eng.dispose()


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def version(eng: Engine) -> str | None:
    with eng.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_diff(eng: Engine) -> list:
    with eng.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_object": lambda obj, name, type_, *_: type_ != "table" or name in MIGRATED_TABLES,
            },
        )
        return compare_metadata(ctx, metadata)


def test_init_db_upgrades_to_head_and_matches_the_tables(empty: Engine) -> None:
    init_db(empty)
    assert version(empty) == head() == "0017_knowledge_source"
    assert schema_diff(empty) == []
    assert set(inspect(empty).get_table_names()) >= MIGRATED_TABLES
    init_db(empty)  # idempotent
    assert version(empty) == head()


def test_every_ticket_and_console_table_is_migrated() -> None:
    ours = {"queues", "routing_rules", "tickets", "ticket_reports", "ticket_events", "ticket_counters",
            "users", "user_queues", "sessions", "outbox", "attachments", "api_keys", "feed_cursors",
            "wechat_inbound", "wechat_nonces", "wechat_residents", "wechat_tokens",
            "review_items", "model_registry", "training_lock", "holiday_days", "holiday_years",
            "job_leases", "anonymised_tickets", "ticket_search",
            "personal_data_views", "handoffs", "handoff_events", "handoff_messages", "reply_templates"}
    assert ours <= MIGRATED_TABLES <= set(metadata.tables)


def test_a_database_made_before_alembic_is_adopted(empty: Engine) -> None:
    # What init_db did before migrations existed: create_all of the ticket store + triggers.
    ticket_tables = [metadata.tables[n] for n in ("queues", "routing_rules", "tickets", "ticket_reports",
                                                   "ticket_events", "ticket_counters")]
    with empty.begin() as conn:
        metadata.create_all(conn, tables=ticket_tables)
        for statement in TRIGGER_DDL.get(empty.dialect.name, ()):
            conn.exec_driver_sql(statement)
        conn.execute(insert(queues).values(code="police_dog", name="养犬", kind="department"))
    init_db(empty)
    assert version(empty) == head()
    assert schema_diff(empty) == []
    with empty.connect() as conn:
        assert conn.execute(select(queues.c.code)).scalars().all() == ["police_dog"]  # data kept


def test_wechat_tables_made_by_create_all_before_0003_are_adopted(empty: Engine) -> None:
    """Before 0003, init_db made the WeChat tables with create_all (and wechat_inbound had
    no lease columns): upgrading keeps their rows and adds the columns."""
    old_inbound = Table(
        "wechat_inbound", MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("msg_key", String(160), nullable=False),
        Column("openid", String(64), nullable=False),
        Column("msg_type", String(32), nullable=False),
        Column("status", String(16), nullable=False),
        Column("reply", Text),
        Column("received_at", UtcDateTime, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
        Index("ix_wechat_inbound_openid_received_at", "openid", "received_at"),
        Index("ix_wechat_inbound_received_at", "received_at"),
        UniqueConstraint("msg_key", name="uq_wechat_inbound_msg_key"),
    )
    with empty.begin() as conn:
        command.upgrade(alembic_config(conn), "0002_console")
        old_inbound.create(conn)
        metadata.create_all(conn, tables=[wechat_residents])
        now = datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)
        conn.execute(insert(old_inbound).values(msg_key="msg:1", openid="oOld", msg_type="text", status="passive",
                                                reply="好的", received_at=now, updated_at=now))
        conn.execute(insert(wechat_residents).values(openid="oOld", scene_community="150102001001", updated_at=now))
    init_db(empty)
    assert version(empty) == head() and schema_diff(empty) == []
    with empty.connect() as conn:
        row = conn.execute(select(wechat_inbound)).mappings().one()
        assert (row["msg_key"], row["status"], row["reply"], row["attempts"], row["lease_until"]) == \
            ("msg:1", "passive", "好的", 1, None)
        assert conn.execute(select(wechat_residents.c.scene_community)).scalars().all() == ["150102001001"]


def test_downgrade_and_upgrade_again(empty: Engine) -> None:
    init_db(empty)
    with empty.begin() as conn:
        command.downgrade(alembic_config(conn), "0002_console")
    names = set(inspect(empty).get_table_names())
    assert "users" in names and not names & {"wechat_inbound", "wechat_nonces", "wechat_residents",
                                              "wechat_tokens"}
    with empty.begin() as conn:
        command.downgrade(alembic_config(conn), "0001_ticket_store")
    assert "users" not in inspect(empty).get_table_names()
    with empty.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert "tickets" not in inspect(empty).get_table_names()
    init_db(empty)
    assert version(empty) == head() and schema_diff(empty) == []


def test_0012_keeps_accounts_sessions_and_queues_and_admits_the_agent_role(empty: Engine) -> None:
    """0012 re-creates users on SQLite (a CHECK cannot be altered): the accounts, their
    sessions and queues survive (a DROP TABLE users would cascade to them), and 坐席 fits."""
    from bot.console.tables import sessions, user_queues, users

    now = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)
    old_users = Table("users", MetaData(), *(Column(c.name, c.type) for c in users.c if c.name != "languages"))
    with empty.begin() as conn:
        command.upgrade(alembic_config(conn), "0011_personal_data_views")
        conn.execute(insert(old_users).values(id=7, username="w1", display_name="张三", password_hash="x",
                                              role="worker", active=True, created_at=now))
        conn.execute(insert(user_queues).values(user_id=7, queue_code="police_dog"))
        conn.execute(insert(sessions).values(id="s" * 64, user_id=7, csrf_token="c", created_at=now, expires_at=now))
    init_db(empty)
    assert version(empty) == head() and schema_diff(empty) == []
    with empty.begin() as conn:
        assert conn.execute(select(users.c.username, users.c.role, users.c.languages)).all() == [("w1", "worker", "zh")]
        assert conn.execute(select(user_queues.c.queue_code)).scalars().all() == ["police_dog"]
        assert conn.execute(select(sessions.c.user_id)).scalars().all() == [7]
        conn.execute(insert(users).values(username="a1", display_name="坐席", password_hash="x", role="agent",
                                          active=True, created_at=now, languages="zh,mn"))
    with empty.begin() as conn:
        command.downgrade(alembic_config(conn), "0011_personal_data_views")
    with empty.connect() as conn:
        assert conn.execute(select(old_users.c.username)).scalars().all() == ["w1"]
        assert conn.execute(select(sessions.c.user_id)).scalars().all() == [7]


def test_0015_keeps_the_view_log_append_only_and_admits_callers_and_refusals(empty: Engine) -> None:
    """0015 widens personal_data_views' CHECK and adds `denied` and `caller`: the rows logged
    before stay (not denied), the new kinds fit, and the log still refuses edits and deletes."""
    from sqlalchemy import delete, update
    from sqlalchemy.exc import DatabaseError

    from bot.console.tables import personal_data_views as v
    from bot.console.tables import users

    now = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)
    old_log = Table("personal_data_views", MetaData(), *(Column(c.name, c.type) for c in v.c
                                                         if c.name not in ("denied", "caller")))
    who = {"user_id": 1, "username": "admin", "display_name": "管理员", "role": "admin"}
    with empty.begin() as conn:
        command.upgrade(alembic_config(conn), "0015_ticket_questions")
        conn.execute(insert(users).values(id=1, username="admin", display_name="管理员", password_hash="x",
                                          role="admin", active=True, created_at=now, languages="zh"))
        conn.execute(insert(old_log).values(at=now, field="export", export_table="tickets", **who))
    init_db(empty)
    assert version(empty) == head() and schema_diff(empty) == []
    with empty.begin() as conn:
        conn.execute(insert(v).values(at=now, field="caller_erasure", caller="047****5678", reason="本人来电要求",
                                      **who))
        conn.execute(insert(v).values(at=now, field="phone", denied=True, **who))
    with empty.connect() as conn:
        assert [tuple(r) for r in conn.execute(select(v.c.field, v.c.denied, v.c.caller, v.c.reason)
                                               .order_by(v.c.id))] == [
            ("export", False, None, None), ("caller_erasure", False, "047****5678", "本人来电要求"),
            ("phone", True, None, None)]
    for statement in (update(v).values(reason="改"), delete(v)):
        with pytest.raises(DatabaseError, match="append-only"), empty.begin() as conn:
            conn.execute(statement)
    with pytest.raises(DatabaseError), empty.begin() as conn:
        conn.execute(insert(v).values(at=now, field="caller_note", **who))
    with empty.begin() as conn:
        command.downgrade(alembic_config(conn), "0015_ticket_questions")
    with empty.connect() as conn:
        assert [tuple(r) for r in conn.execute(select(old_log.c.field))] == [("export",)]
    with pytest.raises(DatabaseError, match="append-only"), empty.begin() as conn:
        conn.execute(delete(old_log))

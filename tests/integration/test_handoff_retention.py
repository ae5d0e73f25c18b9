"""转人工 at rest, on SQLite and PostgreSQL with a controlled clock: the resident's words are
stored masked like the tracker (the words as typed beside them only when masking changed
them), and the retention job deletes hand-offs ended QC_RETENTION_TRANSCRIPT_DAYS ago with
their steps and messages (never an open one, whatever its age) and clears the words as typed
PENDING_PHONE_HOURS after they were written."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.domain.handoff import ServiceHours
from bot.services import handoff
from bot.services.retention import RetentionSettings, run_retention
from bot.storage.handoff import handoff_events, handoff_messages, handoffs
from bot.storage.uow import SqlAlchemyUnitOfWork

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=timezone.utc)
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
ALWAYS = ServiceHours(time(0, 0), time(23, 59, 59), timedelta(minutes=10))
SETTINGS = RetentionSettings(transcript_days=90, no_ticket_days=30, ticket_months=12)


def uow(engine: Engine) -> SqlAlchemyUnitOfWork:
    return SqlAlchemyUnitOfWork(engine)


def opened(engine: Engine, sender: str, at: datetime) -> int:
    h, _ = handoff.request(uow(engine), sender, "rest", "asked", at, ALWAYS)
    assert h.id is not None
    return h.id


def says(engine: Engine, sender: str, text: str, at: datetime) -> handoff.Gate:
    return handoff.resident_message(uow(engine), sender, text, at, ALWAYS)


def messages(engine: Engine) -> list[tuple]:
    m = handoff_messages
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(m.c.sender_id, m.c.text, m.c.typed)
                                               .where(m.c.outgoing.is_(False)).order_by(m.c.id)).all()]


def count(engine: Engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_words_are_kept_masked_and_handoffs_go_with_the_transcript_setting(engine: Engine, tmp_path: Path) -> None:
    # ended 91 days ago: goes, with its steps and messages
    old = opened(engine, "rest:old", NOW - 100 * DAY)
    says(engine, "rest:old", "我的电话13847112345，暖气不热", NOW - 100 * DAY)
    handoff.take(uow(engine), old, "user:a", "小王", NOW - 99 * DAY)
    handoff.hand_back(uow(engine), old, "user:a", NOW - 91 * DAY)
    # ended 89 days ago: stays (its words as typed go: older than 48 hours)
    recent = opened(engine, "rest:recent", NOW - 89 * DAY)
    says(engine, "rest:recent", "身份证110101199003071234", NOW - 89 * DAY)
    handoff.close(uow(engine), recent, "user:a", NOW - 89 * DAY)
    # a 留言 left 200 days ago and never dealt with: open, stays
    left = opened(engine, "rest:left", NOW - 200 * DAY)
    assert says(engine, "rest:left", "有人吗", NOW - 200 * DAY + 11 * MINUTE).held  # 留言 offered
    says(engine, "rest:left", "请回电13900001111", NOW - 200 * DAY + 12 * MINUTE)  # the 留言
    # open now: words typed 49 hours ago go, 47 hours ago stay
    waiting = opened(engine, "rest:now", NOW - 49 * HOUR)
    says(engine, "rest:now", "电话13700001234", NOW - 49 * HOUR)
    says(engine, "rest:now", "或者13600005678", NOW - 47 * HOUR)
    says(engine, "rest:now", "没有电话的话", NOW - 47 * HOUR)

    assert messages(engine) == [
        ("rest:old", "我的电话138****2345，暖气不热", "我的电话13847112345，暖气不热"),
        ("rest:recent", "身份证110***********1234", "身份证110101199003071234"),
        ("rest:left", "有人吗", None),
        ("rest:left", "请回电139****1111", "请回电13900001111"),
        ("rest:now", "电话137****1234", "电话13700001234"),
        ("rest:now", "或者136****5678", "或者13600005678"),
        ("rest:now", "没有电话的话", None),
    ]
    with engine.connect() as conn:
        old_messages = conn.execute(select(func.count()).select_from(handoff_messages)
                                    .where(handoff_messages.c.handoff_id == old)).scalar_one()
    assert old_messages == 3  # the resident's, 已接入, 交还
    events_before = count(engine, handoff_events)

    report = run_retention(engine, SETTINGS, [], tmp_path / "uploads", NOW, holder="web-1")

    assert (report.handoffs_deleted, report.handoff_messages_deleted, report.handoff_typed_cleared) == (1, 3, 3)
    with engine.connect() as conn:
        assert conn.execute(select(handoffs.c.id, handoffs.c.state).order_by(handoffs.c.id)).all() == [
            (recent, "closed"), (left, "left"), (waiting, "left")]  # nobody took it: 留言
        assert conn.execute(select(func.count()).select_from(handoff_events)
                            .where(handoff_events.c.handoff_id == old)).scalar_one() == 0
    assert count(engine, handoff_events) == events_before - 3  # 转人工, 接入, 交还
    assert messages(engine) == [
        ("rest:recent", "身份证110***********1234", None),
        ("rest:left", "有人吗", None),
        ("rest:left", "请回电139****1111", None),
        ("rest:now", "电话137****1234", None),
        ("rest:now", "或者136****5678", "或者13600005678"),
        ("rest:now", "没有电话的话", None),
    ]
    # two days later the one closed 89 days before the first run is due too
    later = run_retention(engine, SETTINGS, [], tmp_path / "uploads", NOW + 2 * DAY, holder="web-1")
    assert (later.handoffs_deleted, later.handoff_typed_cleared) == (1, 1)
    with engine.connect() as conn:
        assert conn.execute(select(handoffs.c.id).order_by(handoffs.c.id)).scalars().all() == [left, waiting]

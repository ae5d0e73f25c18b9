"""Ticket store on the real databases: SQLite (temp file) and PostgreSQL (session schema)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from bot.domain.model import ComplaintDraft, DispatchClass, Report, Route, TicketState
from bot.services.tickets import (
    FilingResult,
    file_complaint,
    sync_queues,
    sync_routing_rules,
    ticket_status,
    tickets_for_sender,
)
from bot.storage import engine as engine_module
from bot.storage.engine import init_db, make_engine
from bot.storage.repository import StaleTicket
from bot.storage.tables import (
    queues,
    routing_rules,
    ticket_counters,
    ticket_events,
    ticket_reports,
    tickets,
)
from bot.storage.uow import SqlAlchemyUnitOfWork

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)  # 10:00 in Hohhot
DAY = date(2026, 11, 24)
COMMUNITY = "150102001001"
THREADS = 8

T = TypeVar("T")


def draft(key: str = "k1", sender: str = "u1", category: str = "sanitation") -> ComplaintDraft:
    return ComplaintDraft(
        sender_id=sender,
        channel="wechat",
        category=category,
        description="垃圾桶满了三天没人清运",
        location_text="公主府社区3号楼",
        photo="media:abc",
        phone="13800000000",
        confidential=True,
        idempotency_key=key,
    )


def route(community: str | None = COMMUNITY) -> Route:
    return Route(
        lead="city_mgmt",
        co=("street_150102001",),
        district_code="150102",
        street_code="150102001",
        community_code=community,
        dispatch_class=DispatchClass.NORMAL,
        reason="环境卫生归城管",
    )


def rows(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]


def all_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    return {t.name: rows(engine, t) for t in (tickets, ticket_reports, ticket_events, ticket_counters)}


def event_rows(engine: Engine) -> list[tuple[Any, ...]]:
    return [
        (e["ticket_id"], e["seq"], e["kind"], e["from_state"], e["to_state"], e["actor"], e["reason"], e["data"], e["at"])
        for e in rows(engine, ticket_events)
    ]


def file(engine: Engine, d: ComplaintDraft, r: Route | None = None, at: datetime = NOW) -> FilingResult:
    return file_complaint(SqlAlchemyUnitOfWork(engine), d, r or route(), at)


def in_threads(n: int, work: Callable[[int], T]) -> list[T]:
    """Run work(0..n-1) in n threads released together; re-raise the first error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_new_ticket_rows(engine: Engine) -> None:
    result = file(engine, draft())
    assert result == FilingResult(
        number="QC-261124-0001",
        ticket_id=1,
        merged=False,
        replay=False,
        state=TicketState.DISPATCHED,
        lead_queue="city_mgmt",
        deadline_at=NOW + timedelta(hours=24),  # 签收: 1 working day
        finish_deadline_at=NOW + timedelta(days=7),  # 办结: 5 working days, Tuesday to Tuesday
    )
    assert rows(engine, tickets) == [
        {
            "id": 1,
            "number": "QC-261124-0001",
            "category": "sanitation",
            "description": "垃圾桶满了三天没人清运",
            "location_text": "公主府社区3号楼",
            "district_code": "150102",
            "street_code": "150102001",
            "community_code": COMMUNITY,
            "lead_queue": "city_mgmt",
            "co_queues": ["street_150102001"],
            "dispatch_class": "normal",
            "state": "派单",
            "report_count": 1,
            "created_at": NOW,
            "deadline_at": NOW + timedelta(hours=24),  # 签收: 1 working day
            "updated_at": NOW,
            "version": 1,
            "time_limits": {"sign": [24.0, True], "finish": [120.0, True]},
        }
    ]
    assert rows(engine, ticket_reports) == [
        {
            "id": 1,
            "ticket_id": 1,
            "sender_id": "u1",
            "channel": "wechat",
            "description": "垃圾桶满了三天没人清运",
            "location_text": "公主府社区3号楼",
            "photo": "media:abc",
            "phone": "13800000000",
            "confidential": True,
            "idempotency_key": "k1",
            "created_at": NOW,
        }
    ]
    assert event_rows(engine) == [
        (1, 1, "受理", None, "受理", "resident:u1", "", {"channel": "wechat"}, NOW),
        (1, 2, "派单", "受理", "派单", "system:router", "环境卫生归城管", {"lead": "city_mgmt", "co": ["street_150102001"]}, NOW),
    ]
    assert rows(engine, ticket_counters) == [{"day": DAY, "last": 1}]


def test_merge_rows(engine: Engine) -> None:
    file(engine, draft("k1"))
    later = NOW + timedelta(days=2)
    result = file(engine, draft("k2", sender="u2"), at=later)
    assert (result.number, result.ticket_id, result.merged, result.replay) == ("QC-261124-0001", 1, True, False)
    [ticket] = rows(engine, tickets)
    assert (ticket["report_count"], ticket["version"], ticket["updated_at"], ticket["state"]) == (2, 2, later, "派单")
    assert [(r["id"], r["ticket_id"], r["sender_id"], r["idempotency_key"]) for r in rows(engine, ticket_reports)] == [
        (1, 1, "u1", "k1"),
        (2, 1, "u2", "k2"),
    ]
    assert event_rows(engine)[2:] == [
        (1, 3, "并单", "派单", None, "resident:u2", "同一社区7日内同类诉求", {"idempotency_key": "k2", "channel": "wechat"}, later)
    ]
    assert rows(engine, ticket_counters) == [{"day": DAY, "last": 1}]  # a merge takes no number


def test_replay_writes_nothing(engine: Engine) -> None:
    first = file(engine, draft("k1"))
    file(engine, draft("k2", sender="u2"))  # merged into the same ticket
    before = all_rows(engine)
    again = file(engine, draft("k1"), at=NOW + timedelta(minutes=5))
    merged_again = file(engine, draft("k2", sender="u2"), at=NOW + timedelta(minutes=5))
    assert (again.number, again.merged, again.replay) == (first.number, False, True)
    assert (merged_again.number, merged_again.merged, merged_again.replay) == (first.number, True, True)
    assert all_rows(engine) == before


def test_events_are_append_only(engine: Engine) -> None:
    file(engine, draft())
    before = rows(engine, ticket_events)
    statements = [update(ticket_events).values(reason="篡改"), delete(ticket_events)]
    for statement in statements:
        with engine.connect() as conn:
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(statement)
            conn.rollback()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            with pytest.raises(DBAPIError, match="append-only"):
                conn.exec_driver_sql("TRUNCATE ticket_events")
    init_db(engine)  # idempotent: triggers are still in place afterwards
    with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(delete(ticket_events))
    assert rows(engine, ticket_events) == before


def test_concurrent_same_idempotency_key_files_once(engine: Engine) -> None:
    results = in_threads(THREADS, lambda i: file(engine, draft("same-key")))
    assert {r.number for r in results} == {"QC-261124-0001"}
    assert sorted(r.replay for r in results) == [False] + [True] * (THREADS - 1)
    assert len(rows(engine, tickets)) == 1
    assert len(rows(engine, ticket_reports)) == 1
    assert [e[1:3] for e in event_rows(engine)] == [(1, "受理"), (2, "派单")]
    assert rows(engine, ticket_counters) == [{"day": DAY, "last": 1}]  # losers gave their number back


def test_concurrent_numbers_are_consecutive_and_unique(engine: Engine) -> None:
    results = in_threads(THREADS, lambda i: file(engine, draft(f"k{i}", sender=f"u{i}"), route(None)))
    expected = [f"QC-261124-{n:04d}" for n in range(1, THREADS + 1)]
    assert sorted(r.number for r in results) == expected
    assert sorted(t["number"] for t in rows(engine, tickets)) == expected
    assert rows(engine, ticket_counters) == [{"day": DAY, "last": THREADS}]


def test_concurrent_merges_all_land_on_one_ticket(engine: Engine) -> None:
    file(engine, draft("first"))  # sender u1
    # other residents (report_count counts distinct residents: u1 again would not count)
    results = in_threads(THREADS, lambda i: file(engine, draft(f"k{i}", sender=f"t{i}")))
    assert {(r.ticket_id, r.merged) for r in results} == {(1, True)}
    [ticket] = rows(engine, tickets)
    assert (ticket["report_count"], ticket["version"]) == (THREADS + 1, THREADS + 1)
    assert [e[1] for e in event_rows(engine)] == list(range(1, THREADS + 3))


def test_next_number_per_day_and_rollback(engine: Engine) -> None:
    uow = SqlAlchemyUnitOfWork(engine)
    with uow:
        assert uow.tickets.next_number(DAY) == "QC-261124-0001"
        assert uow.tickets.next_number(DAY) == "QC-261124-0002"
        assert uow.tickets.next_number(date(2026, 11, 25)) == "QC-261125-0001"
        uow.commit()
    with uow:
        assert uow.tickets.next_number(DAY) == "QC-261124-0003"
        # no commit: rolled back, the number is reused
    with uow:
        assert uow.tickets.next_number(DAY) == "QC-261124-0003"


def test_transitions_round_trip_and_stale_save(engine: Engine) -> None:
    file(engine, draft())
    uow = SqlAlchemyUnitOfWork(engine)
    with uow:
        stale = uow.tickets.get(1)
    with uow:
        ticket = uow.tickets.get_by_number("QC-261124-0001")
        assert ticket is not None and ticket == stale
        ticket.apply("签收", "worker:7", "", NOW + timedelta(minutes=10))
        ticket.apply("办理", "worker:7", "", NOW + timedelta(minutes=20))
        ticket.apply("办结", "worker:7", "已清运", NOW + timedelta(hours=2), photos=["media:done"])
        uow.tickets.save_events(ticket)
        uow.commit()
    with uow:
        reloaded = uow.tickets.get(1)
    assert reloaded == ticket
    assert reloaded is not None and reloaded.state is TicketState.RESOLVED and reloaded.version == 2
    assert [e[1:6] for e in event_rows(engine)] == [
        (1, "受理", None, "受理", "resident:u1"),
        (2, "派单", "受理", "派单", "system:router"),
        (3, "签收", "派单", "签收", "worker:7"),
        (4, "办理", "签收", "办理", "worker:7"),
        (5, "办结", "办理", "办结", "worker:7"),
    ]
    assert event_rows(engine)[4][7] == {"photos": ["media:done"]}

    assert stale is not None
    stale.apply("签收", "worker:8", "", NOW + timedelta(minutes=11))
    with uow, pytest.raises(StaleTicket):
        uow.tickets.save_events(stale)
    assert len(rows(engine, ticket_events)) == 5


def test_no_merge_into_resolved_ticket(engine: Engine) -> None:
    file(engine, draft("k1"))
    uow = SqlAlchemyUnitOfWork(engine)
    with uow:
        ticket = uow.tickets.get(1)
        assert ticket is not None
        ticket.apply("签收", "worker:7", "", NOW)
        ticket.apply("办结", "worker:7", "已清运", NOW)
        uow.tickets.save_events(ticket)
        uow.commit()
    result = file(engine, draft("k2"), at=NOW + timedelta(hours=1))
    assert (result.ticket_id, result.merged, result.number) == (2, False, "QC-261124-0002")


def test_timestamps_are_aware_utc(engine: Engine) -> None:
    hohhot = timezone(timedelta(hours=8))
    file(engine, draft(), at=NOW.astimezone(hohhot))
    [ticket] = rows(engine, tickets)
    assert ticket["created_at"] == NOW and ticket["created_at"].tzinfo == timezone.utc
    uow = SqlAlchemyUnitOfWork(engine)
    with uow:
        loaded = uow.tickets.get(1)
        assert loaded is not None and loaded.events[0].at.tzinfo == timezone.utc
        assert uow.tickets.find_open_duplicate("sanitation", COMMUNITY, NOW.astimezone(hohhot)) is not None
        assert uow.tickets.find_open_duplicate("sanitation", COMMUNITY, NOW + timedelta(seconds=1)) is None
    with engine.connect() as conn, pytest.raises(StatementError, match="naive"):
        conn.execute(update(tickets).values(updated_at=datetime(2026, 1, 1)))


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    report = Report.from_draft(draft(), NOW)
    with SqlAlchemyUnitOfWork(engine) as uow, pytest.raises(IntegrityError):
        uow.tickets.add_report(999, report)


def test_ticket_status_sender_isolation(engine: Engine) -> None:
    uow = SqlAlchemyUnitOfWork(engine)
    sync_queues(uow, [{"code": "city_mgmt", "name": "城市管理局", "kind": "department"}])
    mine = file(engine, draft("a", sender="u1"), route(None))
    theirs = file(engine, draft("b", sender="u2"), route(None), at=NOW + timedelta(minutes=1))
    file(engine, draft("c", sender="u3"), route(None), at=NOW + timedelta(minutes=2))
    merged = file(engine, draft("d", sender="u3", category="noise"), at=NOW + timedelta(minutes=3))
    file(engine, draft("e", sender="u1", category="noise"), at=NOW + timedelta(minutes=4))  # merged into u3's

    status = ticket_status(uow, "qc 261124 0001", "u1")
    assert status is not None
    assert (status.number, status.category_name, status.state) == (mine.number, "环境卫生/垃圾", TicketState.DISPATCHED)
    assert (status.lead_queue, status.lead_queue_name, status.last_event_kind) == ("city_mgmt", "城市管理局", "派单")
    assert (status.created_at, status.deadline_at) == (NOW, NOW + timedelta(hours=24))
    assert ticket_status(uow, theirs.number, "u1") is None
    assert ticket_status(uow, mine.number, "u2") is None
    assert ticket_status(uow, merged.number, "u1") is not None  # u1 has a merged report on it

    assert [s.number for s in tickets_for_sender(uow, "u1")] == [merged.number, mine.number]
    assert [s.number for s in tickets_for_sender(uow, "u3", limit=1)] == [merged.number]
    assert tickets_for_sender(uow, "nobody") == []


def test_sync_queues_and_rules_upsert(engine: Engine) -> None:
    uow = SqlAlchemyUnitOfWork(engine)
    sync_queues(uow, [{"code": "heat_co", "name": "热力公司", "kind": "department"}])
    sync_queues(
        uow,
        [
            {"code": "heat_co", "name": "呼和浩特市热力集团", "kind": "department"},
            {"code": "dispatch_center", "name": "派单中心", "kind": "dispatch"},
        ],
    )
    assert rows(engine, queues) == [
        {"code": "dispatch_center", "name": "派单中心", "kind": "dispatch"},
        {"code": "heat_co", "name": "呼和浩特市热力集团", "kind": "department"},
    ]
    rule = {"category": "heating", "lead": "heat_co", "co": ["street_1"], "dispatch_class": "utilities"}
    sync_routing_rules(uow, [rule], now=NOW)
    sync_routing_rules(uow, [{**rule, "co": []}], now=NOW + timedelta(days=1))
    assert rows(engine, routing_rules) == [
        {"category": "heating", "lead": "heat_co", "co": [], "dispatch_class": "utilities", "updated_at": NOW + timedelta(days=1)}
    ]
    with engine.connect() as conn, pytest.raises(IntegrityError):
        conn.execute(insert(queues).values(code="x", name="x", kind="team"))


def test_sqlite_engine_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with eng.connect() as conn:
        pragmas = [conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in ("foreign_keys", "journal_mode", "busy_timeout")]
    eng.dispose()
    assert pragmas == [1, "wal", 5000]

    monkeypatch.setenv("QC_DATABASE_URL", "postgresql://example/qc")
    assert engine_module.default_url() == "postgresql://example/qc"
    monkeypatch.delenv("QC_DATABASE_URL")
    monkeypatch.setattr(engine_module, "VAR_DIR", tmp_path / "var")
    assert engine_module.default_url() == f"sqlite:///{tmp_path / 'var' / 'qingcheng.db'}"
    assert (tmp_path / "var").is_dir()


def test_a_repeat_by_the_same_resident_is_recorded_but_not_counted(engine: Engine) -> None:
    """共 N 位居民反映 counts residents: a second report by u1 is kept (report + 并单 event)
    but the count stays; one Open311 key counts as one resident whatever its account ids."""
    file(engine, draft("k1"))
    again = file(engine, draft("k2"), at=NOW + timedelta(hours=1))
    assert (again.merged, again.report_count) == (True, 1)
    other = file(engine, draft("k3", sender="u2"), at=NOW + timedelta(hours=2))
    assert other.report_count == 2
    api = [file(engine, draft(f"o{i}", sender=f"open311:市民App:acct{i}"), at=NOW + timedelta(hours=3))
           for i in range(3)]
    assert [r.report_count for r in api] == [3, 3, 3]
    assert len(rows(engine, ticket_reports)) == 6

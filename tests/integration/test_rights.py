"""A resident's rights over their data (bot/services/rights.py) on SQLite and PostgreSQL:
what 查看/导出我的信息 shows, and 删除我的信息 with exact rows after — an open ticket only they
reported withdrawn (撤单) and anonymised as the retention job does, a ticket others reported too
left open with a note and only their report anonymised, the held phone gone, the units told
through the outbox; a second erasure finds nothing; a phone caller's reports by number. And
the tracker stores drop the conversation when the erasing turn is saved."""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console.services.notices import process_feed
from bot.console.tables import outbox
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.handoff import ServiceHours
from bot.domain.model import ACCEPT, RESOLVE, ComplaintDraft, Route
from bot.services import handoff as handoff_svc
from bot.services.rights import (
    ERASED_NOTE,
    WITHDRAW_NOTE,
    Erased,
    HeldReport,
    erase_for_caller,
    erase_for_sender,
    held_for_caller,
    held_for_sender,
)
from bot.services.tickets import file_complaint
from bot.storage.handoff import handoff_messages, handoffs
from bot.storage.pending_phones import keep_phone, pending_phones
from bot.storage.retention import anonymised_tickets
from bot.storage.tables import ticket_events, ticket_reports, tickets
from bot.storage.uow import SqlAlchemyUnitOfWork
from bot.uploads import record_owner
from tests.console.helpers import route
from tests.stores import fresh_store

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=timezone.utc)
ALICE, BOB = "rest:alice", "oBobOpenid000000000000000001"
PHOTO = "d" * 32 + ".jpg"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'tickets.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    eng = fresh_store(url)
    yield eng
    eng.dispose()


def _route(how: str) -> Route:
    if how == "manual":
        return route(None)  # waits in the dispatch centre (受理)
    r = route()
    return r if how == "shared" else Route(r.lead, r.co, r.district_code, r.street_code, None, r.dispatch_class, r.reason)


def _file(engine: Engine, sender: str, key: str, at: datetime, *, how: str = "manual", channel: str = "rest",
          phone: str | None = "13847112345", photo: str | None = None, description: str = "楼下有人遛狗不牵绳") -> int:
    draft = ComplaintDraft(sender_id=sender, channel=channel, category="dog", description=description,
                           location_text="公主府社区3号楼", photo=photo, phone=phone, confidential=False,
                           idempotency_key=f"{sender}:{key}")
    return file_complaint(ConsoleUnitOfWork(engine), draft, _route(how), at).ticket_id


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> dict:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / PHOTO).write_bytes(b"jpeg")
    record_owner(uploads, PHOTO, ALICE)
    t_open = _file(engine, ALICE, "1", NOW - timedelta(days=3), photo=f"/widget/photo/{PHOTO}",
                   description="我是王小明，住金宇文苑3号楼2单元502室，楼下狗叫")
    t_closed = _file(engine, ALICE, "2", NOW - timedelta(days=2), how="dispatched", phone=None)
    with ConsoleUnitOfWork(engine) as uow:
        ticket = uow.tickets.get(t_closed)
        ticket.apply(ACCEPT, "user:grid", "", NOW - timedelta(days=2))
        ticket.apply(RESOLVE, "user:grid", "已约谈犬主", NOW - timedelta(days=1))
        uow.tickets.save_events(ticket)
        uow.commit()
    t_shared = _file(engine, BOB, "1", NOW - timedelta(days=1), how="shared", phone="13900001111")
    assert _file(engine, ALICE, "3", NOW - timedelta(hours=5), how="shared", phone="13847112345") == t_shared
    with engine.begin() as conn:
        keep_phone(conn, ALICE, "13811112222", NOW - timedelta(hours=1))
    # hand-offs to a person: Alice's ended (her messages kept as typed), Bob's still waiting
    hours, t = ServiceHours(), NOW - timedelta(hours=3)
    h, _ = handoff_svc.request(SqlAlchemyUnitOfWork(engine), ALICE, "rest", "asked", t, hours)
    handoff_svc.resident_message(SqlAlchemyUnitOfWork(engine), ALICE, "我电话13847112345，住502室", t, hours)
    handoff_svc.take(SqlAlchemyUnitOfWork(engine), h.id, "user:agent1", "小王", t)
    handoff_svc.say(SqlAlchemyUnitOfWork(engine), h.id, "user:agent1", "好的王先生", t)
    handoff_svc.hand_back(SqlAlchemyUnitOfWork(engine), h.id, "user:agent1", t)
    b, _ = handoff_svc.request(SqlAlchemyUnitOfWork(engine), BOB, "wechat", "asked", t, hours)
    handoff_svc.resident_message(SqlAlchemyUnitOfWork(engine), BOB, "我是老李", t, hours)
    process_feed(ConsoleUnitOfWork(engine), NOW)  # the feed starts here: only the erasure's notices follow
    return {"open": t_open, "closed": t_closed, "shared": t_shared, "uploads": uploads, "handoff": h.id,
            "bob_handoff": b.id}


def _handoffs(engine: Engine) -> tuple[list[tuple], list[tuple]]:
    with engine.connect() as conn:
        return ([tuple(r) for r in conn.execute(select(handoffs.c.id, handoffs.c.sender_id, handoffs.c.state)
                                                .order_by(handoffs.c.id))],
                [tuple(r) for r in conn.execute(select(handoff_messages.c.handoff_id, handoff_messages.c.sender_id,
                                                       handoff_messages.c.author, handoff_messages.c.text)
                                                .order_by(handoff_messages.c.id))])


def _reports(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(ticket_reports.c.ticket_id, ticket_reports.c.sender_id, ticket_reports.c.phone,
                   ticket_reports.c.photo, ticket_reports.c.description).order_by(ticket_reports.c.id))]


def test_export_shows_this_identity_only(engine: Engine, world: dict) -> None:
    held = held_for_sender(SqlAlchemyUnitOfWork(engine), ALICE, NOW)
    assert [(r.number, r.state, r.phone, r.photo, r.description) for r in held.reports] == [
        ("QC-270226-0001", "受理", "138****2345", True, "我是王小明，住金宇文苑3号楼2单元502室，楼下狗叫"),
        ("QC-270227-0001", "办结", "", False, "楼下有人遛狗不牵绳"),
        ("QC-270228-0001", "派单", "138****2345", False, "楼下有人遛狗不牵绳"),
    ]
    assert isinstance(held.reports[0], HeldReport) and held.reports[0].category_name == "文明养犬"
    assert (held.tickets, held.open_tickets, held.held_phone) == (3, 2, "138****2222")
    # 我电话…, 工作人员小王已接入…, 好的王先生, 人工服务已结束…
    assert held.handoff_messages == 4
    assert held_for_sender(SqlAlchemyUnitOfWork(engine), BOB, NOW).handoff_messages == 1
    # the bare REST id, a phone number or a ticket number is nobody's identity
    for claim in ("alice", "13847112345", held.reports[0].number):
        assert held_for_sender(SqlAlchemyUnitOfWork(engine), claim, NOW).reports == []


def test_erasure_closes_anonymises_and_tells_the_units(engine: Engine, world: dict) -> None:
    before_bob = [r for r in _reports(engine) if r[1] == BOB]
    erased = erase_for_sender(SqlAlchemyUnitOfWork(engine), ALICE, world["uploads"], NOW)
    assert erased == Erased(tickets=3, closed=1, noted=1, reports=3, phones=2, photos_deleted=1, held_phone=1,
                            handoff_messages=4)
    # her hand-off's messages are gone and it no longer names her; Bob's waiting one is untouched
    h, b = world["handoff"], world["bob_handoff"]
    assert _handoffs(engine) == ([(h, f"anon:handoff:{h}", "returned"), (b, BOB, "waiting")],
                                 [(b, BOB, "resident", "我是老李")])

    t_open, t_closed, t_shared = world["open"], world["closed"], world["shared"]
    assert _reports(engine) == [
        (t_open, f"anon:{t_open}:1", None, None, "我是***，住金宇文苑*号楼*单元*室，楼下狗叫"),
        (t_closed, f"anon:{t_closed}:1", None, None, "楼下有人遛狗不牵绳"),
        *before_bob,
        (t_shared, f"anon:{t_shared}:2", None, None, "楼下有人遛狗不牵绳"),
    ]
    with engine.connect() as conn:
        states = dict(conn.execute(select(tickets.c.id, tickets.c.state)).all())
        last = {tid: tuple(conn.execute(
            select(ticket_events.c.kind, ticket_events.c.from_state, ticket_events.c.to_state,
                   ticket_events.c.actor, ticket_events.c.reason)
            .where(ticket_events.c.ticket_id == tid).order_by(ticket_events.c.seq.desc()).limit(1)).one())
            for tid in (t_open, t_closed, t_shared)}
        anonymised = sorted(conn.execute(select(anonymised_tickets.c.ticket_id)).scalars())
        held = conn.execute(select(pending_phones.c.sender_id)).all()
        description = conn.execute(select(tickets.c.description).where(tickets.c.id == t_open)).scalar_one()
    assert states == {t_open: "已撤单", t_closed: "办结", t_shared: "派单"}
    assert last == {
        t_open: ("撤单", "受理", "已撤单", "resident:erased", WITHDRAW_NOTE),
        t_closed: ("办结", "签收", "办结", "user:grid", "已约谈犬主"),
        t_shared: ("信息删除", "派单", None, "resident:erased", ERASED_NOTE),
    }
    assert description == "我是***，住金宇文苑*号楼*单元*室，楼下狗叫"
    assert anonymised == sorted([t_open, t_closed])
    assert held == []
    assert not (world["uploads"] / PHOTO).exists()

    assert process_feed(ConsoleUnitOfWork(engine), NOW) == 4
    with engine.connect() as conn:
        notices = sorted(tuple(r) for r in conn.execute(
            select(outbox.c.ticket_id, outbox.c.recipient, outbox.c.event).where(outbox.c.kind == "worker")
            .where(outbox.c.event.in_(("withdrawn", "reporter_erased")))))
    assert notices == sorted([
        (t_open, "dispatch_center", "withdrawn"),
        (t_shared, "police_dog", "reporter_erased"), (t_shared, "urban_management", "reporter_erased"),
        (t_shared, f"street:{route().street_code}", "reporter_erased"),
    ])

    # asked again (a retry, a second yes): nothing is left to erase
    assert erase_for_sender(SqlAlchemyUnitOfWork(engine), ALICE, world["uploads"], NOW) == Erased()
    assert held_for_sender(SqlAlchemyUnitOfWork(engine), ALICE, NOW).reports == []


def test_a_phone_caller_by_the_full_number(engine: Engine, world: dict, tmp_path: Path) -> None:
    caller = _file(engine, "phone:tok0000000000000001", "1", NOW - timedelta(hours=2), channel="phone",
                   phone="04716925678")
    # the same number given in a chat is not a phone caller's report
    assert [r.number for r in held_for_caller(SqlAlchemyUnitOfWork(engine), "13847112345").reports] == []
    [held] = held_for_caller(SqlAlchemyUnitOfWork(engine), "04716925678").reports
    assert (held.state, held.phone) == ("受理", "047****5678")
    erased = erase_for_caller(SqlAlchemyUnitOfWork(engine), "04716925678", "user:1", world["uploads"], NOW)
    assert erased == Erased(tickets=1, closed=1, reports=1, phones=1)
    with engine.connect() as conn:
        row = conn.execute(select(ticket_reports.c.sender_id, ticket_reports.c.phone)
                           .where(ticket_reports.c.ticket_id == caller)).one()
        actor = conn.execute(select(ticket_events.c.actor).where(ticket_events.c.ticket_id == caller)
                             .order_by(ticket_events.c.seq.desc()).limit(1)).scalar_one()
    assert (tuple(row), actor) == ((f"anon:{caller}:1", None), "user:1")
    assert held_for_sender(SqlAlchemyUnitOfWork(engine), ALICE, NOW).tickets == 3  # the chat resident untouched


# --- the tracker stores drop the conversation on the erasing turn ----------------------------

@pytest.fixture(scope="module")
def domain():
    from rasa.shared.core.domain import Domain

    return Domain.load(str(Path(__file__).resolve().parents[2] / "domain.yml"))


def test_the_sqlite_tracker_store_drops_the_erased_conversation(domain, tmp_path: Path) -> None:
    from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.rasa_ext.sqlite_trackerstore import SQLiteTrackerStore

    store = SQLiteTrackerStore(domain, db=str(tmp_path / "trackers-5005.db"))
    try:
        for sender in (ALICE, BOB):
            tracker = DialogueStateTracker.from_events(sender, [UserUttered("你好"), ActionExecuted("action_listen")],
                                                       domain.slots)
            asyncio.run(store.save(tracker))
        tracker = asyncio.run(store.retrieve(ALICE))
        tracker.update(UserUttered("删除我的信息"))
        tracker.update(ActionExecuted("action_erase_my_data"))
        asyncio.run(store.save(tracker))  # not yet erased: kept
        assert len(asyncio.run(store.retrieve(ALICE)).events) == 4
        tracker = asyncio.run(store.retrieve(ALICE))
        tracker.update(SlotSet("erased_at", NOW.timestamp()))
        tracker.update(ActionExecuted("action_listen"))
        asyncio.run(store.save(tracker))
        assert asyncio.run(store.retrieve(ALICE)) is None
        assert [e.text for e in asyncio.run(store.retrieve(BOB)).events if isinstance(e, UserUttered)] == ["你好"]
        with closing(sqlite3.connect(str(tmp_path / "trackers-5005.db"))) as c:
            assert c.execute("SELECT count(*) FROM qc_tracker_events WHERE sender_id = ?", (ALICE,)).fetchone() == (0,)
            assert c.execute("SELECT count(*) FROM qc_conversations WHERE sender_id = ?", (ALICE,)).fetchone() == (0,)
    finally:
        store.close()

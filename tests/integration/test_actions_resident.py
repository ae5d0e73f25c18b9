"""Residents hear more and can add more (issue 18), on a real ticket store (SQLite file and
PostgreSQL schema): a granted 延期 and a 改派 reach the resident through the outbox and
action_ticket_update (the new date; the new unit by its public name), and a resident adds to
(补充) or withdraws (撤单) their own open ticket from the chat — exact events, exact replies,
a retried message changing nothing twice, the units told through the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select
from sqlalchemy.engine import Engine

from actions.followup import ActionTicketUpdate
from actions.resident import ActionAddToTicket, ActionWithdrawTicket
from bot.console import services as svc
from bot.console.tables import outbox
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.clock import SHANGHAI
from bot.domain.model import Report
from bot.ops import runtime
from bot.services.resident import split_request
from bot.storage.tables import ticket_events, tickets
from tests.console.helpers import STREET, file, make_users

REPO = Path(__file__).resolve().parents[2]
DOMAIN = yaml.safe_load((REPO / "domain.yml").read_text(encoding="utf-8"))


@pytest.fixture
def engine(engine: Engine, db_url: str) -> Iterator[Engine]:
    """tests/conftest.py's store, also as the action server's runtime engine (both databases)."""
    runtime.reset_engine(engine)
    try:
        yield engine
    finally:
        runtime.reset_engine(None)


def now() -> datetime:
    return datetime.now(timezone.utc)


def tracker(sender: str, intent: str, text: str, message_id: str, entities: list[dict[str, Any]] = ()) -> Tracker:  # type: ignore[assignment]
    return Tracker(
        sender_id=sender,
        slots={},
        latest_message={"text": text, "message_id": message_id, "intent": {"name": intent, "confidence": 0.9},
                        "entities": list(entities)},
        events=[],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name=None,
    )


def say(action: Any, t: Tracker) -> tuple[str, dict[str, Any]]:
    dispatcher = CollectingDispatcher()
    assert asyncio.run(action.run(dispatcher, t, DOMAIN)) == []
    [message] = dispatcher.messages
    assert message["response"] in DOMAIN["responses"]
    return message["response"], {k: v for k, v in message.items() if k not in (
        "response", "text", "buttons", "elements", "custom", "template", "image", "attachment")}


def act(engine: Engine, user: str, ticket_id: int, action: str, **form: str) -> None:
    with ConsoleUnitOfWork(engine) as uow:
        p = svc.Principal.of(uow.console.get_user_by_username(user))
    svc.perform(ConsoleUnitOfWork(engine), p, ticket_id, action, form, now())


def events_of(engine: Engine, ticket_id: int) -> list[tuple[str, str, str, dict]]:
    with engine.connect() as conn:
        rows = conn.execute(select(ticket_events.c.kind, ticket_events.c.actor, ticket_events.c.reason,
                                   ticket_events.c.data)
                            .where(ticket_events.c.ticket_id == ticket_id).order_by(ticket_events.c.seq))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def state_of(engine: Engine, ticket_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(select(tickets.c.state).where(tickets.c.id == ticket_id)).scalar_one()


def outbox_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(outbox).order_by(outbox.c.id))]


def test_a_granted_extension_and_a_redispatch_are_told_to_the_resident(engine: Engine) -> None:
    make_users(engine, ("grid", "disp", "root"))
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    extended = file(engine, "e1", sender="r1")
    moved = file(engine, "e2", sender="r2", description="小区门口乱停车")
    for tid in (extended.ticket_id, moved.ticket_id):
        act(engine, "grid", tid, "accept")
    act(engine, "grid", extended.ticket_id, "extend", reason="需协调物业，网格员张三跟进", days="3")
    act(engine, "disp", extended.ticket_id, "approve_extension")
    act(engine, "grid", moved.ticket_id, "return", reason="不属于本街道")
    act(engine, "root", moved.ticket_id, "redispatch", lead="urban_management", street=STREET)
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    resident = [(r["recipient"], r["event"], r["payload"]) for r in outbox_rows(engine) if r["kind"] == "resident"]
    assert resident == [
        ("r1", "accepted", {"ticket_number": extended.number, "ticket_event": "accepted", "result": ""}),
        ("r2", "accepted", {"ticket_number": moved.number, "ticket_event": "accepted", "result": ""}),
        ("r1", "extended", {"ticket_number": extended.number, "ticket_event": "extended", "result": ""}),
        # the new lead by its public name: no worker, no queue code
        ("r2", "redispatched", {"ticket_number": moved.number, "ticket_event": "redispatched", "result": "",
                                "new_unit": "市城市管理综合执法局"}),
    ]
    # what the assistant says (the outbox's trigger_intent → action_ticket_update)
    with ConsoleUnitOfWork(engine) as uow:
        due = uow.tickets.get(extended.ticket_id).finish_deadline()
    response, values = say(ActionTicketUpdate(), tracker("r1", "EXTERNAL_ticket_update", "", "m0", [
        {"entity": "ticket_number", "value": extended.number}, {"entity": "ticket_event", "value": "extended"}]))
    assert response == "utter_ticket_extended"
    assert values["deadline"] == due.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    assert values["ticket_number"] == extended.number
    response, values = say(ActionTicketUpdate(), tracker("r2", "EXTERNAL_ticket_update", "", "m1", [
        {"entity": "ticket_number", "value": moved.number}, {"entity": "ticket_event", "value": "redispatched"},
        {"entity": "new_unit", "value": "市城市管理综合执法局"}]))
    assert (response, values["new_unit"]) == ("utter_ticket_redispatched", "市城市管理综合执法局")
    text = DOMAIN["responses"]["utter_ticket_redispatched"][0]["text"].format(**values)
    assert text == f"您反映的问题（工单 {moved.number}）已改由市城市管理综合执法局办理，处理进展会再通知您。"


def test_the_resident_adds_to_their_own_open_ticket_once(engine: Engine) -> None:
    filed = file(engine, "a1", sender="r1")
    add = ActionAddToTicket()
    message = f"补充 {filed.number} 晚上十点以后还在叫"
    assert say(add, tracker("r1", "add_to_ticket", message, "m1")) == ("utter_ticket_added", {"ticket_number": filed.number})
    # the channel retries the same message: the same answer, nothing added twice
    assert say(add, tracker("r1", "add_to_ticket", message, "m1")) == ("utter_ticket_added", {"ticket_number": filed.number})
    # no number: the resident's only open ticket
    assert say(add, tracker("r1", "add_to_ticket", "补充一下：狗今天又来了", "m2"))[0] == "utter_ticket_added"
    # a number only: asked what to add
    assert say(add, tracker("r1", "add_to_ticket", f"补充{filed.number}", "m3")) == \
        ("utter_ticket_add_what", {"ticket_number": filed.number})
    # someone else naming this ticket: as if it did not exist
    assert say(add, tracker("intruder", "add_to_ticket", message, "m4")) == \
        ("utter_resident_ticket_not_found", {"ticket_number": filed.number})
    added = [e for e in events_of(engine, filed.ticket_id) if e[0] == "补充"]
    assert added == [("补充", "resident:r1", "晚上十点以后还在叫", {"key": "msg:m1"}),
                     ("补充", "resident:r1", "狗今天又来了", {"key": "msg:m2"})]
    assert state_of(engine, filed.ticket_id) == "派单"
    # the units hear of it (lead and co-units), the resident's phone number masked
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    say(add, tracker("r1", "add_to_ticket", f"补充 {filed.number} 有事打我电话13847112345", "m5"))
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    told = [(r["recipient"], r["event"], r["payload"]["text"]) for r in outbox_rows(engine)]
    assert told == [(q, "resident_added", f"居民补充 {filed.number}：有事打我电话138****2345")
                    for q in ("police_dog", "urban_management", f"street:{STREET}")]


def test_several_open_tickets_need_a_number_and_none_is_said_so(engine: Engine) -> None:
    one = file(engine, "s1", sender="r1")
    two = file(engine, "s2", sender="r1", description="楼道堆满杂物")
    assert say(ActionAddToTicket(), tracker("r1", "add_to_ticket", "补充一下 又堵了", "m1")) == \
        ("utter_resident_which_ticket", {"numbers": f"{two.number}、{one.number}"})
    assert say(ActionWithdrawTicket(), tracker("nobody", "withdraw_ticket", "我想撤单", "m2")) == \
        ("utter_resident_no_open_ticket", {})
    assert [e[0] for e in events_of(engine, one.ticket_id)] == ["受理", "派单"]


def test_the_resident_withdraws_an_open_ticket_with_a_reason_once(engine: Engine) -> None:
    filed = file(engine, "w1", sender="r1")
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())  # the filing itself is history
    withdraw = ActionWithdrawTicket()
    assert say(withdraw, tracker("r1", "withdraw_ticket", f"撤单 {filed.number}", "m1")) == \
        ("utter_ticket_withdraw_reason", {"ticket_number": filed.number})
    assert state_of(engine, filed.ticket_id) == "派单"
    message = f"我要撤销工单{filed.number}，原因是邻居已经把狗拴好了"
    for _ in range(2):  # the second is the channel's retry of the same message
        assert say(withdraw, tracker("r1", "withdraw_ticket", message, "m2")) == \
            ("utter_ticket_withdrawn", {"ticket_number": filed.number})
    assert state_of(engine, filed.ticket_id) == "已撤单"
    assert events_of(engine, filed.ticket_id)[-1] == ("撤单", "resident:r1", "邻居已经把狗拴好了", {"key": "msg:m2"})
    assert [e[0] for e in events_of(engine, filed.ticket_id)].count("撤单") == 1
    # asked again in a new message: told politely, nothing written
    assert say(withdraw, tracker("r1", "withdraw_ticket", f"撤单 {filed.number} 不要了", "m3")) == \
        ("utter_ticket_already_withdrawn", {"ticket_number": filed.number})
    assert say(ActionAddToTicket(), tracker("r1", "add_to_ticket", f"补充 {filed.number} 还有", "m4")) == \
        ("utter_ticket_already_withdrawn", {"ticket_number": filed.number})
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    told = [(r["kind"], r["recipient"], r["event"], r["payload"]["text"]) for r in outbox_rows(engine)]
    assert told == [("worker", q, "withdrawn", f"居民撤单 {filed.number}：邻居已经把狗拴好了")
                    for q in ("police_dog", "urban_management", f"street:{STREET}")]


def test_a_closed_or_shared_ticket_is_not_withdrawn(engine: Engine) -> None:
    make_users(engine, ("grid",))
    done = file(engine, "c1", sender="r1")
    act(engine, "grid", done.ticket_id, "accept")
    act(engine, "grid", done.ticket_id, "resolve", result="已处理")
    assert say(ActionWithdrawTicket(), tracker("r1", "withdraw_ticket", f"撤单 {done.number} 解决了", "m1")) == \
        ("utter_ticket_closed_no_change", {"ticket_number": done.number})
    assert say(ActionAddToTicket(), tracker("r1", "add_to_ticket", f"补充 {done.number} 又坏了", "m2")) == \
        ("utter_ticket_closed_no_change", {"ticket_number": done.number})
    assert state_of(engine, done.ticket_id) == "办结"
    shared = file(engine, "c2", sender="r2")
    with ConsoleUnitOfWork(engine) as uow:  # a neighbour reported the same problem (并单)
        uow.tickets.add_report(shared.ticket_id, Report("r3", "rest", "同样的问题", "x", None, None, False, "c3", now()))
        uow.commit()
    assert say(ActionWithdrawTicket(), tracker("r2", "withdraw_ticket", f"撤单 {shared.number} 不用了", "m3")) == \
        ("utter_ticket_withdraw_shared", {"ticket_number": shared.number})
    assert state_of(engine, shared.ticket_id) == "派单"


@pytest.mark.parametrize(("text", "expected"), [
    ("撤单 QC-261206-0001 问题已自行解决", ("QC-261206-0001", "问题已自行解决")),
    ("我要撤销投诉QC-261206-0001，原因是已经解决了", ("QC-261206-0001", "已经解决了")),
    ("补充 qc－261206－0001 晚上十点后还在叫", ("QC-261206-0001", "晚上十点后还在叫")),
    ("补充一下：狗又来了", (None, "狗又来了")),
    ("撤单", (None, "")),
])
def test_the_number_and_the_words_are_read_from_the_message(text: str, expected: tuple) -> None:
    assert split_request(text) == expected

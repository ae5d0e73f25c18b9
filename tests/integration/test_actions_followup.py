"""The assistant's side of the console's notices: action_ticket_update (what the outbox
triggers through EXTERNAL_ticket_update) and action_followup (回访 answers), on a real
ticket store (SQLite file and PostgreSQL schema)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select
from sqlalchemy.engine import Engine

from actions.followup import ActionFollowUp, ActionTicketUpdate
from bot.console import services as svc
from bot.console.uow import ConsoleUnitOfWork
from bot.ops import runtime
from bot.storage.tables import ticket_events, tickets
from tests.console.helpers import file, make_users

REPO = Path(__file__).resolve().parents[2]
DOMAIN = yaml.safe_load((REPO / "domain.yml").read_text(encoding="utf-8"))


@pytest.fixture
def engine(engine: Engine, db_url: str) -> Iterator[Engine]:
    """tests/conftest.py's store, also as the action server's runtime engine. (db_url is
    named so that pytest sees the parent's parameters through the override: both engines.)"""
    runtime.reset_engine(engine)
    try:
        yield engine
    finally:
        runtime.reset_engine(None)


def tracker(sender: str, intent: str, entities: list[dict[str, Any]] = (), text: str = None) -> Tracker:  # type: ignore[assignment]
    return Tracker(
        sender_id=sender,
        slots={"followup_asked": True} if text else {},
        latest_message={"text": text or f"/{intent}", "intent": {"name": intent, "confidence": 1.0 if text is None else 0.8},
                        "entities": list(entities)},
        events=[],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name=None,
    )


def run(action: Any, t: Tracker) -> tuple[list, list]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, t, DOMAIN))
    for m in dispatcher.messages:
        assert m["response"] in DOMAIN["responses"]
    return events, dispatcher.messages


def resolve(engine: Engine, ticket_id: int) -> None:
    with ConsoleUnitOfWork(engine) as uow:
        grid = svc.Principal.of(uow.console.get_user_by_username("grid"))
    now = datetime.now(timezone.utc)
    svc.perform(ConsoleUnitOfWork(engine), grid, ticket_id, "accept", {}, now)
    svc.perform(ConsoleUnitOfWork(engine), grid, ticket_id, "resolve", {"result": "已约谈犬主"}, now)


def test_ticket_news_is_told_with_the_right_response(engine: Engine) -> None:
    make_users(engine, ("grid",))
    filed = file(engine, "k1", sender="r1")
    resolve(engine, filed.ticket_id)
    entities = [
        {"entity": "ticket_number", "value": filed.number},
        {"entity": "ticket_event", "value": "resolved"},
        {"entity": "result", "value": "已约谈犬主"},
    ]
    events, messages = run(ActionTicketUpdate(), tracker("r1", "EXTERNAL_ticket_update", entities))
    assert events == [SlotSet("followup_asked", True)]  # a typed answer is the 回访 answer
    [m] = messages
    assert m["response"] == "utter_ticket_resolved"
    assert (m["ticket_number"], m["result"]) == (filed.number, "已约谈犬主")
    buttons = [b["payload"] for b in DOMAIN["responses"]["utter_ticket_resolved"][0]["buttons"]]
    assert buttons == ["/followup_satisfied", "/followup_basic", "/followup_unsatisfied", "/followup_unsolved"]
    _, accepted = run(ActionTicketUpdate(), tracker("r1", "EXTERNAL_ticket_update", [
        {"entity": "ticket_number", "value": filed.number}, {"entity": "ticket_event", "value": "accepted"}]))
    # the street's grid worker signed, not the lead unit (市公安局养犬管理): issue 13 item 9
    assert accepted[0]["response"] == "utter_ticket_accepted" and accepted[0]["lead"] == "海拉尔东路街道"
    assert _ == []  # only 办结 asks the 回访 question
    # Nonsense from outside says nothing.
    assert run(ActionTicketUpdate(), tracker("r1", "EXTERNAL_ticket_update", []))[1] == []


@pytest.mark.parametrize(
    ("intent", "state", "response", "data"),
    [
        ("followup_basic", "回访", "utter_followup_thanks", {"solved": True, "satisfaction": "基本满意"}),
        ("followup_unsolved", "派单", "utter_followup_reopened", {"solved": False, "satisfaction": "不满意"}),
    ],
)
def test_the_answer_is_recorded_as_an_event(engine: Engine, intent: str, state: str, response: str, data: dict) -> None:
    make_users(engine, ("grid",))
    filed = file(engine, "k1", sender="r1")
    resolve(engine, filed.ticket_id)
    _, messages = run(ActionFollowUp(), tracker("r1", intent))
    assert [(m["response"], m.get("ticket_number")) for m in messages] == [(response, filed.number)]
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.state)).scalar_one() == state
        last = conn.execute(select(ticket_events).order_by(ticket_events.c.id.desc())).mappings().first()
    assert (last["actor"], last["data"]) == ("resident:r1", data)
    # Asked again: nothing left to rate.
    assert run(ActionFollowUp(), tracker("r1", intent))[1][0]["response"] == "utter_followup_none"


@pytest.mark.parametrize(
    ("text", "intent", "state", "data"),
    [
        # issue 13 item 10: "满意，谢谢你们" was praise and no 回访 was recorded
        ("满意，谢谢你们", "praise", "回访", {"solved": True, "satisfaction": "满意"}),
        ("基本满意吧", "affirm", "回访", {"solved": True, "satisfaction": "基本满意"}),
        ("不太满意", "deny", "回访", {"solved": True, "satisfaction": "不满意"}),
        ("还是没修好", "nlu_fallback", "派单", {"solved": False, "satisfaction": "不满意"}),
    ],
)
def test_a_typed_answer_is_recorded_like_its_button(engine: Engine, text: str, intent: str, state: str,
                                                    data: dict) -> None:
    make_users(engine, ("grid",))
    filed = file(engine, "k1", sender="r1")
    resolve(engine, filed.ticket_id)
    events, messages = run(ActionFollowUp(), tracker("r1", intent, text=text))
    assert events == [SlotSet("followup_asked", None)]
    assert messages[0]["response"] in ("utter_followup_thanks", "utter_followup_reopened")
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.state)).scalar_one() == state
        last = conn.execute(select(ticket_events).order_by(ticket_events.c.id.desc())).mappings().first()
    assert (last["actor"], last["data"]) == ("resident:r1", data)


def test_an_answer_that_is_neither_asks_once_more(engine: Engine) -> None:
    make_users(engine, ("grid",))
    filed = file(engine, "k1", sender="r1")
    resolve(engine, filed.ticket_id)
    events, messages = run(ActionFollowUp(), tracker("r1", "praise", text="谢谢"))
    assert events == [SlotSet("followup_asked", None)]  # the next message is read as usual
    assert [m["response"] for m in messages] == ["utter_followup_again"]
    assert [b["payload"] for b in DOMAIN["responses"]["utter_followup_again"][0]["buttons"]] == [
        "/followup_satisfied", "/followup_basic", "/followup_unsatisfied", "/followup_unsolved"]
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.state)).scalar_one() == "办结"


def test_someone_else_cannot_rate_a_ticket(engine: Engine) -> None:
    make_users(engine, ("grid",))
    filed = file(engine, "k1", sender="r1")
    resolve(engine, filed.ticket_id)
    assert run(ActionFollowUp(), tracker("intruder", "followup_unsolved"))[1][0]["response"] == "utter_followup_none"
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.state)).scalar_one() == "办结"

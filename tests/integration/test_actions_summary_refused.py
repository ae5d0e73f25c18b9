"""The resident said no to the complaint's summary twice: a person takes over (issue 17).

On the recorded tracker of a complaint at its summary (form_confirm_answer.json), its latest
message replaced by a typed no as the Rasa server parsed it; exact events and responses, and
the rows the hand-off leaves in a real store (SQLite file and PostgreSQL schema)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import BotUttered, SlotSet
from sqlalchemy import select

from actions.complaint import ValidateComplaintForm
from bot.domain.handoff import ServiceHours, waiting_notice
from bot.ops import runtime
from bot.storage.handoff import handoff_events, handoff_messages, handoffs
from bot.storage.pending_phones import keep_phone, pending_phones
from tests.integration.test_actions import (  # noqa: F401 - fixtures
    RESET_EVENTS,
    Store,
    after,
    db,
    domain,
    no_default_database,
    read_only_engine,
    run,
    said,
    submit,
    tracker_state,
)

SENDER = "resident-7f3a91"
KEPT = {  # what form_confirm_answer.json's slots leave for the agent
    "category": "dog",
    "community": "150102001001",
    "confidential": True,
    "description": "新城区公主府社区楼下有人遛狗不牵绳",
    "location": "新城区 海拉尔东路街道 公主府社区居委会",
    "phone": "138****5678",
    "photo": "",
    "street": "150102001",
}


@pytest.fixture(autouse=True)
def always_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_HANDOFF_HOURS", "00:00-23:59")


def saying_no(state: dict[str, Any], text: str) -> dict[str, Any]:
    """The tracker with `text`, parsed as deny, as the resident's latest message."""
    state = copy.deepcopy(state)
    parse = {"intent": {"name": "deny", "confidence": 0.93}, "entities": [], "text": text,
             "intent_ranking": [{"name": "deny", "confidence": 0.93}, {"name": "inform", "confidence": 0.03}]}
    state["latest_message"].update(parse)
    user = [e for e in state["events"] if e["event"] == "user"][-1]
    user.update(text=text, parse_data={**user["parse_data"], **parse})
    return state


def answered(state: dict[str, Any], events: list[dict], messages: list[dict], next_text: str) -> dict[str, Any]:
    """The tracker once Rasa applied the validation's events, uttered its responses (the
    summary asked again) and the resident answered `next_text`."""
    state = after(state, events)
    bots = [BotUttered(text="…", metadata={"utter_action": m["response"]}) for m in messages]
    bots.append(BotUttered(text="请确认您的诉求：…", metadata={"utter_action": "utter_complaint_summary"}))
    state["events"] += bots
    return saying_no(state, next_text)


def handoff_rows(store: Store) -> tuple[list[tuple], list[tuple], list[tuple]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(handoffs.c.sender_id, handoffs.c.channel, handoffs.c.reason,
                                   handoffs.c.state)).all()
        steps = conn.execute(select(handoff_events.c.kind, handoff_events.c.actor, handoff_events.c.note)
                             .order_by(handoff_events.c.id)).all()
        messages = conn.execute(select(handoff_messages.c.author, handoff_messages.c.outgoing,
                                       handoff_messages.c.text)).all()
    return [tuple(r) for r in rows], [tuple(r) for r in steps], [tuple(r) for r in messages]


def test_the_first_no_asks_what_is_wrong(domain: dict, db: Store) -> None:  # noqa: F811
    state = saying_no(tracker_state("form_confirm_answer"), "不对")
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(state), domain)
    assert events == [SlotSet("confirm", None), SlotSet("requested_slot", "confirm")]
    assert said(messages) == [("utter_confirm_what_wrong", {})]
    assert handoff_rows(db) == ([], [], [])


def test_the_second_no_fetches_a_person_with_the_answers_kept(domain: dict, db: Store) -> None:  # noqa: F811
    first = saying_no(tracker_state("form_confirm_answer"), "不对")
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(first), domain)
    second = answered(first, events, messages, "还是不对")

    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(second), domain)

    # the form ends unfiled (the rule then runs action_submit_complaint, silent for this)
    assert events == [SlotSet("confirm", False), SlotSet("category", "handed_over"),
                      SlotSet("requested_slot", None)]
    hours = ServiceHours.parse("00:00-23:59", None)
    assert said(messages) == [("utter_handoff_notice", {"notice": waiting_notice(1, hours)})]
    rows, steps, kept = handoff_rows(db)
    assert rows == [(SENDER, "rest", "summary_refused", "waiting")]
    assert steps == [("转人工", "system", "summary_refused"),
                     ("诉求表单", "resident", json.dumps(KEPT, ensure_ascii=False, sort_keys=True))]
    assert kept == []  # the notice went out in this reply, not through the hand-off's messages


def test_a_no_in_an_earlier_form_run_does_not_count(domain: dict, db: Store) -> None:  # noqa: F811
    """Refusals count from the form run's draft_id: one no before it started is forgotten."""
    state = tracker_state("form_confirm_answer")
    draft = next(i for i, e in enumerate(state["events"]) if e["event"] == "slot" and e["name"] == "draft_id")
    state["events"].insert(draft, BotUttered(text="…", metadata={"utter_action": "utter_confirm_what_wrong"}))
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(saying_no(state, "不对")), domain)
    assert (events, said(messages)) == ([SlotSet("confirm", None), SlotSet("requested_slot", "confirm")],
                                        [("utter_confirm_what_wrong", {})])
    assert handoff_rows(db) == ([], [], [])


def test_with_the_store_down_the_form_goes_on_with_the_12345_advice(domain: dict, db: Store) -> None:  # noqa: F811
    first = saying_no(tracker_state("form_confirm_answer"), "不对")
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(first), domain)
    second = answered(first, events, messages, "不是这样的")
    runtime.reset_engine(read_only_engine(db))
    try:
        events, messages = run(ValidateComplaintForm(), Tracker.from_dict(second), domain)
    finally:
        runtime.engine().dispose()
        runtime.reset_engine(db.engine)
    assert events == [SlotSet("confirm", None), SlotSet("requested_slot", "confirm")]
    assert said(messages) == [("utter_human_handoff", {}), ("utter_confirm_what_wrong", {})]
    assert handoff_rows(db) == ([], [], [])


def test_the_handed_over_form_files_nothing_and_keeps_the_phone_for_the_agent(domain: dict, db: Store) -> None:  # noqa: F811
    from bot.storage.tables import tickets

    now = datetime.now(timezone.utc)
    with db.engine.begin() as conn:
        keep_phone(conn, SENDER, "13812345678", now)
    state = tracker_state("confirm_submit")
    state["slots"].update(confirm=False, category="handed_over", phone="138****5678")
    events, messages = submit(state, domain)
    assert events == RESET_EVENTS + [SlotSet("submit_failed", False)]
    assert messages == []
    assert db.count(tickets) == 0
    with db.engine.connect() as conn:
        held = conn.execute(select(pending_phones.c.sender_id, pending_phones.c.phone)).all()
    assert [tuple(r) for r in held] == [(SENDER, "13812345678")]

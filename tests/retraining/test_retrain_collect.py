"""Collecting from the actions, on trackers the Rasa server really sent
(tests/data/trackers): a fallback and a deny of the summary land in the inbox with the
prediction; a broken inbox costs the sample, never the resident's reply."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select
from sqlalchemy.engine import Engine

from actions.complaint import ValidateComplaintForm
from actions.fallback import ActionClarify
from bot import runtime
from bot.gazetteer import REPO_ROOT
from bot.retraining import collect
from bot.retraining.tables import review_items

TRACKERS = REPO_ROOT / "tests" / "data" / "trackers"
DOMAIN = yaml.safe_load((REPO_ROOT / "domain.yml").read_text(encoding="utf-8"))


def state(name: str) -> dict:
    return json.loads((TRACKERS / f"{name}.json").read_text(encoding="utf-8"))


def run_and_settle(action, tracker_state: dict) -> tuple[list, list]:
    async def go():
        dispatcher = CollectingDispatcher()
        events = await action.run(dispatcher, Tracker.from_dict(tracker_state), DOMAIN)
        await asyncio.gather(*list(collect._pending))  # the background inbox write
        return events, dispatcher.messages

    return asyncio.run(go())


@pytest.fixture
def actions_on(engine: Engine):
    runtime.reset_engine(engine)
    yield engine
    runtime.reset_engine(None)


def rows(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(review_items).order_by(review_items.c.id)).mappings()]


def test_a_fallback_lands_in_the_inbox_with_the_ranking(actions_on: Engine) -> None:
    events, messages = run_and_settle(ActionClarify(), state("nlu_fallback_two_categories"))
    assert [m["response"] for m in messages] == ["utter_clarify_category"]
    [row] = rows(actions_on)
    assert (row["source"], row["text"], row["predicted_intent"], row["confidence"], row["second_intent"],
            row["second_confidence"], row["status"]) == (
        "fallback", "公主府社区楼下那个东西又坏了", "noise", 0.1512, "property", 0.1313, "new")
    assert row["dedupe_key"] == "fallback:resident-d51b88:7a69377fac734228951b0b0e2f948041"
    run_and_settle(ActionClarify(), state("nlu_fallback_two_categories"))  # the action retried
    assert len(rows(actions_on)) == 1


def test_a_deny_of_the_summary_lands_in_the_inbox(actions_on: Engine) -> None:
    s = state("form_confirm_answer")
    s["latest_message"]["intent"] = {"name": "deny", "confidence": 0.93}
    s["latest_message"]["text"] = "不对"
    events, _ = run_and_settle(ValidateComplaintForm(), s)
    assert SlotSet("confirm", False) in events  # the form is cancelled as before
    [row] = rows(actions_on)
    assert (row["source"], row["text"], row["predicted_intent"], row["correction"]) == (
        "deny", "新城区公主府社区楼下有人遛狗不牵绳", "dog", {"denied": "dog"})


def test_a_broken_inbox_does_not_change_the_reply(actions_on: Engine, caplog) -> None:
    expected = run_and_settle(ActionClarify(), state("nlu_fallback_two_categories"))
    review_items.drop(actions_on)
    s = state("nlu_fallback_two_categories")
    s["latest_message"]["message_id"] = "another"
    with caplog.at_level("WARNING"):
        got = run_and_settle(ActionClarify(), s)
    assert got == expected
    assert "review inbox write failed" in caplog.text
    review_items.create(actions_on)  # the fixture's teardown drops all tables

"""Collecting from the actions, on trackers the Rasa server really sent
(tests/data/trackers): a fallback and a deny of the summary land in the inbox with the
prediction; a broken inbox costs the sample, never the resident's reply. The category
button the resident clicks after a fallback becomes that item's correction (only that
sender's, only while the item is still new), without changing what the form does."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import datetime, timezone

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select
from sqlalchemy.engine import Engine

import actions.complaint as complaint_module
from actions.complaint import ValidateComplaintForm
from actions.fallback import ActionClarify
from bot.conversation import ComplaintForm
from bot.ops import runtime
from bot.paths import REPO_ROOT
from bot.retraining import collect
from bot.retraining.inbox import Sample, record, record_choice, review_group
from bot.retraining.tables import review_items

TRACKERS = REPO_ROOT / "tests" / "data" / "trackers"
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 11, 25, 2, 1, tzinfo=timezone.utc)
DRAFT_ID = "e78aa6910544412b986a4412fb851926"
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


@pytest.mark.parametrize("text, payload", [("取消", False), ("/deny", True), ("算了不提交了", False)])
def test_a_cancel_at_the_summary_is_not_a_denied_category(actions_on: Engine, text: str, payload: bool) -> None:
    """issue 20 item 7: 取消 (typed or the button) cancels; the inbox learns nothing from it."""
    s = state("form_confirm_answer")
    s["latest_message"]["intent"] = {"name": "deny", "confidence": 0.93}
    s["latest_message"]["text"] = text
    events, _ = run_and_settle(ValidateComplaintForm(), s)
    assert SlotSet("confirm", False) in events and SlotSet("requested_slot", None) in events  # cancelled
    assert rows(actions_on) == []


def test_a_correction_at_the_summary_is_the_residents_correction(actions_on: Engine) -> None:
    """issue 20 item 7: "不对，是…，不是…" changes the category, the form goes on, and the
    inbox records the complaint with the category the resident gave."""
    s = state("form_confirm_answer")
    s["latest_message"]["intent"] = {"name": "deny", "confidence": 0.93}
    s["latest_message"]["text"] = "不对，是下水道堵了返臭味，不是狗的事"
    s["latest_message"]["entities"] = []
    events, messages = run_and_settle(ValidateComplaintForm(), s)
    assert events == [SlotSet("category", "drainage"), SlotSet("confirm", None), SlotSet("requested_slot", "confirm")]
    assert messages == []  # the form shows the summary again, with the new category
    [row] = rows(actions_on)
    assert (row["source"], row["text"], row["predicted_intent"], row["correction"], row["status"]) == (
        "deny", "新城区公主府社区楼下有人遛狗不牵绳", "dog",
        {"denied": "dog", "intent": "drainage", "chosen_by": "resident"}, "new")


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


# --- the resident's choice after a fallback --------------------------------------------


def _item(engine: Engine, sender: str, text: str, message_id: str, source: str = "fallback") -> int:
    with engine.begin() as conn:
        item_id = record(conn, Sample(source, text, f"{source}:{sender}:{message_id}", "noise", 0.15,
                                      "property", 0.13), NOW)
    assert item_id is not None
    return item_id


def corrections(engine: Engine) -> dict[int, dict]:
    return {r["id"]: r["correction"] for r in rows(engine)}


def choose(engine: Engine, sender: str, intent: str, text: str | None = None):
    with engine.begin() as conn:
        return record_choice(conn, sender, intent, LATER, text=text)


CHOSEN_NOISE = {"intent": "noise", "chosen_by": "resident", "chosen_at": LATER.isoformat()}


def test_the_choice_goes_to_the_senders_newest_pending_item(engine: Engine) -> None:
    older = _item(engine, "A", "楼下那个东西又响了", "m1")
    newest = _item(engine, "A", "公主府社区楼下那个东西又坏了", "m2", source="unsure")
    other = _item(engine, "B", "楼下那个东西", "m3")
    assert choose(engine, "A", "noise") == newest
    assert corrections(engine) == {older: {}, newest: CHOSEN_NOISE, other: {}}
    # with the text the buttons were offered for: that message's item, even if older
    assert choose(engine, "A", "property", "楼下那个东西又响了") == older
    assert corrections(engine)[older]["intent"] == "property"
    assert choose(engine, "A", "noise", "没有收录的话") is None
    assert choose(engine, "C", "noise") is None  # nothing collected for this conversation


def test_like_wildcards_in_the_sender_id_match_only_that_sender(engine: Engine) -> None:
    odd = _item(engine, "A%_", "井盖丢了", "m1")
    plain = _item(engine, "AB", "井盖又丢了", "m2")  # newer: an unescaped "A%_" pattern would pick it
    colon = _item(engine, "A%_:x", "井盖还丢了", "m3")  # "A%_" must not take the items of "A%_:x"
    backslash = _item(engine, "A\\", "路灯不亮", "m4")
    _item(engine, "A", "路灯又不亮", "m5")  # newer: with the backslash unescaped, its "\:" is a plain ":" and picks this
    assert choose(engine, "A%_", "roads_lighting") == odd
    assert choose(engine, "A_", "roads_lighting") is None  # "A_" would match "AB" unescaped
    assert choose(engine, "A%", "roads_lighting") is None
    assert choose(engine, "A\\", "roads_lighting") == backslash
    got = corrections(engine)
    assert got[odd]["intent"] == got[backslash]["intent"] == "roads_lighting"
    assert got[plain] == {} and got[colon] == {}


def test_a_reviewed_item_is_not_changed(engine: Engine) -> None:
    item = _item(engine, "A", "楼下那个东西又坏了", "m1")
    deny = _item(engine, "A", "新城区公主府社区楼下有人遛狗不牵绳", "m2", source="deny")  # not an unsure turn
    with engine.begin() as conn:
        assert review_group(conn, item, "rejected", "root", NOW) == 1
    assert choose(engine, "A", "noise") is None
    got = {r["id"]: r for r in rows(engine)}
    assert (got[item]["status"], got[item]["correction"], got[item]["reviewed_by"]) == ("rejected", {}, "root")
    assert got[deny]["correction"] == {}


def button_click(intent: str) -> dict:
    """The tracker after action_clarify offered the buttons and the resident clicked one
    (as Rasa sends it: the payload as text, the intent with confidence 1, no NLU)."""
    s = state("nlu_fallback_two_categories")
    events, _ = run_and_settle(ActionClarify(), copy.deepcopy(s))
    for e in events:
        s["slots"][e["name"]] = e["value"]
    s["events"] += events
    s["latest_message"] = {"intent": {"name": intent, "confidence": 1.0}, "entities": [], "text": f"/{intent}",
                           "message_id": "b1c4e0f2a9d84a6f8e3c2d1b0a9f8e7d", "metadata": {},
                           "intent_ranking": [{"name": intent, "confidence": 1.0}]}
    s["active_loop"] = {"name": "complaint_form"}
    s["slots"]["requested_slot"] = None
    return s


# What the form does with the click: category from the button, the unsure text as the
# description, its place from the mentions action_clarify kept.
CLICK_EVENTS = [
    SlotSet("draft_id", DRAFT_ID),
    SlotSet("confirm", None),
    SlotSet("category_offered", None),
    SlotSet("category", "noise"),
    SlotSet("pending_description", None),
    SlotSet("location_mentions", [{"text": "公主府社区", "level": "community", "value": "公主府社区",
                                   "start": 0, "end": 5}]),
]


@pytest.fixture
def fixed_draft_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(complaint_module, "_form", lambda: ComplaintForm(runtime.resolver(), new_id=lambda: DRAFT_ID))


def test_the_clicked_category_is_attached_and_the_form_goes_on_as_before(
    actions_on: Engine, fixed_draft_id: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    click = button_click("noise")
    [item] = rows(actions_on)
    assert item["correction"] == {}

    scheduled = []
    real = complaint_module.collect_choice

    def spy(*args):
        task = real(*args)
        scheduled.append((args, task))
        return task

    monkeypatch.setattr(complaint_module, "collect_choice", spy)
    events, messages = run_and_settle(ValidateComplaintForm(), copy.deepcopy(click))
    [(args, task)] = scheduled
    assert args == ("resident-d51b88", "noise", "公主府社区楼下那个东西又坏了") and task.done()
    [row] = rows(actions_on)
    assert row["correction"]["intent"] == "noise" and row["correction"]["chosen_by"] == "resident"

    # the same events and messages as without the inbox write
    monkeypatch.setattr(complaint_module, "collect_choice", lambda *a: None)
    before = run_and_settle(ValidateComplaintForm(), copy.deepcopy(click))
    assert (events, messages) == before
    assert events[:len(CLICK_EVENTS)] == CLICK_EVENTS
    slots = {e["name"]: e["value"] for e in events}
    assert slots["description"] == "公主府社区楼下那个东西又坏了"


def test_no_choice_is_recorded_for_a_typed_complaint(actions_on: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduled = []
    monkeypatch.setattr(complaint_module, "collect_choice", lambda *a: scheduled.append(a))
    run_and_settle(ValidateComplaintForm(), state("form_activation_dog"))  # typed, no buttons offered
    s = state("form_activation_dog")
    s["slots"]["pending_description"] = "小广告"  # a short first message, then a typed answer
    s["slots"]["requested_slot"] = "description"
    run_and_settle(ValidateComplaintForm(), s)
    assert scheduled == []


def test_a_broken_inbox_does_not_change_the_click(actions_on: Engine, fixed_draft_id: None, caplog) -> None:
    click = button_click("property")
    click["sender_id"] = "wx-13912345678"  # a sender id with a phone number in it
    expected = run_and_settle(ValidateComplaintForm(), copy.deepcopy(click))
    review_items.drop(actions_on)
    with caplog.at_level("WARNING"):
        got = run_and_settle(ValidateComplaintForm(), copy.deepcopy(click))
    assert got == expected
    assert "review inbox choice failed" in caplog.text
    assert "wx-139****5678" in caplog.text and "13912345678" not in caplog.text
    review_items.create(actions_on)

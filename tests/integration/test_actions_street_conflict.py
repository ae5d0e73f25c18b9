"""Issue 13 item 8: the street the resident named and the street of the compound they named
disagree (大学西路街道 + 金宇文苑, a community of 大学东路街道). The form asks with a button
for each street and never silently replaces the street the resident named.

Recorded trackers (tests/data/trackers/*street_conflict*.json, location_conflict_*.json):
recorded on 2026-12-06 from `rasa run --enable-api` + `rasa run actions` behind a recording
proxy, REST sender resident-d8e2c4 (typed answer) and resident-5b19e7 (button answer).
Exact events and response keys, in the style of test_actions.py.
"""

from __future__ import annotations

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.complaint import ActionAskLocation, ValidateComplaintForm
from tests.integration.test_actions import after, domain, payloads, run, said, tracker_state  # noqa: F401

TEXT = "大学西路街道金宇文苑小区门口垃圾堆了好几天没人清理"
DAXUE_WEST, DAXUE_EAST = "150105002", "150105004"  # 赛罕区
JINYU = "150105004021"  # 金宇文苑社区, in 大学东路街道
MENTIONS = [
    {"text": "大学西路街道", "level": "street", "value": "大学西路街道", "start": 0, "end": 6},
    {"text": "金宇文苑", "level": "community", "value": "金宇文苑", "start": 6, "end": 10},
]


def slot_events(events: list[dict]) -> dict:
    return {e["name"]: e["value"] for e in events}


def test_the_named_street_and_the_compound_disagree_so_the_form_asks(domain: dict) -> None:  # noqa: F811
    state = tracker_state("form_activation_street_conflict")
    assert state["latest_message"]["text"] == TEXT
    draft = state["slots"]["draft_id"] = None  # activation: the form makes a new draft id
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(state), domain)
    slots = slot_events(events)
    assert draft is None and len(slots.pop("draft_id")) == 32
    assert slots == {
        "confirm": None,
        "category": "sanitation",
        "category_offered": None,  # activation closes the category buttons (typed answers)
        "pending_description": None,
        "location_mentions": MENTIONS,
        "location": None,
        "location_status": "conflict",
        "district_code": None,
        "street_code": None,
        "community_code": None,
        "location_candidates": [DAXUE_WEST, JINYU],
        "location_asked": 1,
        "description": TEXT,
        "requested_slot": "location",  # not filled: the street is the resident's to say
    }
    assert messages == []


def test_the_question_offers_both_streets(domain: dict) -> None:  # noqa: F811
    recorded = tracker_state("ask_location_street_conflict")
    events, messages = run(ActionAskLocation(), Tracker.from_dict(recorded), domain)
    assert events == []
    assert said(messages) == [("utter_ask_location_conflict",
                               {"street": "大学西路街道", "compound": "金宇文苑", "compound_street": "大学东路街道"})]
    assert [b["title"] for b in messages[0]["buttons"]] == ["赛罕区 大学西路街道", "赛罕区 大学东路街道"]
    assert payloads(messages[0]) == [f'/inform{{"street":"{DAXUE_WEST}"}}', f'/inform{{"street":"{DAXUE_EAST}"}}']


def test_a_typed_answer_keeps_the_named_street_and_the_compound_name(domain: dict) -> None:  # noqa: F811
    state = tracker_state("location_conflict_typed_street")
    assert state["latest_message"]["text"] == "大学西路街道"
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(state), domain)
    assert events == [
        SlotSet("location", "赛罕区 大学西路街道 金宇文苑"),
        SlotSet("location_status", "resolved"),
        SlotSet("location_candidates", None),
        SlotSet("district_code", "150105"),
        SlotSet("street_code", DAXUE_WEST),
        SlotSet("community_code", None),
        SlotSet("requested_slot", "photo"),
    ]
    assert messages == []


def test_the_compounds_street_button_takes_the_compounds_community(domain: dict) -> None:  # noqa: F811
    state = tracker_state("location_conflict_button")
    assert state["latest_message"]["text"] == f'/inform{{"street":"{DAXUE_EAST}"}}'
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(state), domain)
    assert events == [
        SlotSet("location_mentions", [MENTIONS[1]]),
        SlotSet("location", "赛罕区 大学东路街道 金宇文苑社区居民委员会"),
        SlotSet("location_status", "resolved"),
        SlotSet("location_candidates", None),
        SlotSet("district_code", "150105"),
        SlotSet("street_code", DAXUE_EAST),
        SlotSet("community_code", JINYU),
        SlotSet("requested_slot", "photo"),
    ]
    assert messages == []


def test_an_answer_that_names_neither_street_asks_again(domain: dict) -> None:  # noqa: F811
    state = tracker_state("location_conflict_typed_street")
    state["latest_message"].update(text="嗯嗯", entities=[])
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(state), domain)
    assert events == [SlotSet("location", None), SlotSet("location_asked", 2), SlotSet("requested_slot", "location")]
    asked = after(state, events)
    events, messages = run(ActionAskLocation(), Tracker.from_dict(asked), domain)
    assert said(messages)[0][0] == "utter_ask_location_conflict"

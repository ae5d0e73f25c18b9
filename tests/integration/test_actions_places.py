"""Outside test 15, P8: places a resident names that the gazetteer knew badly or not at all.

The recorded tracker location_answer_ambiguous (a dog complaint, the form asking the place)
with the resident's answer replaced by the P8 texts; the answer's entities are what the
project's extractor (bot/nlu/locations.py, over the real reference data) finds in it.
Exact events and response keys, in the style of test_actions.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.complaint import ActionAskLocation, ValidateComplaintForm
from bot.nlu.locations import LocationMatcher, build_aliases
from bot.reference.gazetteer import Gazetteer
from tests.integration.test_actions import after, domain, run, said, tracker_state  # noqa: F401


@pytest.fixture(scope="module")
def matcher() -> LocationMatcher:
    return LocationMatcher(build_aliases(Gazetteer.load()))


def answered(text: str, matcher: LocationMatcher) -> dict[str, Any]:
    """The recorded 'the form asked the place' tracker, with `text` as the resident's answer."""
    state = copy.deepcopy(tracker_state("location_answer_ambiguous"))
    assert state["slots"]["requested_slot"] == "location"
    ents = [{**e, "extractor": "GazetteerEntityExtractor"} for e in matcher.extract(text)]
    state["latest_message"].update(text=text, entities=ents)
    return state


def test_a_development_zone_is_placed_in_its_district_and_its_street_is_asked_by_name(
        domain: dict, matcher: LocationMatcher) -> None:  # noqa: F811
    state = answered("金桥开发区", matcher)
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(state), domain)
    assert events == [
        SlotSet("location_mentions", [{"text": "金桥开发区", "level": "place", "value": "金桥开发区", "start": 0, "end": 5}]),
        SlotSet("district_code", "150105"),  # 赛罕区
        SlotSet("street_code", None),
        SlotSet("community_code", None),
        SlotSet("location_candidates", None),
        SlotSet("location_status", "partial"),
        SlotSet("location", None),
        SlotSet("location_asked", 1),
        SlotSet("requested_slot", "location"),
    ]
    assert messages == []
    # not the same question again: the resident is asked for the street of 金桥开发区
    events, messages = run(ActionAskLocation(), Tracker.from_dict(after(state, events)), domain)
    assert (events, said(messages)) == ([], [("utter_ask_location_more", {"mention": "金桥开发区"})])


@pytest.mark.parametrize("text, location, street", [
    ("大召寺", "玉泉区 长和廊街道 大召寺", "150104003"),
    ("海亮广场", "回民区 中山西路街道 海亮广场", "150103002"),
    ("如意开发区", "呼和浩特经济技术开发区 如意工业园区 如意开发区", "150172401"),
])
def test_a_landmark_routes_to_its_street(domain: dict, matcher: LocationMatcher, text: str, location: str,  # noqa: F811
                                         street: str) -> None:
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(answered(text, matcher)), domain)
    slots = {e["name"]: e["value"] for e in events}
    assert (slots["location"], slots["location_status"], slots["street_code"]) == (location, "resolved", street)
    assert slots["requested_slot"] == "photo"
    assert messages == []


def test_a_place_after_dont_know_is_kept(domain: dict, matcher: LocationMatcher) -> None:  # noqa: F811
    events, messages = run(ValidateComplaintForm(), Tracker.from_dict(answered("不知道 就是毛纺厂家属院", matcher)), domain)
    slots = {e["name"]: e["value"] for e in events}
    assert (slots["location"], slots["location_status"], slots["requested_slot"]) == (
        "毛纺厂家属院", "unresolved", "photo")
    assert messages == []


def test_a_generic_phrase_is_not_asked_about(domain: dict, matcher: LocationMatcher) -> None:  # noqa: F811
    state = answered("周边道路", matcher)
    assert state["latest_message"]["entities"] == []
    state["slots"]["location_asked"] = 1  # already asked once: asking again would not help
    events, _ = run(ValidateComplaintForm(), Tracker.from_dict(state), domain)
    slots = {e["name"]: e["value"] for e in events}
    assert (slots["location"], slots["location_status"]) == ("周边道路", "unresolved")


def test_a_conflict_names_the_compound_that_lies_in_the_other_street(domain: dict) -> None:  # noqa: F811
    state = tracker_state("ask_location_street_conflict")
    state["slots"].update(
        location_candidates=["150103003", "150102002001"],  # 光明路街道; 车站西街社区 of 锡林北路街道
        location_mentions=[
            {"text": "光明路街道", "level": "street", "value": "光明路街道", "start": 0, "end": 5},
            {"text": "阳光花园小区", "level": "place", "value": "阳光花园小区", "start": 5, "end": 11},
            {"text": "车站西街社区", "level": "community", "value": "车站西街社区", "start": 11, "end": 17},
        ])
    events, messages = run(ActionAskLocation(), Tracker.from_dict(state), domain)
    assert said(messages) == [("utter_ask_location_conflict",
                               {"street": "光明路街道", "compound": "车站西街社区", "compound_street": "锡林北路街道"})]

"""bot/rasa_speedups.py: the faster checks give exactly Rasa's own verdicts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import ValidationError

import bot.nlu  # noqa: F401  (installs the speed-ups, as loading our model does)
from bot.rasa_speedups import action_response_validator, response_is_valid
from rasa.core.actions.action import RemoteAction
from rasa.shared.core.events import Event
from rasa.shared.utils.common import all_subclasses

TRACKERS = Path(__file__).resolve().parents[1] / "data" / "trackers"


def recorded_events():
    events = []
    for path in sorted(TRACKERS.glob("*.json")):
        events += json.loads(path.read_text(encoding="utf-8"))["events"]
    return events


VALID = [
    {"events": [], "responses": []},
    {"events": [{"event": "slot", "name": "location", "value": "新华大街", "timestamp": None}],
     "responses": [{"response": "utter_ask_photo"}]},
    {"events": [{"event": "active_loop", "name": None}, {"event": "followup", "name": "action_x"}]},
    {"responses": [{"text": "好的"}]},
    {},
]
INVALID = [
    [],  # not an object
    "events",
    {"events": "slot"},
    {"events": [{"name": "location"}]},  # no event type
    {"events": [{"event": "no_such_event"}]},
    {"events": [{"event": "slot", "name": 3}]},  # slot name must be a string
    {"events": [{"event": "slot", "name": "a", "timestamp": "yesterday"}]},
    {"events": [{"event": "user", "text": 5}]},
    {"events": [{"event": "slot", "name": "a"}, "not an event"]},
    {"responses": [1]},
    {"responses": {"text": "x"}},
]


def test_recorded_events_are_many_and_of_several_types():
    events = recorded_events()
    assert len(events) > 100 and len({e["event"] for e in events}) >= 5


@pytest.mark.parametrize("response", VALID + [{"events": recorded_events()}])
def test_valid_responses_pass_both(response):
    assert action_response_validator().is_valid(response)
    assert response_is_valid(response)


@pytest.mark.parametrize("response", INVALID)
def test_invalid_responses_fail_both(response):
    assert not action_response_validator().is_valid(response)
    assert not response_is_valid(response)


def test_every_recorded_event_alone_gets_the_same_verdict():
    for event in recorded_events():
        response = {"events": [event]}
        assert response_is_valid(response) == action_response_validator().is_valid(response), event


def test_rasa_raises_its_own_error_for_a_bad_response():
    with pytest.raises(ValidationError) as err:
        RemoteAction("action_x", None)._validate_action_result({"events": [{"event": "slot", "name": 3}]})
    assert "Failed to validate Action server response from API" in err.value.message
    assert RemoteAction("action_x", None)._validate_action_result(VALID[1]) is True


def test_the_patch_is_installed_once():
    from bot.rasa_speedups import install

    patched = RemoteAction._validate_action_result
    install()
    install()
    assert RemoteAction._validate_action_result is patched
    assert patched.__module__ == "bot.rasa_speedups"


def test_event_types_resolve_as_rasa_resolves_them():
    first = {}
    for cls in all_subclasses(Event):
        first.setdefault(cls.type_name, cls)
    assert len(first) >= 20
    for type_name, cls in first.items():
        assert Event.resolve_by_type(type_name) is cls
    assert Event.resolve_by_type("topic") is None
    assert Event.resolve_by_type("no_such_event", default=Event) is Event
    with pytest.raises(ValueError, match="Unknown event name 'no_such_event'"):
        Event.resolve_by_type("no_such_event")

"""bot/rasa_ext/speedups.py: the faster checks give exactly Rasa's own verdicts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.shared.core.events import Event
from rasa.shared.utils.common import all_subclasses

import bot.nlu  # noqa: F401  (installs the speed-ups, as loading our model does)
from bot.rasa_ext.speedups import action_response_validator, response_is_valid

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
    from bot.rasa_ext.speedups import install

    patched = RemoteAction._validate_action_result
    install()
    install()
    assert RemoteAction._validate_action_result is patched
    assert patched.__module__ == "bot.rasa_ext.speedups"


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


# --- EndpointConfig.request on one kept-alive session ----------------------------------


def test_endpoint_requests_share_one_connection_and_keep_rasas_results():
    import asyncio

    from aiohttp import web
    from rasa.utils.endpoints import ClientResponseError, EndpointConfig

    peers, seen = set(), []

    async def webhook(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername"))
        seen.append((request.method, request.path_qs, request.headers.get("X-Bot"), await request.json()))
        if request.query.get("fail"):
            return web.Response(status=400, text="bad")
        if request.query.get("plain"):
            return web.Response(text="ok")
        return web.json_response({"events": [], "echo": (await request.json())["n"]})

    async def main():
        app = web.Application()
        app.router.add_route("*", "/webhook", webhook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        endpoint = EndpointConfig(f"http://127.0.0.1:{port}/webhook", headers={"X-Bot": "qc"}, token="t0k")
        try:
            answers = [await endpoint.request(json={"n": i}, method="post", timeout=5) for i in range(5)]
            with pytest.raises(ClientResponseError) as failed:
                await endpoint.request(json={"n": 9}, params={"fail": "1"})
            plain = await endpoint.request(json={"n": 10}, params={"plain": "1"})
        finally:
            await endpoint._qc_session[1].close()
            await runner.cleanup()
        return answers, failed.value, plain

    answers, failed, plain = asyncio.run(main())
    assert [a["echo"] for a in answers] == [0, 1, 2, 3, 4]
    assert failed.status == 400 and failed.text == b"bad"
    assert plain is None  # not JSON: None, as Rasa's own request returns
    assert seen[0] == ("POST", "/webhook?token=t0k", "qc", {"n": 0})
    assert len(seen) == 7 and len(peers) == 1  # seven requests, one TCP connection

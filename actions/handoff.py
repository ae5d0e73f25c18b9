"""Hand the conversation to a person (bot/services/handoff.py): the resident asked for one,
or the assistant failed to understand twice in a row, or wrote in Mongolian script (or said
no to the complaint's summary twice: actions/complaint.py). From the
next message on, the chat channel keeps what the resident writes for the agent."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.common import log, safe
from bot.domain.handoff import ASKED, MONGOLIAN, NOT_UNDERSTOOD
from bot.ops import runtime
from bot.services import handoff

UNREAD_REASONS = frozenset({MONGOLIAN, NOT_UNDERSTOOD})


def channel_of(tracker: Tracker) -> str:
    return tracker.get_latest_input_channel() or tracker.sender_id.split(":", 1)[0]


async def hand_over(dispatcher: CollectingDispatcher, tracker: Tracker, reason: str,
                    kept: Mapping[str, object] | None = None) -> bool:
    """Open (or find) the hand-off and tell the resident; False, with the old advice to call
    12345, when the store cannot be reached (the resident is never left without an answer).
    `kept`: the complaint form's answers, for the agent. The message the assistant could not
    read (Mongolian script, twice not understood) goes to the person with the hand-off."""
    unread = (tracker.latest_message or {}).get("text") if reason in UNREAD_REASONS else None
    try:
        _, notice = await runtime.run_store(lambda: handoff.request(
            runtime.uow(), tracker.sender_id, channel_of(tracker), reason, datetime.now(timezone.utc),
            handoff.hours_from_env(), kept=kept, first_message=unread))
    except Exception:  # noqa: BLE001 - store down: the 12345 advice instead
        log.exception("hand-off for %s not opened", safe(tracker.sender_id))
        dispatcher.utter_message(response="utter_human_handoff")
        return False
    dispatcher.utter_message(response="utter_handoff_notice", notice=notice)
    return True


class ActionHumanHandoff(Action):
    def name(self) -> str:
        return "action_human_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        await hand_over(dispatcher, tracker, ASKED)
        return []

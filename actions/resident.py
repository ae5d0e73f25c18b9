"""The resident adds to (补充) or withdraws (撤单) their own open ticket from the chat
(intents add_to_ticket, withdraw_ticket): thin adapters over bot/services/resident.py.

The ticket is the number in the message, else the resident's only open ticket; with several
open the resident is asked to name one. Identity is the sender id of the channel: only a
ticket the sender reported on can be changed. The message id is the idempotency key, so a
channel's retry of the same message changes nothing twice."""
from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timezone

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.common import latest_turn, log, safe
from bot.conversation import own_photo
from bot.ops import runtime
from bot.services.resident import ResidentChange, add_to_ticket, open_tickets_of, split_request, withdraw_ticket

REPLIES = {
    "added": "utter_ticket_added",
    "withdrawn": "utter_ticket_withdrawn",
    "not_found": "utter_resident_ticket_not_found",
    "closed": "utter_ticket_closed_no_change",
    "already_withdrawn": "utter_ticket_already_withdrawn",
    "shared": "utter_ticket_withdraw_shared",
}


def _key(tracker: Tracker) -> str:
    msg = tracker.latest_message or {}
    if msg.get("message_id"):
        return f"msg:{msg['message_id']}"
    digest = hashlib.sha256(f"{tracker.sender_id}\n{msg.get('text') or ''}".encode()).hexdigest()[:32]
    return f"text:{digest}"


async def change(dispatcher: CollectingDispatcher, tracker: Tracker, withdraw: bool, action: str) -> list[EventType]:
    """补充 (withdraw False) or 撤单 for the sender's own ticket. A function, not a shared base
    class: rasa_sdk registers every Action subclass it finds, and a base has no name."""
    turn = latest_turn(tracker)
    number, rest = split_request(turn.text)
    photo = None if withdraw else own_photo(turn)
    empty = "utter_ticket_withdraw_reason" if withdraw else "utter_ticket_add_what"
    sender = tracker.sender_id
    try:
        if number is None:
            mine = await runtime.run_store(open_tickets_of, runtime.uow(), sender)
            if not mine:
                dispatcher.utter_message(response="utter_resident_no_open_ticket")
                return []
            if len(mine) > 1:
                dispatcher.utter_message(response="utter_resident_which_ticket",
                                         numbers="、".join(t.number for t in mine))
                return []
            number = mine[0].number
        if withdraw:
            result: ResidentChange = await runtime.run_store(
                withdraw_ticket, runtime.uow(), number, sender, rest, _key(tracker), datetime.now(timezone.utc))
        else:
            result = await runtime.run_store(
                add_to_ticket, runtime.uow(), number, sender, rest, photo, _key(tracker), datetime.now(timezone.utc))
    except (asyncio.TimeoutError, Exception) as exc:
        log.error("%s for %s failed: %s", action, safe(sender), type(exc).__name__)
        dispatcher.utter_message(response="utter_resident_change_failed")
        return []
    response = empty if result.status == "empty" else REPLIES[result.status]
    dispatcher.utter_message(response=response, ticket_number=result.number or number)
    return []


class ActionAddToTicket(Action):
    def name(self) -> str:
        return "action_add_to_ticket"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        return await change(dispatcher, tracker, False, self.name())


class ActionWithdrawTicket(Action):
    def name(self) -> str:
        return "action_withdraw_ticket"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        return await change(dispatcher, tracker, True, self.name())

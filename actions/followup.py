"""Ticket news pushed by the work console, and the resident's 回访 answer.

The console's outbox calls the Rasa server's trigger_intent with EXTERNAL_ticket_update
(entities ticket_number + ticket_event: accepted | resolved | reopened | extended | redispatched,
and result or new_unit — the new lead's public name; or question with the handler's question);
action_ticket_update tells the resident — a question only inside WeChat's 48-hour window
(qc_window_only: never a template message). After 办结 it asks whether the problem is
solved and how satisfied they are (buttons → followup_* intents); action_followup
records the answer as a ticket event: solved → 回访 (closed), not solved → 重办.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import latest_turn, log, safe
from actions.status import status_variables
from bot.domain.model import TicketState
from bot.domain.numbers import parse_ticket_number
from bot.nlu.answers import followup_answer
from bot.ops import runtime
from bot.services.questions import question_message
from bot.services.tickets import record_follow_up, ticket_status, tickets_for_sender

# the 回访 question is out (a featurised slot: data/rules/answers.yml sends typed answers
# like "满意，谢谢你们" here instead of to praise)
FOLLOWUP_ASKED = "followup_asked"
QUESTION = "question"  # a handler's question (bot/console/services/notices.py)
WINDOW_ONLY = "qc_window_only"  # bot/channels/wechat/channel.py (not imported: no Rasa core here)
RESPONSES = {"accepted": "utter_ticket_accepted", "resolved": "utter_ticket_resolved", "reopened": "utter_ticket_reopened",
             "extended": "utter_ticket_extended", "redispatched": "utter_ticket_redispatched"}


def _entity(tracker: Tracker, name: str) -> str | None:
    for e in (tracker.latest_message or {}).get("entities") or []:
        if e.get("entity") == name and e.get("value") not in (None, ""):
            return str(e["value"])
    return None


class ActionTicketUpdate(Action):
    def name(self) -> str:
        return "action_ticket_update"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        number = parse_ticket_number(_entity(tracker, "ticket_number") or "")
        event = _entity(tracker, "ticket_event")
        if event == QUESTION:
            question = _entity(tracker, "question")
            if number is None or not question:
                log.warning("a question without a ticket number or its text")
                return []
            # WINDOW_ONLY: the WeChat output channel sends it only as a customer-service message
            dispatcher.utter_message(text=question_message(number, question), **{WINDOW_ONLY: True})
            return []
        if number is None or event not in RESPONSES:
            log.warning("ticket update without a ticket number or a known event: %s", event)
            return []
        try:
            status = await runtime.run_store(ticket_status, runtime.uow(), number, tracker.sender_id)
        except (asyncio.TimeoutError, Exception) as exc:
            log.error("ticket update lookup failed for %s: %s", safe(tracker.sender_id), type(exc).__name__)
            status = None
        values: dict[str, Any] = {"ticket_number": number, "result": _entity(tracker, "result") or "已办理完毕", "lead": "承办单位",
                                  "deadline": "", "new_unit": _entity(tracker, "new_unit") or "新的承办单位"}
        if status is not None:
            v = status_variables(status)
            values.update(lead=v["lead"], deadline=v["deadline"])
            if event == "accepted" and status.accepted_unit:  # who really signed, not the lead
                values["lead"] = status.accepted_unit_name or runtime.catalogue().unit_name(status.accepted_unit)
        dispatcher.utter_message(response=RESPONSES[event], **values)
        return [SlotSet(FOLLOWUP_ASKED, True)] if event == "resolved" else []


class ActionFollowUp(Action):
    def name(self) -> str:
        return "action_followup"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        turn = latest_turn(tracker)
        answer = followup_answer(turn.text, turn.intent, turn.from_button)
        if answer is None:
            # neither solved/unsolved nor a rating ("谢谢", "嗯"): ask once more, with the buttons;
            # the next message is read as usual
            dispatcher.utter_message(response="utter_followup_again")
            return [SlotSet(FOLLOWUP_ASKED, None)]
        solved, satisfaction = answer
        done = [SlotSet(FOLLOWUP_ASKED, None)]
        try:
            # The ticket asked about: the resident's most recently resolved one (办结, not yet 回访).
            mine = await runtime.run_store(tickets_for_sender, runtime.uow(), tracker.sender_id, 20)
        except (asyncio.TimeoutError, Exception) as exc:
            log.error("follow-up lookup for %s failed: %s", safe(tracker.sender_id), type(exc).__name__)
            dispatcher.utter_message(response="utter_followup_failed")
            return done
        resolved = sorted((t for t in mine if t.state is TicketState.RESOLVED), key=lambda t: t.last_event_at)
        if not resolved:
            dispatcher.utter_message(response="utter_followup_none")
            return done
        number = resolved[-1].number
        try:
            result = await runtime.run_store(
                record_follow_up, runtime.uow(), number, tracker.sender_id, solved, satisfaction,
                datetime.now(timezone.utc),
            )
        except (asyncio.TimeoutError, Exception) as exc:
            log.error("follow-up for %s failed: %s", safe(tracker.sender_id), type(exc).__name__)
            dispatcher.utter_message(response="utter_followup_failed")
            return done
        if result.status == "closed":
            dispatcher.utter_message(response="utter_followup_thanks", ticket_number=number)
        elif result.status == "reopened":
            dispatcher.utter_message(response="utter_followup_reopened", ticket_number=number)
        else:
            dispatcher.utter_message(response="utter_followup_none")
        return done

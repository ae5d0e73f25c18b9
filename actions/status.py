"""ask_status: a resident sees their own tickets only (by sender id or ticket number), or a
ticket whose number comes with the last four digits of its phone ("QC-261206-0001 尾号5678":
a phone caller asking on any channel). Wrong digits get the unknown number's reply; repeated
wrong tries are refused for a while (bot/security/guesses.py) with that same reply: it is in
the served model's domain (a new response would need a retrained model) and tells a guesser
nothing, not even that the guessing was noticed."""
from __future__ import annotations

import asyncio
import functools

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.common import log, safe
from bot.domain.clock import SHANGHAI
from bot.domain.numbers import parse_phone_tail, parse_ticket_number
from bot.ops import runtime
from bot.security.guesses import GuessThrottle
from bot.services.tickets import TicketStatus, ticket_status, tickets_for_sender


def fmt_time(dt) -> str:
    return dt.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def status_variables(s: TicketStatus) -> dict[str, str]:
    return {
        "number": s.number,
        "category_name": s.category_name,
        "state": s.state.value,
        "lead": s.lead_queue_name or runtime.catalogue().unit_name(s.lead_queue),
        "created": fmt_time(s.created_at),
        # a resident needs when the problem will be handled (办结时限); while nobody has
        # signed for it yet, also when that is due (the current step's deadline)
        "deadline": fmt_time(s.finish_deadline_at or s.deadline_at),
        "sign_line": f"\n待承办单位签收，签收时限：{fmt_time(s.deadline_at)}"
        if s.finish_deadline_at is not None and s.finish_deadline_at != s.deadline_at else "",
        "last_event": f"{s.last_event_kind}（{fmt_time(s.last_event_at)}）",
    }


@functools.cache
def guesses() -> GuessThrottle:
    """One throttle per action server process (its counters, or Redis's)."""
    return GuessThrottle.from_env()


class ActionTicketStatus(Action):
    def name(self) -> str:
        return "action_ticket_status"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        text = (tracker.latest_message or {}).get("text") or ""
        number = parse_ticket_number(text)
        digits = parse_phone_tail(text) if number else None
        sender = tracker.sender_id
        if number and digits and await guesses().blocked(sender, number):
            # throttled: the digits are not read, but the resident who reported on the ticket
            # still sees it (guessers from other sender ids must not lock its owner out)
            log.warning("status guesses throttled for %s", safe(sender))
            digits = None
        try:
            if number:
                found = await runtime.run_store(ticket_status, runtime.uow(), number, sender, digits)
                found = [found] if found else []
                if not found and digits:
                    await guesses().failed(sender, number)
            else:
                found = await runtime.run_store(tickets_for_sender, runtime.uow(), sender, 3)
        except (asyncio.TimeoutError, Exception) as exc:
            log.error("status lookup failed for %s: %s", safe(sender), type(exc).__name__)
            dispatcher.utter_message(response="utter_status_unavailable")
            return []
        if not found:
            if number:
                dispatcher.utter_message(response="utter_status_not_found", number=number)
            else:
                dispatcher.utter_message(response="utter_status_none")
            return []
        if len(found) > 1:
            dispatcher.utter_message(response="utter_status_list_header")
        for s in found:
            dispatcher.utter_message(response="utter_status_one", **status_variables(s))
        return []

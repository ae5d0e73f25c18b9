"""consult: answers from the admins' knowledge base, or a pointer to 12345. A question the
knowledge base cannot answer is kept for the agents (a 咨询 item in the console's 转人工 list,
bot/services/handoff.record_question): the fallback's promise 留下问题由工作人员答复 is kept."""
from __future__ import annotations

from datetime import datetime, timezone

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.common import log, safe
from actions.handoff import channel_of
from bot.domain.handoff import QUESTION_NOTICE
from bot.ops import runtime
from bot.reference.knowledge import default_knowledge
from bot.services import handoff


async def keep_question(tracker: Tracker, text: str) -> bool:
    """The question reaches the agents' list; False (logged) when the store cannot be reached."""
    try:
        await runtime.run_store(lambda: handoff.record_question(
            runtime.uow(), tracker.sender_id, channel_of(tracker), text, datetime.now(timezone.utc)))
    except Exception:  # noqa: BLE001 - the answer still goes out, with the 12345 pointer
        log.exception("question of %s not kept for the agents", safe(tracker.sender_id))
        return False
    return True


class ActionConsult(Action):
    def name(self) -> str:
        return "action_consult"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        question = (tracker.latest_message or {}).get("text") or ""
        answer = default_knowledge().answer(question)
        text = answer.text
        if answer.topic_id is None and question.strip() and await keep_question(tracker, question):
            text = f"{text}\n{QUESTION_NOTICE}"
        dispatcher.utter_message(response="utter_consult_answer", answer=text, topic=answer.topic_id)
        return []

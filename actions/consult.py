"""consult: answers from the admins' knowledge base, or a pointer to 12345."""
from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from bot.reference.knowledge import default_knowledge


class ActionConsult(Action):
    def name(self) -> str:
        return "action_consult"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        answer = default_knowledge().answer((tracker.latest_message or {}).get("text") or "")
        dispatcher.utter_message(response="utter_consult_answer", answer=answer.text, topic=answer.topic_id)
        return []

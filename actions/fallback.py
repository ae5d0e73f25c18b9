"""When the assistant is unsure: offer the two likeliest categories as buttons (the text
is kept as the complaint's description), or ask plainly; unreadable input gets a
specific, polite request for text."""
from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import intent_ranking, latest_turn
from actions.complaint import category_despite_contact
from actions.handoff import hand_over
from bot.domain.handoff import MONGOLIAN, NOT_UNDERSTOOD
from bot.domain.model import CATEGORIES
from bot.reference.locations import mentions_from_entities
from bot.retraining.collect import collect_turn, fallback_source
from bot.text import input_issue

UNSURE_FLOOR = 0.08  # a category this unlikely is not worth offering


def clarified_last_turn(tracker: Tracker) -> bool:
    """The assistant's answer to the resident's previous message was a plain 没听懂
    (action_clarify without category buttons): this is the second in a row."""
    actions_since: list[str] = []
    users = 0
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            users += 1
            if users == 2:
                break
            actions_since = []
        elif event.get("event") == "action" and users == 1:
            actions_since.append(event.get("name") or "")
    return users == 2 and "action_clarify" in actions_since and not tracker.get_slot("category_offered")


async def unreadable(dispatcher: CollectingDispatcher, tracker: Tracker, issue: str) -> None:
    """Mongolian script is not guessed at: a person who reads it is fetched (the old answer
    asking for Chinese only when the hand-off store is down)."""
    if issue == "mongolian" and await hand_over(dispatcher, tracker, MONGOLIAN):
        return
    dispatcher.utter_message(response=f"utter_input_{issue}")


def top_categories(ranking: list[dict], n: int = 2) -> list[str]:
    out = []
    for r in ranking:
        # "other" is offered as 都不是（其他问题） after these: never twice
        if r.get("name") in CATEGORIES and r["name"] != "other" and float(r.get("confidence") or 0) >= UNSURE_FLOOR:
            out.append(r["name"])
        if len(out) == n:
            break
    return out


class ActionClarify(Action):
    def name(self) -> str:
        return "action_clarify"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        turn = latest_turn(tracker)
        issue = input_issue(turn.text)
        if issue:
            await unreadable(dispatcher, tracker, issue)
            return []
        ranking = [r for r in intent_ranking(tracker) if r.get("name") != "nlu_fallback"]
        recovered = category_despite_contact(tracker)
        if recovered:  # "…，联系方式：138…。": the complaint is understood without the contact clause
            return recovered
        if not turn.from_button:  # the review inbox: what the model was unsure about
            collect_turn(fallback_source(ranking), turn.text, ranking, tracker.sender_id,
                         (tracker.latest_message or {}).get("message_id"))
        cats = top_categories(ranking)
        if ranking and ranking[0].get("name") in CATEGORIES and cats:
            buttons = [{"title": CATEGORIES[c], "payload": f"/{c}"} for c in cats]
            buttons.append({"title": "都不是（其他问题）", "payload": "/other"})
            dispatcher.utter_message(response="utter_clarify_category", buttons=buttons)
            places = [m.__dict__ for m in mentions_from_entities(turn.entities)]
            # category_offered: a typed answer ("其他", "是环境污染问题") continues this complaint
            return [SlotSet("pending_description", turn.text), SlotSet("location_mentions", places or None),
                    SlotSet("category_offered", True)]
        if clarified_last_turn(tracker) and await hand_over(dispatcher, tracker, NOT_UNDERSTOOD):
            return []  # twice not understood: a person takes over
        dispatcher.utter_message(response="utter_clarify")
        return []


class ActionUnclearInput(Action):
    """Inside the form: a turn that is no answer. The form asks its question again."""

    def name(self) -> str:
        return "action_unclear_input"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        issue = input_issue(latest_turn(tracker).text)
        if issue:
            await unreadable(dispatcher, tracker, issue)
        else:
            dispatcher.utter_message(response="utter_answer_not_text")
        return []

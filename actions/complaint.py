"""The complaint form: validation (what the resident's answer means), the dynamic
questions (location choices, the summary) and filing the ticket."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime, timezone
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import intent_ranking, latest_turn, log, safe
from actions.handoff import hand_over
from bot.conversation import (
    AUX_SLOTS,
    ERASE_ASKED_SLOT,
    FORM_SLOTS,
    HANDED_OVER,
    KEPT_PHOTO_SLOT,
    NO_VALUE,
    REFUSALS,
    ComplaintForm,
    next_slot,
    own_photo,
    summary_variables,
)
from bot.domain.clock import SHANGHAI
from bot.domain.model import CATEGORIES, ComplaintDraft
from bot.nlu.answers import CategoryMatcher, category_without_contact
from bot.ops import runtime
from bot.reference.locations import CONFLICT, Mention, Resolution
from bot.retraining.collect import collect_choice, collect_turn
from bot.services.tickets import file_complaint
from bot.storage import pending_phones
from bot.text import mask_personal_data, mask_phone, valid_phone

REQUESTED_SLOT = "requested_slot"
WHAT_WRONG = "utter_confirm_what_wrong"  # the assistant's answer to a no at the summary


def category_matcher() -> CategoryMatcher:
    """Typed category names and keywords as the routing catalogue has them (new codes included)."""
    return CategoryMatcher({code: (rule.name, rule.keywords) for code, rule in runtime.catalogue().categories.items()})


def category_despite_contact(tracker: Tracker) -> list[EventType]:
    """Events that start the complaint form when the message is a complaint the classifier
    missed only because of its contact clause ("…井盖缺失，联系方式：138…" read as inform or
    nlu_fallback); [] otherwise. The form takes the category from the slot, the phone from the text."""
    turn = latest_turn(tracker)
    if turn.from_button:
        return []
    ranking = [r for r in intent_ranking(tracker) if r.get("name") != "nlu_fallback"]
    code = category_without_contact(turn.text, ranking, category_matcher())
    if not code:
        return []
    log.info("category %s read without the contact clause for %s", code, safe(tracker.sender_id))
    return [SlotSet("category", code), FollowupAction("complaint_form")]


def _form() -> ComplaintForm:
    return ComplaintForm(runtime.resolver(), categories=category_matcher())


def _slots(tracker: Tracker) -> dict[str, Any]:
    return {name: tracker.get_slot(name) for name in FORM_SLOTS + AUX_SLOTS + (KEPT_PHOTO_SLOT, ERASE_ASKED_SLOT)}


def summary_refusals(tracker: Tracker) -> int:
    """How many times the resident said no to the summary since this form run started (its
    draft_id was set): the assistant's 哪里不对 answers after it. From the tracker, so no slot
    (and no retraining) is needed, and an interrupted form still counts."""
    count = 0
    for event in reversed(tracker.events):
        if event.get("event") == "slot" and event.get("name") == "draft_id" and event.get("value"):
            break
        if event.get("event") == "bot" and (event.get("metadata") or {}).get("utter_action") == WHAT_WRONG:
            count += 1
    return count


def kept_answers(slots: dict[str, Any]) -> dict[str, Any]:
    """The form's answers as a hand-off keeps them for the agent (the 代登记 form's fields;
    the phone as the slot has it: masked, the held number stays server-side)."""
    phone, photo = slots.get("phone"), slots.get("photo")
    return {
        "category": slots.get("category") or "",
        "location": slots.get("location") or "",
        "street": slots.get("street_code") or "",
        "community": slots.get("community_code") or "",
        "description": mask_personal_data(slots.get("description") or ""),
        "photo": photo if photo and photo != NO_VALUE else "",
        "phone": mask_phone(phone) if phone and phone != NO_VALUE else "",
        "confidential": bool(slots.get("confidential")),
    }


class ActionInformOutsideForm(Action):
    """A place, a detail or a photo without a complaint yet. A photo is kept (the
    resident's latest, for a day) and the next complaint starts with it."""

    def name(self) -> str:
        return "action_inform_outside_form"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        recovered = category_despite_contact(tracker)
        if recovered:  # "…井盖缺失，联系方式：138…": a complaint, not a detail
            return recovered
        photo = own_photo(latest_turn(tracker))
        if photo:
            dispatcher.utter_message(response="utter_photo_kept")
            return [SlotSet(KEPT_PHOTO_SLOT, {"photo": photo[:512], "at": time.time()})]
        dispatcher.utter_message(response="utter_ask_what_problem")
        return []


FORM_ACTIONS = {"action_listen", "complaint_form", "validate_complaint_form"}


def _answered_by_another_action(tracker: Tracker) -> bool:
    """An action other than the form ran since the resident's latest message."""
    for e in reversed(tracker.events):
        if e.get("event") == "user":
            return False
        if e.get("event") == "action" and e.get("name") not in FORM_ACTIONS:
            return True
    return False


class ValidateComplaintForm(FormValidationAction):
    def name(self) -> str:
        return "validate_complaint_form"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        slots = _slots(tracker)
        requested = tracker.get_slot(REQUESTED_SLOT)
        if requested is not None and _answered_by_another_action(tracker):
            # back after an interruption (status, 不删除 …): the turn was answered by that action,
            # it is no answer to the form, which asks its question again
            return []
        turn = latest_turn(tracker)
        if requested is None and turn.from_button and turn.intent in CATEGORIES and slots.get("pending_description"):
            # a category button of action_clarify: the resident's label for the unsure message
            collect_choice(tracker.sender_id, turn.intent, slots["pending_description"])
        form = _form()
        step = form.step({**slots, REFUSALS: summary_refusals(tracker)}, requested, turn)
        if step.reject:
            return []  # not an answer: the rules handle it, then the form asks again
        if step.handoff:
            # the second no to the summary: a person takes over with the answers so far (the
            # form ends unfiled); with the store down, the 12345 advice and the form goes on
            if await hand_over(dispatcher, tracker, step.handoff, kept=kept_answers(slots)):
                step = form.handed_over()
            else:
                step.say(WHAT_WRONG)
        _to_inbox(step.inbox, tracker)
        phone = step.slots.get("phone")
        if phone and phone != NO_VALUE:
            step.slots["phone"] = await _hold_phone(tracker.sender_id, phone)
        for key, variables in step.responses:
            dispatcher.utter_message(response=key, **variables)
        slots.update(step.slots)
        events = [SlotSet(k, v) for k, v in step.slots.items()]
        events.append(SlotSet(REQUESTED_SLOT, None if step.done else next_slot(slots)))
        return events


async def _hold_phone(sender_id: str, phone: str) -> str | None:
    """The number goes to the server-side row (bot/storage/pending_phones.py), the slot gets
    the masked number: the tracker store keeps no phone numbers. When the row cannot be
    written the slot stays empty and the form asks for the phone again."""

    def work() -> None:
        with runtime.engine().begin() as conn:
            pending_phones.keep_phone(conn, sender_id, phone, datetime.now(timezone.utc))

    try:
        await runtime.run_store(work)
    except Exception as exc:  # noqa: BLE001 - asyncio.TimeoutError included
        log.error("keeping the phone failed for %s: %s", safe(sender_id), type(exc).__name__)
        return None
    return mask_phone(phone)


def _phone_to_file(sender_id: str, slot: str | None) -> str | None:
    """The number for the ticket: the held one the slot's masked number stands for; a slot
    set before numbers were held (a conversation in progress at the upgrade) is the number."""
    if not slot or slot == NO_VALUE:
        return None
    if valid_phone(slot):
        return slot
    with runtime.engine().connect() as conn:
        held = pending_phones.held_phone(conn, sender_id, datetime.now(timezone.utc))
    if held is None or mask_phone(held) != slot:
        log.warning("no held phone for %s: filed without one", safe(sender_id))
        return None
    return held


def _forget_phone(sender_id: str) -> None:
    with runtime.engine().begin() as conn:
        pending_phones.forget_phone(conn, sender_id)


def _to_inbox(note: dict[str, Any] | None, tracker: Tracker) -> None:
    """What the resident's answer teaches the review inbox: a category typed instead of a
    button (like the button), or a category corrected at the summary (not a cancel)."""
    if not note or not note.get("text"):
        return
    if "choice" in note:
        collect_choice(tracker.sender_id, note["choice"], note["text"])
    elif note.get("intent"):
        guess = [{"name": note.get("denied"), "confidence": None}]
        collect_turn("deny", note["text"], guess, tracker.sender_id, (tracker.latest_message or {}).get("message_id"),
                     {"denied": note.get("denied"), "intent": note["intent"], "chosen_by": "resident"})


class ActionAskLocation(Action):
    def name(self) -> str:
        return "action_ask_location"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        status = tracker.get_slot("location_status")
        mentions = tracker.get_slot("location_mentions") or []
        mention = " ".join(m.get("text", "") for m in mentions) or "这个地点"
        resolver = runtime.resolver()
        if status == "ambiguous":
            buttons = []
            for code in tracker.get_slot("location_candidates") or []:
                place = resolver.g.get(code)
                if place is None:
                    continue
                buttons.append({"title": resolver.choice_label(place),
                                "payload": f'/inform{{"{place.level}":"{place.code}"}}'})
            buttons.append({"title": "都不是 / 不清楚", "payload": "/deny"})
            dispatcher.utter_message(response="utter_ask_location_choose", mention=mention, buttons=buttons)
        elif status == CONFLICT and len(tracker.get_slot("location_candidates") or []) == 2:
            named, inferred = (resolver.g.get(c) for c in tracker.get_slot("location_candidates"))
            inferred_street = resolver.g.get(inferred.street_code) if inferred else None
            if named is None or inferred is None or inferred_street is None:
                dispatcher.utter_message(response="utter_ask_location_where")
                return []
            buttons = [{"title": resolver.choice_label(s), "payload": f'/inform{{"street":"{s.code}"}}'}
                       for s in (named, inferred_street)]
            # the name that placed it in the other street (not the first name said: 周边道路, 某小区)
            compounds = [m for m in mentions if m.get("level") in ("community", "place")]
            compound = next((m.get("text") for m in compounds
                             if inferred in resolver.candidates(Mention(m.get("text", ""), m["level"], m.get("value") or ""))),
                            inferred.name)
            dispatcher.utter_message(response="utter_ask_location_conflict", street=named.name, compound=compound,
                                     compound_street=inferred_street.name, buttons=buttons)
        elif status in ("partial", "unresolved") and mentions:
            dispatcher.utter_message(response="utter_ask_location_more", mention=mention)
        else:
            dispatcher.utter_message(response="utter_ask_location_where")
        return []


class ActionAskConfirm(Action):
    def name(self) -> str:
        return "action_ask_confirm"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        dispatcher.utter_message(response="utter_complaint_summary", **summary_variables(_slots(tracker)))
        return []


def _reset_events() -> list[EventType]:
    return [SlotSet(name, None) for name in FORM_SLOTS + AUX_SLOTS if name != "category"] + [SlotSet("category", None)]


class ActionSubmitComplaint(Action):
    def name(self) -> str:
        return "action_submit_complaint"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        slots = _slots(tracker)
        if slots.get("category") == HANDED_OVER:
            # a person took over with the form's answers (ValidateComplaintForm): nothing to say,
            # and the held phone stays for the agent's 代登记 until the retention job clears it
            return _reset_events() + [SlotSet("submit_failed", False)]
        if slots.get("confirm") is not True or slots.get("category") not in CATEGORIES:
            dispatcher.utter_message(response="utter_complaint_cancelled")
            try:
                await runtime.run_store(_forget_phone, tracker.sender_id)
            except Exception as exc:  # noqa: BLE001 - the retention job removes it later
                log.error("forgetting the phone failed for %s: %s", safe(tracker.sender_id), type(exc).__name__)
            return _reset_events() + [SlotSet("submit_failed", False)]

        resolution = Resolution(
            status=slots.get("location_status") or "none",
            district_code=slots.get("district_code"),
            street_code=slots.get("street_code"),
            community_code=slots.get("community_code"),
            mention_text=slots.get("location") or "",
        )
        route = runtime.router().route(slots["category"], resolution, slots.get("description") or "")
        phone = slots.get("phone")
        photo = slots.get("photo")
        draft = ComplaintDraft(
            sender_id=tracker.sender_id,
            channel=tracker.get_latest_input_channel() or "rest",
            category=slots["category"],
            description=slots.get("description") or "",
            location_text=slots.get("location") or "",
            photo=photo if photo and photo != NO_VALUE else None,
            phone=None,  # the held number, read when filing (work)
            confidential=bool(slots.get("confidential")),
            # one key per form run: a retried submission returns the same ticket
            idempotency_key=f"{tracker.sender_id}:{slots.get('draft_id')}",
        )

        def work():
            held = dataclasses.replace(draft, phone=_phone_to_file(draft.sender_id, phone))
            filed = file_complaint(runtime.uow(), held, route, datetime.now(timezone.utc))
            _forget_phone(draft.sender_id)  # the number is in the ticket now, once
            return filed

        try:
            result = await runtime.run_store(work)
        except asyncio.TimeoutError:
            # The write may still land after we stopped waiting: say so honestly. A retry
            # is safe (same idempotency key → the same ticket, never a second one).
            log.error("filing timed out for %s", safe(tracker.sender_id))
            dispatcher.utter_message(response="utter_submit_uncertain")
            return [SlotSet("submit_failed", True)]
        except Exception as exc:  # rolled back: nothing was filed, and the resident hears it
            log.error("filing failed for %s: %s", safe(tracker.sender_id), type(exc).__name__)
            dispatcher.utter_message(response="utter_submit_failed")
            return [SlotSet("submit_failed", True)]

        catalogue = runtime.catalogue()
        if result.replay:
            dispatcher.utter_message(response="utter_complaint_replay", number=result.number)
        elif result.merged:
            dispatcher.utter_message(response="utter_complaint_merged", number=result.number,
                                     count=result.report_count)
        else:
            co = [catalogue.unit_name(u) for u in route.co]
            when = lambda dt: dt.astimezone(SHANGHAI).strftime("%m月%d日 %H:%M")  # noqa: E731
            dispatcher.utter_message(
                response="utter_complaint_filed",
                number=result.number,
                lead=catalogue.unit_name(result.lead_queue),
                co_line=f"协办/属地：{'、'.join(co)}\n" if co else "",
                dispatch_label=route.dispatch_class.label,
                deadline=when(result.deadline_at),
                finish_deadline=when(result.finish_deadline_at or result.deadline_at),
            )
        log.info("ticket %s filed (merged=%s replay=%s) for %s", result.number, result.merged, result.replay,
                 safe(tracker.sender_id))
        # the photo kept from before the complaint went into this ticket (or was replaced)
        return _reset_events() + [SlotSet("submit_failed", False), SlotSet("ticket_number", result.number),
                                  SlotSet(KEPT_PHOTO_SLOT, None)]


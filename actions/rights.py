"""查看/导出我的信息 and 删除我的信息 (bot/services/rights.py): for the conversation's own
sender id, whatever the message says (a typed ticket or phone number opens nothing).

Erasure asks first (utter_erase_confirm, buttons 确认删除 /affirm, 不删除 /deny; the slot
erase_asked sends a typed yes/no here: data/rules/answers.yml). Only a yes to that question,
asked in the turn just before, erases; a no, or a yes to anything else, changes nothing.

Asked in the middle of the complaint form, the question waits for its answer (the form
rejects a yes/no while erase_asked is set: bot/conversation.py); after a no the form asks
its question again, after a yes the unfinished complaint goes with the rest (its phone is
erased too) and the form ends (action_deactivate_loop, data/rules/answers.yml)."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import latest_turn, log, safe
from actions.status import fmt_time
from bot.conversation import AUX_SLOTS, FORM_SLOTS
from bot.ops import runtime
from bot.rasa_ext.erasure import ERASED_SLOT
from bot.services.rights import erase_for_sender, held_for_sender
from bot.uploads import upload_folder

ASKED = "erase_asked"
CONFIRM = "utter_erase_confirm"
FORM = "complaint_form"
CHANNELS = {"wechat": "微信", "rest": "网页", "socketio": "网页对话", "qc_widget": "网页对话"}


def _channel(tracker: Tracker) -> str:
    return CHANNELS.get(tracker.get_latest_input_channel() or "", "对话")


class ActionMyData(Action):
    def name(self) -> str:
        return "action_my_data"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        try:
            held = await runtime.run_store(held_for_sender, runtime.uow(), tracker.sender_id,
                                           datetime.now(timezone.utc))
        except (asyncio.TimeoutError, Exception) as exc:
            log.error("my data lookup failed for %s: %s", safe(tracker.sender_id), type(exc).__name__)
            dispatcher.utter_message(response="utter_my_data_unavailable")
            return []
        channel = _channel(tracker)
        if held.reports:
            dispatcher.utter_message(response="utter_my_data_header", channel=channel)
            for r in held.reports:
                dispatcher.utter_message(
                    response="utter_my_data_ticket", number=r.number, category_name=r.category_name, state=r.state,
                    created=fmt_time(r.created_at), place=r.place or "未说明", description=r.description,
                    phone=r.phone or "未留", photo="有" if r.photo else "无", confidential="是" if r.confidential else "否")
        else:
            dispatcher.utter_message(response="utter_my_data_none", channel=channel)
        if held.handoff_messages:
            dispatcher.utter_message(response="utter_my_data_handoff", messages=held.handoff_messages)
        messages = sum(1 for e in tracker.events if e.get("event") == "user")
        dispatcher.utter_message(response="utter_my_data_footer", messages=messages)
        return []


class ActionEraseAsk(Action):
    def name(self) -> str:
        return "action_erase_ask"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        try:
            held = await runtime.run_store(held_for_sender, runtime.uow(), tracker.sender_id,
                                           datetime.now(timezone.utc))
        except (asyncio.TimeoutError, Exception) as exc:
            log.error("erasure lookup failed for %s: %s", safe(tracker.sender_id), type(exc).__name__)
            dispatcher.utter_message(response="utter_my_data_unavailable")
            return []
        open_line = f"，其中 {held.open_tickets} 个尚未办结的工单将撤回并关闭" if held.open_tickets else ""
        dispatcher.utter_message(response=CONFIRM, tickets=held.tickets, open_line=open_line)
        return [SlotSet(ASKED, True)]


def _asked_just_before(tracker: Tracker) -> bool:
    """The bot's last words before this message were the erasure question."""
    seen_user = False
    for e in reversed(tracker.events):
        if e.get("event") == "user":
            if seen_user:
                return False
            seen_user = True
        elif e.get("event") == "bot" and seen_user:
            return (e.get("metadata") or {}).get("utter_action") == CONFIRM
    return False


class ActionEraseMyData(Action):
    def name(self) -> str:
        return "action_erase_my_data"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        in_form = tracker.active_loop_name == FORM
        # nothing erased during the form: it asks its question again (data/rules/answers.yml)
        done: list[EventType] = [SlotSet(ASKED, None), *([FollowupAction(FORM)] if in_form else [])]
        turn = latest_turn(tracker)
        if turn.intent != "affirm" or not _asked_just_before(tracker):
            dispatcher.utter_message(response="utter_erase_kept")
            return done
        try:
            erased = await runtime.run_store(erase_for_sender, runtime.uow(), tracker.sender_id, upload_folder(),
                                             datetime.now(timezone.utc))
        except (asyncio.TimeoutError, Exception) as exc:
            # one transaction: nothing changed (a time-out may still land: a second yes finds nothing left)
            log.error("erasure failed for %s: %s", safe(tracker.sender_id), type(exc).__name__)
            dispatcher.utter_message(response="utter_erase_failed")
            return done
        log.info("erasure: %d tickets (%d closed, %d noted), %d photo files", erased.tickets, erased.closed,
                 erased.noted, erased.photos_deleted)
        closed_line = f"，{erased.closed} 个未办结的工单已撤回关闭" if erased.closed else ""
        form_line = "，您正在填写、尚未提交的诉求已一并取消" if in_form else ""
        dispatcher.utter_message(response="utter_erase_done", tickets=erased.tickets, closed_line=closed_line,
                                 form_line=form_line)
        # the tracker store drops the transcript; the unfinished form ends with it (the rule
        # deactivates it next, so that it does not ask its question again)
        ended = [SlotSet("requested_slot", None), *(SlotSet(name, None) for name in FORM_SLOTS + AUX_SLOTS)] \
            if in_form else []
        return [SlotSet(ASKED, None), *ended, SlotSet(ERASED_SLOT, time.time())]

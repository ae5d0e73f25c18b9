"""Notifications: ticket events → the outbox (each announced exactly once), and the
worker notices shown in the console."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from bot.console.names import queue_label
from bot.console.repository import OutboxMessage
from bot.console.services.access import Principal
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.model import (
    ACCEPT,
    ADD_BY_RESIDENT,
    APPROVE_EXTENSION,
    ASK,
    DISPATCH,
    DISPATCH_CENTER,
    ESCALATE,
    EXTEND,
    MERGE,
    RECATEGORISE,
    REDISPATCH,
    REJECT_RETURN,
    REOPEN,
    REPORTER_ERASED,
    RESOLVE,
    RETURN,
    ROUTING_KINDS,
    SUPERVISE,
    WITHDRAW,
)
from bot.storage import questions as qs
from bot.text import mask_personal_data

FEED = "notifications"


# Report channels a notice cannot be pushed to: the client polls (Open311), or there is no
# conversation at all (a phone caller, 来电登记: they ask by ticket number + phone digits).
NO_PUSH_CHANNELS = frozenset({"open311", "phone"})


# --- notifications: the event feed → the outbox ------------------------------

# 延期 reaches a resident when it is granted (the new 办结 date: action_ticket_update looks it
# up); 改派 with the new lead unit's public name only (never a person or an internal code).
RESIDENT_EVENTS = {ACCEPT: "accepted", RESOLVE: "resolved", REOPEN: "reopened",
                   APPROVE_EXTENSION: "extended", REDISPATCH: "redispatched"}


def process_feed(uow: ConsoleUnitOfWork, now: datetime, batch: int = 500) -> int:
    """Turn new ticket events (whoever wrote them: the assistant, the console, Open311)
    into outbox messages, in the same transaction as the cursor: each event is announced
    exactly once. Returns how many messages were queued."""
    queued = 0
    with uow:
        last = uow.console.cursor(FEED, lock=True)
        if last is None:
            last = uow.console.init_cursor(FEED, now)
        events = uow.console.events_after(last, batch)
        reporters: dict[int, list[Any]] = {}
        for e in events:
            asked = qs.get(uow.connection(), int(e.data["question_id"])) \
                if e.kind == ASK and (e.data or {}).get("question_id") else None
            for message in _notices_for(e, lambda tid: reporters.setdefault(tid, uow.console.reporters(tid)),
                                        asked.sender_id if asked is not None else None):
                question_id = message.pop("question_id", None)
                message_id = uow.console.enqueue(now=now, ticket_id=e.ticket_id, **message)
                if question_id is not None:  # the question is open once this message is sent
                    qs.link_outbox(uow.connection(), question_id, message_id)
                queued += 1
            last = e.id
        if events:
            uow.console.set_cursor(FEED, last, now)
        uow.commit()
    return queued


def ensure_feed(uow: ConsoleUnitOfWork, now: datetime) -> None:
    with uow:
        if uow.console.cursor(FEED) is None:
            try:
                uow.console.init_cursor(FEED, now)
                uow.commit()
            except IntegrityError:
                pass  # another process created it first


def _notices_for(e: Any, reporters_of: Any, asked: str | None = None) -> list[dict[str, Any]]:
    """`asked`: for a 询问居民 event, the conversation of the resident asked (its question row)."""
    number = e.number
    out: list[dict[str, Any]] = []
    data = dict(e.data or {})

    def workers(queues: Iterable[str], event: str, text: str) -> None:
        for q in dict.fromkeys(queues):
            out.append(
                {
                    "kind": "worker",
                    "channel": "console",
                    "recipient": q,
                    "event": event,
                    "payload": {"number": number, "text": text, "reason": e.reason},
                }
            )

    queues_now = [data.get("lead") or e.lead_queue, *(data.get("co") if "co" in data else (e.co_queues or []))]
    if e.kind in ROUTING_KINDS:
        label = {DISPATCH: "新工单", REDISPATCH: "改派工单", REOPEN: "重办工单", RECATEGORISE: "改类工单"}[e.kind]
        event = {DISPATCH: "new", REDISPATCH: "redispatched", REOPEN: "reopened", RECATEGORISE: "recategorised"}[e.kind]
        workers(queues_now, event, f"{label} {number}")
    elif e.kind == RETURN:
        workers([DISPATCH_CENTER], "returned", f"退单待审核 {number}：{e.reason}")
    elif e.kind == ESCALATE:
        workers([DISPATCH_CENTER], "escalated", f"提级 {number}：{e.reason}")
    elif e.kind == SUPERVISE:
        workers([e.lead_queue, *(e.co_queues or []), DISPATCH_CENTER], "overdue", f"超期督办 {number}")
    elif e.kind == EXTEND:
        workers([DISPATCH_CENTER], "extension", f"延期申请 {number}：{e.reason}")
    elif e.kind == REJECT_RETURN:
        workers([e.lead_queue, *(e.co_queues or [])], "return_rejected", f"退单被驳回 {number}：{e.reason}")
    elif e.kind == MERGE:
        workers([e.lead_queue, *(e.co_queues or [])], "merged", f"并单 {number}（又有居民反映）")
    elif e.kind == ADD_BY_RESIDENT:
        workers([e.lead_queue, *(e.co_queues or [])], "resident_added", f"居民补充 {number}：{mask_personal_data(e.reason)}")
    elif e.kind == WITHDRAW:  # withdrawn by the resident, or closed by their erasure: the units stop
        workers([e.lead_queue, *(e.co_queues or [])], "withdrawn", f"居民撤单 {number}：{mask_personal_data(e.reason)}")
    elif e.kind == REPORTER_ERASED:
        workers([e.lead_queue, *(e.co_queues or [])], "reporter_erased", f"反映人删除信息 {number}")
    if e.kind == ASK and asked:
        # a handler's question, to the one resident it was asked of (services/questions.py)
        out.append(
            {
                "kind": "resident",
                "channel": "rasa",
                "recipient": asked,
                "event": "question",
                "payload": {"ticket_number": number, "ticket_event": "question", "question": e.reason},
                "question_id": data.get("question_id"),
            }
        )
    if e.kind in RESIDENT_EVENTS:
        event = RESIDENT_EVENTS[e.kind]
        seen = set()
        for r in reporters_of(e.ticket_id):
            if r.channel in NO_PUSH_CHANNELS or r.sender_id in seen:
                continue
            seen.add(r.sender_id)
            if e.kind == REOPEN and e.actor == f"resident:{r.sender_id}":
                continue  # the resident asked for it in the chat and was answered there
            out.append(
                {
                    "kind": "resident",
                    "channel": "rasa",
                    "recipient": r.sender_id,
                    "event": event,
                    "payload": {
                        "ticket_number": number,
                        "ticket_event": event,
                        "result": e.reason if e.kind == RESOLVE else "",
                        **({"new_unit": queue_label(data["lead"])} if e.kind == REDISPATCH and data.get("lead") else {}),
                    },
                }
            )
    return out


# --- notices in the console --------------------------------------------------


def notices(uow: ConsoleUnitOfWork, p: Principal, now: datetime, mark_seen: bool = False) -> list[OutboxMessage]:
    with uow:
        found = uow.console.worker_notices(p.notice_queues())
        if mark_seen:
            uow.console.set_notices_seen(p.id, now)
            uow.commit()
        return found


def unread_notices(uow: ConsoleUnitOfWork, p: Principal) -> int:
    with uow:
        user = uow.console.get_user(p.id)
        since = user.notices_seen_at if user else None
        return uow.console.unread_notice_count(p.notice_queues(), since)

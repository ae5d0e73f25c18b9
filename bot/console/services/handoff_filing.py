"""A 坐席 files a ticket for the resident of a hand-off (代登记): the 来电登记 form's fields
(bot/console/services/intake.py; the phone optional), routed by the same router, with the
routing explainer's proposal, but the ticket belongs to the resident's conversation: its
report's sender and channel are the hand-off's, so the resident gets the ticket's notices and
asks its status in the same chat.

Exactly once: the form's token is the idempotency key (a double submit or a retry files
nothing more), and the resident is told the number once (a 代登记 step with the number,
checked and written under the hand-off's row lock).

A resident's 留言 (a hand-off left) is read the same way without a person (settle_left):
when the explainer finds a category and a street in it, it is filed as the resident's
ticket and the resident is told the number; otherwise it stays in the agents' list as a
咨询 item (转咨询) for a person to answer. Nothing is dropped: until it is read (the Rasa
server may be down) it simply stays in the list."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.console.services.access import ConsoleError, Principal
from bot.console.services.intake import MAX_DESCRIPTION, MAX_PLACE, Call, collect_corrections, route_of
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.handoff import (
    CLOSE,
    CONSULT,
    FILED,
    FILED_NOTICE,
    MERGED_NOTICE,
    QUESTION,
    Handoff,
    HandoffState,
    InvalidHandoffStep,
)
from bot.domain.model import ComplaintDraft
from bot.services.handoff import AlreadyTaken
from bot.services.tickets import FilingResult, IdempotencyConflict, file_complaint
from bot.storage.handoff import HandoffRepository
from bot.text import find_phone, valid_phone

FILING_ROLES = ("agent", "admin")
HANDOFF_CHANNEL = "handoff"  # the review inbox's dedupe keys of a 坐席's corrections


def may_file(h: Handoff, actor: str) -> bool:
    """The agent holding the conversation, or any agent of the queue for a 留言 (left)."""
    return (h.state is HandoffState.TAKEN and h.agent == actor) or h.state is HandoffState.LEFT


def draft_for(h: Handoff, call: Call, p: Principal) -> ComplaintDraft:
    return ComplaintDraft(
        sender_id=h.sender_id,
        channel=h.channel,
        category=call.category,
        description=call.description,
        location_text=call.place,
        photo=None,
        phone=call.phone or None,
        confidential=call.confidential,
        idempotency_key=f"{h.sender_id}:handoff:{call.token}",
        taken_by=p.actor,
    )


def file_for_resident(uow: ConsoleUnitOfWork, p: Principal, handoff_id: int, call: Call,
                      now: datetime) -> FilingResult:
    if p.role not in FILING_ROLES:
        raise ConsoleError("只有坐席可以代居民登记", 403)
    with uow:
        h = HandoffRepository(uow.connection()).get(handoff_id)
    if h is None:
        raise LookupError(handoff_id)
    if not may_file(h, p.actor):
        raise AlreadyTaken(h.agent, h.state)
    try:
        result = file_complaint(uow, draft_for(h, call, p), route_of(call), now)
    except IdempotencyConflict:
        raise ConsoleError("表单已失效，请刷新页面后重新填写。", 400) from None
    if tell_resident(uow, h, p.actor, result, now):
        collect_corrections(uow, call, result.ticket_id, now, HANDOFF_CHANNEL, chosen_by="agent")
    return result


def tell_resident(uow: ConsoleUnitOfWork, h: Handoff, actor: str, result: FilingResult, now: datetime) -> bool:
    """The 代登记 step and the number to the resident, once per ticket and hand-off (a retry
    after a crash between the filing and this still tells; a double submit tells once).
    True when told now."""
    assert h.id is not None
    with uow:
        repo = HandoffRepository(uow.connection())
        repo.lock(h.id, now)
        if repo.has_event(h.id, FILED, result.number):
            return False
        repo.event(h.id, FILED, actor, now, result.number)
        notice = MERGED_NOTICE if result.merged else FILED_NOTICE
        repo.add_message(h, actor, True, notice.format(number=result.number), now)
        uow.commit()
        return True


# --- 留言 without a person -------------------------------------------------------------

SYSTEM = "system"


@dataclass(frozen=True)
class Unsettled:
    handoff_id: int
    text: str  # what the resident wrote to the person, in order


def _read(h: Handoff) -> bool:
    return any(e.kind in (FILED, CONSULT) for e in h.events)


def unsettled(uow: ConsoleUnitOfWork) -> list[Unsettled]:
    """The 留言 nobody has read yet (questions the knowledge base missed are 咨询 already)."""
    out = []
    with uow:
        repo = HandoffRepository(uow.connection())
        for listed in repo.queue(None):
            if listed.state is not HandoffState.LEFT or listed.reason == QUESTION or listed.id is None:
                continue
            h = repo.get(listed.id)
            if h is None or _read(h):
                continue
            words = "；".join(r.text for r in repo.messages(listed.id) if r.author == "resident")
            if words.strip():
                out.append(Unsettled(listed.id, words[:MAX_DESCRIPTION]))
    return out


def settle_left(uow: ConsoleUnitOfWork, item: Unsettled, proposed: Mapping[str, Any], now: datetime) -> str:
    """File the 留言 as the resident's ticket when the explainer's proposal (intake.proposal)
    reads a complaint with a street (the number, told to the resident, is returned; the
    hand-off ends), else mark it a 咨询 item ("")."""
    with uow:
        h = HandoffRepository(uow.connection()).get(item.handoff_id)
    if h is None or h.state is not HandoffState.LEFT or _read(h):
        return ""
    category, street = proposed.get("category"), proposed.get("street")
    if not category or category == "other" or not street:
        with uow:
            repo = HandoffRepository(uow.connection())
            repo.lock(item.handoff_id, now)
            if not repo.has_event(item.handoff_id, CONSULT, ""):
                repo.event(item.handoff_id, CONSULT, SYSTEM, now)
            uow.commit()
        return ""
    phone = find_phone(item.text)
    places = " ".join(str(p) for p in proposed.get("places") or [] if p)
    call = Call(description=item.text, place=(places or item.text)[:MAX_PLACE],
                phone=phone if phone and valid_phone(phone) else "", confidential=False, category=category,
                street=street, community=proposed.get("community"), proposed_category=None,
                proposed_street=None, token=f"leave-{item.handoff_id}")
    draft = ComplaintDraft(sender_id=h.sender_id, channel=h.channel, category=category, description=item.text,
                           location_text=call.place, photo=None, phone=call.phone or None, confidential=False,
                           idempotency_key=f"{h.sender_id}:leave:{item.handoff_id}")
    result = file_complaint(uow, draft, route_of(call), now)
    tell_resident(uow, h, SYSTEM, result, now)
    with uow:
        repo = HandoffRepository(uow.connection())
        current = repo.get(item.handoff_id)
        try:
            if current is not None and current.state is HandoffState.LEFT:
                repo.step(current, CLOSE, SYSTEM, now)
                uow.commit()
        except InvalidHandoffStep:  # an agent closed or took it meanwhile: theirs now
            uow.rollback()
    return result.number

"""A 坐席 files a ticket for the resident of a hand-off (代登记): the 来电登记 form's fields
(bot/console/services/intake.py; the phone optional), routed by the same router, with the
routing explainer's proposal, but the ticket belongs to the resident's conversation: its
report's sender and channel are the hand-off's, so the resident gets the ticket's notices and
asks its status in the same chat.

Exactly once: the form's token is the idempotency key (a double submit or a retry files
nothing more), and the resident is told the number once (a 代登记 step with the number,
checked and written under the hand-off's row lock)."""

from __future__ import annotations

from datetime import datetime

from bot.console.services.access import ConsoleError, Principal
from bot.console.services.intake import Call, collect_corrections, route_of
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.handoff import FILED, FILED_NOTICE, MERGED_NOTICE, Handoff, HandoffState
from bot.domain.model import ComplaintDraft
from bot.services.handoff import AlreadyTaken
from bot.services.tickets import FilingResult, IdempotencyConflict, file_complaint
from bot.storage.handoff import HandoffRepository

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

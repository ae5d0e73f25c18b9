"""What a resident does to their own open ticket from the chat: add a message or a photo
(补充) or withdraw it (撤单, with a reason). Identity is the channel identity: only a sender
with a report on the ticket may, like ticket_status; anyone else gets the unknown number's
answer. Each change is one ticket event (the units hear of it through the outbox feed); a
retried message (same key) changes nothing and gets the first answer again."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from bot.domain.model import ADD_BY_RESIDENT, OPEN_STATES, WITHDRAW, Ticket, TicketState
from bot.domain.numbers import parse_ticket_number
from bot.services.tickets import TicketStatus, retry_on_stale, tickets_for_sender
from bot.storage.uow import AbstractUnitOfWork

MAX_TEXT = 2000


@dataclass(frozen=True)
class ResidentChange:
    # added | withdrawn | not_found | closed (办结/回访: nothing to add or withdraw) |
    # already_withdrawn | shared (other residents reported it too: not withdrawn) | empty
    status: str
    number: str | None
    state: TicketState | None = None


def _replayed(ticket: Ticket, kind: str, key: str) -> bool:
    return any(e.kind == kind and e.data.get("key") == key for e in ticket.events)


def _change(uow: AbstractUnitOfWork, number: str, sender_id: str, kind: str, text: str, key: str, now: datetime,
            photo: str | None = None) -> ResidentChange:
    canonical = parse_ticket_number(number or "")
    if canonical is None:
        return ResidentChange("not_found", None)
    text = (text or "").strip()[:MAX_TEXT]
    done = "added" if kind == ADD_BY_RESIDENT else "withdrawn"

    def once() -> ResidentChange:
        with uow:
            ticket = uow.tickets.get_by_number(canonical)
            if ticket is None or ticket.id is None or not uow.tickets.sender_has_report(ticket.id, sender_id):
                return ResidentChange("not_found", canonical)
            if _replayed(ticket, kind, key):
                return ResidentChange(done, canonical, ticket.state)  # the retry gets the first answer
            if ticket.state is TicketState.WITHDRAWN:
                return ResidentChange("already_withdrawn", canonical, ticket.state)
            if ticket.state not in OPEN_STATES:
                return ResidentChange("closed", canonical, ticket.state)
            if not text and not photo:
                return ResidentChange("empty", canonical, ticket.state)
            actor = f"resident:{sender_id}"
            if kind == WITHDRAW:
                others = set(uow.tickets.report_senders(ticket.id)) - {sender_id}
                if others:  # withdrawing would close the others' complaint too
                    return ResidentChange("shared", canonical, ticket.state)
                ticket.apply(WITHDRAW, actor, text, now, key=key)
            else:
                ticket.apply(ADD_BY_RESIDENT, actor, text or "（照片）", now, key=key,
                             **({"photo": photo} if photo else {}))
            uow.tickets.save_events(ticket)
            uow.commit()
            return ResidentChange(done, canonical, ticket.state)

    return retry_on_stale(once)


def add_to_ticket(uow: AbstractUnitOfWork, number: str, sender_id: str, text: str, photo: str | None, key: str,
                  now: datetime) -> ResidentChange:
    """补充: the resident's words and/or photo (a reference the caller checked is this
    resident's own upload) on their own open ticket."""
    return _change(uow, number, sender_id, ADD_BY_RESIDENT, text, key, now, photo)


def withdraw_ticket(uow: AbstractUnitOfWork, number: str, sender_id: str, reason: str, key: str,
                    now: datetime) -> ResidentChange:
    """撤单: the resident withdraws their own open ticket, giving a reason."""
    return _change(uow, number, sender_id, WITHDRAW, reason, key, now)


def open_tickets_of(uow: AbstractUnitOfWork, sender_id: str) -> list[TicketStatus]:
    """The resident's open tickets (the one to act on when no number was given)."""
    return [t for t in tickets_for_sender(uow, sender_id, 20) if t.state in OPEN_STATES]


# --- reading the resident's message (pure) -----------------------------------

_NUMBER = re.compile(r"QC[\s\-－—_]*\d{6}[\s\-－—_]*\d{4}", re.I)
_COMMAND = re.compile(
    r"^[\s,，。.:：!！、]*(?:我(?:要|想|需要)?)?(?:再)?(?:补充(?:一下|说明|情况)?|追加|添加|撤单|撤销|撤回|取消|不用(?:再)?处理了?)"
    r"(?:一下)?(?:我的|这个|该)?(?:工单|诉求|投诉|反映)?(?:号)?[\s,，。.:：!！、]*(?:原因是|原因|理由是|理由|因为)?[\s,，。.:：!！、]*"
)


def split_request(text: str) -> tuple[str | None, str]:
    """'撤单 QC-261206-0001 问题已自行解决' → ('QC-261206-0001', '问题已自行解决'): the ticket
    number (None when not given) and what is left once it and the command words are removed."""
    folded = unicodedata.normalize("NFKC", text or "")
    number = parse_ticket_number(folded)
    rest = _NUMBER.sub(" ", folded) if number else folded
    rest = _COMMAND.sub("", rest.strip(), count=1)
    return number, rest.strip(" \t\r\n,，。.:：、")

"""What a ticket's event history says about its current handling round: who accepted it
(签收), for which unit, and the 延期 request still waiting for approval. Pure: no
framework imports."""

from __future__ import annotations

from typing import Any

from bot.domain.model import ACCEPT, APPROVE_EXTENSION, EXTEND, ROUTING_KINDS, Ticket, TicketState


def assignee(ticket: Ticket) -> str | None:
    """Actor who accepted (签收) the ticket in its current handling round."""
    for e in reversed(ticket.events):
        if e.kind == ACCEPT:
            return e.actor
        if e.kind in ROUTING_KINDS:
            return None
    return None


def assignee_name(ticket: Ticket) -> str | None:
    for e in reversed(ticket.events):
        if e.kind == ACCEPT:
            return str(e.data.get("by") or e.actor)
        if e.kind in ROUTING_KINDS:
            return None
    return None


def pending_extension(ticket: Ticket) -> dict[str, Any] | None:
    """The open 延期 request (not yet granted), if any."""
    if ticket.state not in (TicketState.ACCEPTED, TicketState.IN_PROGRESS):
        return None
    for e in reversed(ticket.events):
        if e.kind == APPROVE_EXTENSION:
            return None
        if e.kind == EXTEND:
            return {"days": int(e.data.get("days") or 1), "reason": e.reason, "actor": e.actor, "at": e.at}
        if e.kind in ROUTING_KINDS:
            return None
    return None

def accepted_unit(ticket: Ticket) -> str | None:
    """The unit the current round's 签收 was made for (None before one, or when not recorded)."""
    for e in reversed(ticket.events):
        if e.kind == ACCEPT:
            return str(e.data["unit"]) if e.data.get("unit") else None
        if e.kind in ROUTING_KINDS:
            return None
    return None

"""Who may see what: the signed-in principal, its scope over tickets, and the refusals
a user reads (ConsoleError, NotFound, SessionExpired)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.console.repository import TicketFilter, User
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.model import (
    DISPATCH_CENTER,
    EXTEND,
    Ticket,
    TicketState,
)

# --- errors ------------------------------------------------------------------


class ConsoleError(Exception):
    """A refusal the user should read (bad input, a lost race, a state that changed)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotFound(Exception):
    """No such ticket *for this user*: invisible tickets look exactly like missing ones."""


class SessionExpired(Exception):
    pass


# --- principals and visibility ----------------------------------------------


@dataclass(frozen=True)
class Principal:
    id: int
    username: str
    display_name: str
    role: str
    queues: frozenset[str]

    @classmethod
    def of(cls, user: User) -> Principal:
        return cls(user.id, user.username, user.display_name, user.role, frozenset(user.queues))

    @property
    def actor(self) -> str:
        return f"user:{self.username}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_dispatcher(self) -> bool:
        return self.role in ("dispatcher", "admin")

    def scope(self, now: datetime) -> TicketFilter:
        if self.is_admin:
            return TicketFilter(all_tickets=True)
        if self.role == "dispatcher":
            return TicketFilter(
                queues=tuple(sorted(self.queues | {DISPATCH_CENTER})), returned=True, overdue_before=now, extensions=True
            )
        return TicketFilter(queues=tuple(sorted(self.queues)))

    def notice_queues(self) -> list[str] | None:
        if self.is_admin:
            return None
        queues = set(self.queues)
        if self.role == "dispatcher":
            queues.add(DISPATCH_CENTER)
        return sorted(queues)


CONFIDENTIAL_ROLES = frozenset({"dispatcher", "admin"})  # may see a 保密 ticket's resident


def may_see_phone(role: str, confidential: bool, phone_roles: frozenset[str]) -> bool:
    """The one rule for a resident's phone in the console, shown, revealed or searched by its
    last four digits: the roles QC_PHONE_ROLES names, and on a 保密 ticket only the dispatch
    centre and admins among them."""
    return role in phone_roles and (not confidential or role in CONFIDENTIAL_ROLES)


def ticket_queues(ticket: Ticket) -> set[str]:
    return {ticket.lead_queue, *ticket.co_queues}


def is_member(p: Principal, ticket: Ticket) -> bool:
    return bool(p.queues & ticket_queues(ticket))


def can_see(p: Principal, ticket: Ticket, now: datetime) -> bool:
    if p.is_admin or is_member(p, ticket):
        return True
    if p.role == "dispatcher":
        return (
            ticket.lead_queue == DISPATCH_CENTER
            or ticket.state is TicketState.RETURNED
            or ticket.is_overdue(now)
            or (
                ticket.state in (TicketState.ACCEPTED, TicketState.IN_PROGRESS)
                and any(e.kind == EXTEND for e in ticket.events)
            )
        )
    return False


def signing_unit(p: Principal, ticket: Ticket) -> str | None:
    """The unit a 签收 is made for: the user's queue on the ticket (the lead when it is
    theirs, else their street or co-unit), so the resident is told who really took it."""
    if ticket.lead_queue in p.queues:
        return ticket.lead_queue
    mine = [q for q in ticket.co_queues if q in p.queues]
    return mine[0] if mine else None


def get_visible(uow: ConsoleUnitOfWork, p: Principal, ticket_id: int, now: datetime) -> Ticket:
    ticket = uow.tickets.get(ticket_id)
    if ticket is None or not can_see(p, ticket, now):
        raise NotFound(ticket_id)
    return ticket

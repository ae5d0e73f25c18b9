"""In-memory repository and unit of work for fast service tests."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bot.domain.model import DispatchClass, Report, Ticket
from bot.domain.numbers import format_ticket_number
from bot.storage.repository import AbstractTicketRepository, DuplicateReport, StaleTicket
from bot.storage.uow import AbstractUnitOfWork


@dataclass
class FakeData:
    """Everything the fake 'database' holds; snapshotted for rollback."""

    tickets: dict[int, Ticket] = field(default_factory=dict)
    reports: list[Report] = field(default_factory=list)
    counters: dict[date, int] = field(default_factory=dict)
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)


class FakeTicketRepository(AbstractTicketRepository):
    # Stores and hands out copies, like a real database would.

    def __init__(self) -> None:
        self.data = FakeData()

    def add(self, ticket: Ticket, first_report: Report) -> int:
        ticket.id = max(self.data.tickets, default=0) + 1
        ticket.version = 1
        ticket.saved_event_count = len(ticket.events)
        self.data.tickets[ticket.id] = copy.deepcopy(ticket)
        self.add_report(ticket.id, first_report)
        return ticket.id

    def get(self, ticket_id: int) -> Ticket | None:
        return copy.deepcopy(self.data.tickets.get(ticket_id))

    def get_by_number(self, number: str) -> Ticket | None:
        return next((copy.deepcopy(t) for t in self.data.tickets.values() if t.number == number), None)

    def find_open_duplicate(self, category: str, community_code: str, since: datetime) -> Ticket | None:
        found = [
            t
            for t in self.data.tickets.values()
            if t.category == category and t.community_code == community_code and t.is_open and t.created_at >= since
        ]
        return copy.deepcopy(max(found, key=lambda t: (t.created_at, t.id), default=None))

    def add_report(self, ticket_id: int, report: Report) -> int:
        if self.report_by_idempotency_key(report.idempotency_key) is not None:
            raise DuplicateReport(report.idempotency_key)
        stored = dataclasses.replace(report, ticket_id=ticket_id, id=len(self.data.reports) + 1)
        self.data.reports.append(stored)
        return stored.id  # type: ignore[return-value]

    def report_by_idempotency_key(self, key: str) -> Report | None:
        return next((r for r in self.data.reports if r.idempotency_key == key), None)

    def report_senders(self, ticket_id: int) -> list[str]:
        return sorted({r.sender_id for r in self.data.reports if r.ticket_id == ticket_id})

    def report_phones(self, ticket_id: int) -> list[str]:
        return [r.phone for r in self.data.reports if r.ticket_id == ticket_id and r.phone is not None]

    def sender_has_report(self, ticket_id: int, sender_id: str) -> bool:
        return any(r.ticket_id == ticket_id and r.sender_id == sender_id for r in self.data.reports)

    def tickets_for_sender(self, sender_id: str, limit: int) -> list[Ticket]:
        ids = {r.ticket_id for r in self.data.reports if r.sender_id == sender_id}
        found = sorted((self.data.tickets[i] for i in ids), key=lambda t: (t.created_at, t.id), reverse=True)
        return copy.deepcopy(found[:limit])

    def save_events(self, ticket: Ticket) -> None:
        assert ticket.id is not None
        if self.data.tickets[ticket.id].version != ticket.version:
            raise StaleTicket(ticket.number)
        ticket.version += 1
        ticket.saved_event_count = len(ticket.events)
        self.data.tickets[ticket.id] = copy.deepcopy(ticket)

    def next_number(self, day: date) -> str:
        self.data.counters[day] = self.data.counters.get(day, 0) + 1
        return format_ticket_number(day, self.data.counters[day])

    def queue_name(self, code: str) -> str | None:
        queue = self.data.queues.get(code)
        return queue["name"] if queue else None

    def upsert_queue(self, code: str, name: str, kind: str) -> None:
        self.data.queues[code] = {"code": code, "name": name, "kind": kind}

    def upsert_routing_rule(
        self, category: str, lead: str, co: Sequence[str], dispatch_class: DispatchClass, updated_at: datetime
    ) -> None:
        self.data.rules[category] = {
            "category": category,
            "lead": lead,
            "co": list(co),
            "dispatch_class": dispatch_class,
            "updated_at": updated_at,
        }


class FakeUnitOfWork(AbstractUnitOfWork):
    def __init__(self) -> None:
        self.tickets = FakeTicketRepository()
        self.commits = 0
        self._snapshot = FakeData()

    def __enter__(self) -> FakeUnitOfWork:
        self._snapshot = copy.deepcopy(self.tickets.data)
        return self

    def commit(self) -> None:
        self._snapshot = copy.deepcopy(self.tickets.data)
        self.commits += 1

    def rollback(self) -> None:
        self.tickets.data = copy.deepcopy(self._snapshot)

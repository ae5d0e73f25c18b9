"""Ticket repository: the only code that reads and writes ticket tables."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from bot.domain.limits import StepLimits
from bot.domain.model import OPEN_STATES, DispatchClass, Report, Ticket, TicketEvent, TicketState
from bot.domain.numbers import format_ticket_number
from bot.security.identity import REST_CHANNEL, legacy_rest_sender
from bot.storage.search import index_ticket
from bot.storage.tables import (
    queues,
    routing_rules,
    ticket_counters,
    ticket_events,
    ticket_reports,
    tickets,
)


class DuplicateReport(Exception):
    """A report with this idempotency key was stored meanwhile (by another transaction)."""


class StaleTicket(Exception):
    """The ticket row changed since it was loaded (optimistic version check failed)."""


class AbstractTicketRepository(abc.ABC):
    @abc.abstractmethod
    def add(self, ticket: Ticket, first_report: Report) -> int:
        """Insert a new ticket, its first report and its events; sets and returns ticket.id."""

    @abc.abstractmethod
    def get(self, ticket_id: int) -> Ticket | None: ...

    @abc.abstractmethod
    def get_by_number(self, number: str) -> Ticket | None: ...

    @abc.abstractmethod
    def find_open_duplicate(self, category: str, community_code: str, since: datetime) -> Ticket | None:
        """Most recent open ticket of this category and community created at or after `since`.

        The caller merges into it, so the row stays locked until commit (where the database can).
        """

    @abc.abstractmethod
    def add_report(self, ticket_id: int, report: Report) -> int:
        """Store a report on an existing ticket; raises DuplicateReport on a known idempotency key."""

    @abc.abstractmethod
    def report_by_idempotency_key(self, key: str) -> Report | None: ...

    @abc.abstractmethod
    def sender_has_report(self, ticket_id: int, sender_id: str) -> bool: ...

    @abc.abstractmethod
    def report_phones(self, ticket_id: int) -> list[str]:
        """The phone numbers given on a ticket's reports (none: reports without one)."""

    @abc.abstractmethod
    def report_senders(self, ticket_id: int) -> list[str]:
        """The sender ids of a ticket's reports (for counting distinct residents)."""

    @abc.abstractmethod
    def tickets_for_sender(self, sender_id: str, limit: int) -> list[Ticket]:
        """Tickets this sender reported (first or merged report), newest first."""

    @abc.abstractmethod
    def save_events(self, ticket: Ticket) -> None:
        """Append ticket.new_events and update the ticket row; raises StaleTicket on a lost race."""

    @abc.abstractmethod
    def next_number(self, day: date) -> str:
        """Next ticket number of that (Asia/Shanghai) day, e.g. QC-261124-0001."""

    @abc.abstractmethod
    def queue_name(self, code: str) -> str | None: ...

    @abc.abstractmethod
    def upsert_queue(self, code: str, name: str, kind: str) -> None: ...

    @abc.abstractmethod
    def upsert_routing_rule(
        self, category: str, lead: str, co: Sequence[str], dispatch_class: DispatchClass, updated_at: datetime
    ) -> None: ...


class SqlTicketRepository(AbstractTicketRepository):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- tickets -------------------------------------------------------------

    def add(self, ticket: Ticket, first_report: Report) -> int:
        values = _ticket_values(ticket)
        ticket_id = self.conn.execute(insert(tickets).values(number=ticket.number, version=1, **values)).inserted_primary_key[0]
        ticket.id, ticket.version = ticket_id, 1
        self.add_report(ticket_id, first_report)  # indexes the ticket's words
        self._insert_events(ticket)
        return ticket_id

    def get(self, ticket_id: int) -> Ticket | None:
        return self._one(select(tickets).where(tickets.c.id == ticket_id))

    def get_by_number(self, number: str) -> Ticket | None:
        return self._one(select(tickets).where(tickets.c.number == number))

    def find_open_duplicate(self, category: str, community_code: str, since: datetime) -> Ticket | None:
        query = (
            select(tickets)
            .where(
                tickets.c.category == category,
                tickets.c.community_code == community_code,
                tickets.c.state.in_([s.value for s in OPEN_STATES]),
                tickets.c.created_at >= since,
            )
            .order_by(tickets.c.created_at.desc(), tickets.c.id.desc())
            .limit(1)
            # Serialises concurrent merges on PostgreSQL instead of failing the version check;
            # SQLite needs nothing (BEGIN IMMEDIATE already serialises writers).
            .with_for_update()
        )
        return self._one(query)

    @staticmethod
    def _reported_by(sender_id: str) -> Any:
        """Reports of this resident (bot/security/identity.py): their sender id, and for "rest:<s>"
        also REST reports stored as the bare <s> before sender ids were namespaced."""
        bare = legacy_rest_sender(sender_id)
        if bare is None:
            return ticket_reports.c.sender_id == sender_id
        return or_(ticket_reports.c.sender_id == sender_id,
                   and_(ticket_reports.c.sender_id == bare, ticket_reports.c.channel == REST_CHANNEL))

    def tickets_for_sender(self, sender_id: str, limit: int) -> list[Ticket]:
        reported = select(ticket_reports.c.ticket_id).where(self._reported_by(sender_id))
        query = (
            select(tickets)
            .where(tickets.c.id.in_(reported))
            .order_by(tickets.c.created_at.desc(), tickets.c.id.desc())
            .limit(limit)
        )
        return self.load(self.conn.execute(query).all())

    def save_events(self, ticket: Ticket) -> None:
        if ticket.id is None:
            raise ValueError("save_events needs a stored ticket; use add() first")
        stored = self.conn.execute(select(tickets.c.description).where(tickets.c.id == ticket.id)).scalar_one_or_none()
        result = self.conn.execute(
            update(tickets)
            .where(tickets.c.id == ticket.id, tickets.c.version == ticket.version)
            .values(version=tickets.c.version + 1, **_ticket_values(ticket))
        )
        if result.rowcount != 1:
            raise StaleTicket(f"ticket {ticket.number} changed meanwhile (version {ticket.version})")
        ticket.version += 1
        if stored != ticket.description:  # the search words follow the description
            index_ticket(self.conn, ticket.id)
        self._insert_events(ticket)

    def _insert_events(self, ticket: Ticket) -> None:
        rows = [
            {
                "ticket_id": ticket.id,
                "seq": seq,
                "kind": e.kind,
                "from_state": e.from_state.value if e.from_state else None,
                "to_state": e.to_state.value if e.to_state else None,
                "actor": e.actor,
                "reason": e.reason,
                "data": e.data,
                "at": e.at,
            }
            for seq, e in enumerate(ticket.new_events, start=ticket.saved_event_count + 1)
        ]
        if rows:
            self.conn.execute(insert(ticket_events), rows)
        ticket.saved_event_count = len(ticket.events)

    def _one(self, query: Any) -> Ticket | None:
        found = self.load(self.conn.execute(query).all())
        return found[0] if found else None

    def load(self, rows: Sequence[Row]) -> list[Ticket]:
        if not rows:
            return []
        events: dict[int, list[TicketEvent]] = {row.id: [] for row in rows}
        query = (
            select(ticket_events)
            .where(ticket_events.c.ticket_id.in_(list(events)))
            .order_by(ticket_events.c.ticket_id, ticket_events.c.seq)
        )
        for e in self.conn.execute(query):
            events[e.ticket_id].append(
                TicketEvent(
                    kind=e.kind,
                    from_state=TicketState(e.from_state) if e.from_state else None,
                    to_state=TicketState(e.to_state) if e.to_state else None,
                    actor=e.actor,
                    reason=e.reason,
                    data=dict(e.data or {}),
                    at=e.at,
                )
            )
        return [_ticket_from_row(row, events[row.id]) for row in rows]

    # --- reports -------------------------------------------------------------

    def add_report(self, ticket_id: int, report: Report) -> int:
        try:
            result = self.conn.execute(
                insert(ticket_reports).values(
                    ticket_id=ticket_id,
                    sender_id=report.sender_id,
                    channel=report.channel,
                    description=report.description,
                    location_text=report.location_text,
                    photo=report.photo,
                    phone=report.phone,
                    confidential=report.confidential,
                    idempotency_key=report.idempotency_key,
                    created_at=report.created_at,
                )
            )
        except IntegrityError as exc:
            if "idempotency_key" in str(exc.orig):
                raise DuplicateReport(report.idempotency_key) from exc
            raise
        index_ticket(self.conn, ticket_id)  # a merged resident's words are found too
        return result.inserted_primary_key[0]

    def report_by_idempotency_key(self, key: str) -> Report | None:
        row = self.conn.execute(select(ticket_reports).where(ticket_reports.c.idempotency_key == key)).first()
        if row is None:
            return None
        return Report(
            sender_id=row.sender_id,
            channel=row.channel,
            description=row.description,
            location_text=row.location_text,
            photo=row.photo,
            phone=row.phone,
            confidential=row.confidential,
            idempotency_key=row.idempotency_key,
            created_at=row.created_at,
            ticket_id=row.ticket_id,
            id=row.id,
        )

    def report_senders(self, ticket_id: int) -> list[str]:
        query = select(ticket_reports.c.sender_id).where(ticket_reports.c.ticket_id == ticket_id).distinct()
        return list(self.conn.execute(query).scalars())

    def report_phones(self, ticket_id: int) -> list[str]:
        query = select(ticket_reports.c.phone).where(ticket_reports.c.ticket_id == ticket_id,
                                                     ticket_reports.c.phone.is_not(None))
        return list(self.conn.execute(query).scalars())

    def sender_has_report(self, ticket_id: int, sender_id: str) -> bool:
        query = select(ticket_reports.c.id).where(ticket_reports.c.ticket_id == ticket_id, self._reported_by(sender_id))
        return self.conn.execute(query.limit(1)).first() is not None

    # --- numbering -----------------------------------------------------------

    def next_number(self, day: date) -> str:
        # The UPDATE row-locks the day's counter until commit (SQLite: the whole
        # database is locked by BEGIN IMMEDIATE), so numbers never repeat and a
        # rolled-back filing gives its number back.
        bump = update(ticket_counters).where(ticket_counters.c.day == day).values(last=ticket_counters.c.last + 1)
        for _ in range(5):
            if self.conn.execute(bump).rowcount == 1:
                last = self.conn.execute(select(ticket_counters.c.last).where(ticket_counters.c.day == day)).scalar_one()
                return format_ticket_number(day, last)
            try:
                with self.conn.begin_nested():
                    self.conn.execute(insert(ticket_counters).values(day=day, last=1))
                return format_ticket_number(day, 1)
            except IntegrityError:
                continue  # another transaction created the day's row first: bump it
        raise RuntimeError(f"could not allocate a ticket number for {day}")

    # --- configuration -------------------------------------------------------

    def queue_name(self, code: str) -> str | None:
        return self.conn.execute(select(queues.c.name).where(queues.c.code == code)).scalar_one_or_none()

    def upsert_queue(self, code: str, name: str, kind: str) -> None:
        _upsert(self.conn, queues, {"code": code}, {"name": name, "kind": kind})

    def upsert_routing_rule(
        self, category: str, lead: str, co: Sequence[str], dispatch_class: DispatchClass, updated_at: datetime
    ) -> None:
        values = {"lead": lead, "co": list(co), "dispatch_class": DispatchClass(dispatch_class).value, "updated_at": updated_at}
        _upsert(self.conn, routing_rules, {"category": category}, values)


def _upsert(conn: Connection, table: Any, key: dict[str, Any], values: dict[str, Any]) -> None:
    # Portable update-then-insert; start-up sync runs in a single process.
    condition = [table.c[name] == value for name, value in key.items()]
    if conn.execute(update(table).where(*condition).values(**values)).rowcount == 0:
        conn.execute(insert(table).values(**key, **values))


def _ticket_values(ticket: Ticket) -> dict[str, Any]:
    # Everything but id, number and version; also used for updates, since events may
    # change queues (派单/改派/重办) and the deadline (重办).
    return {
        "category": ticket.category,
        "description": ticket.description,
        "location_text": ticket.location_text,
        "district_code": ticket.district_code,
        "street_code": ticket.street_code,
        "community_code": ticket.community_code,
        "lead_queue": ticket.lead_queue,
        "co_queues": list(ticket.co_queues),
        "dispatch_class": ticket.dispatch_class.value,
        "state": ticket.state.value,
        "report_count": ticket.report_count,
        "time_limits": ticket.limits.to_data() if ticket.limits is not None else None,
        "created_at": ticket.created_at,
        "deadline_at": ticket.deadline_at,
        "updated_at": ticket.updated_at,
    }


def _ticket_from_row(row: Row, events: list[TicketEvent]) -> Ticket:
    return Ticket(
        id=row.id,
        number=row.number,
        category=row.category,
        description=row.description,
        location_text=row.location_text,
        district_code=row.district_code,
        street_code=row.street_code,
        community_code=row.community_code,
        lead_queue=row.lead_queue,
        co_queues=tuple(row.co_queues or ()),
        dispatch_class=DispatchClass(row.dispatch_class),
        state=TicketState(row.state),
        created_at=row.created_at,
        deadline_at=row.deadline_at,
        updated_at=row.updated_at,
        report_count=row.report_count,
        limits=StepLimits.from_data(row.time_limits) if row.time_limits else None,
        events=events,
        version=row.version,
        saved_event_count=len(events),
    )

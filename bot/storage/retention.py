"""What the retention job (bot/services/retention.py) reads and writes in the ticket store:
its lease (one run at a time across web servers), which closed tickets are due for
anonymising and the anonymising itself, which conversations' tickets are all closed and
since when, and the review inbox's old rows. Plain SQL Core on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.domain.model import ANSWER, TicketState
from bot.storage.search import index_ticket
from bot.storage.tables import UtcDateTime, metadata, ticket_events, ticket_reports, tickets

CLOSED_VALUES = (TicketState.RESOLVED.value, TicketState.CLOSED.value, TicketState.WITHDRAWN.value)  # 办结, 回访, 已撤单

# One row per background job: who runs it now (until when), and when it last finished.
job_leases = Table(
    "job_leases",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", String(96)),
    Column("expires_at", UtcDateTime),
    Column("last_finished_at", UtcDateTime),
)

# Tickets whose personal fields were removed (the ticket itself stays for statistics).
anonymised_tickets = Table(
    "anonymised_tickets",
    metadata,
    Column("ticket_id", Integer, ForeignKey("tickets.id"), primary_key=True),
    Column("anonymised_at", UtcDateTime, nullable=False),
)


# --- the lease ------------------------------------------------------------------------

def acquire_lease(conn: Connection, name: str, holder: str, now: datetime, ttl: timedelta,
                  every: timedelta) -> bool:
    """Take the job `name` for `holder` until now + ttl, when nobody holds it (or the
    holder's lease ran out) and its last run finished at least `every` ago. One
    conditional UPDATE: PostgreSQL re-checks it after a concurrent writer commits,
    SQLite's BEGIN IMMEDIATE serialises the writers."""
    if conn.execute(select(job_leases.c.name).where(job_leases.c.name == name)).first() is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(job_leases).values(name=name, holder=None, expires_at=None, last_finished_at=None))
        except IntegrityError:
            pass  # another server made the row meanwhile
    result = conn.execute(
        update(job_leases)
        .where(job_leases.c.name == name,
               or_(job_leases.c.holder.is_(None), job_leases.c.expires_at <= now),
               or_(job_leases.c.last_finished_at.is_(None), job_leases.c.last_finished_at <= now - every))
        .values(holder=holder, expires_at=now + ttl)
    )
    return result.rowcount == 1


def renew_lease(conn: Connection, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Extend our lease; False when it is no longer ours (it ran out and someone took it)."""
    result = conn.execute(update(job_leases).where(job_leases.c.name == name, job_leases.c.holder == holder)
                          .values(expires_at=now + ttl))
    return result.rowcount == 1


def release_lease(conn: Connection, name: str, holder: str, now: datetime, finished: bool) -> None:
    values = {"holder": None, "expires_at": None}
    if finished:
        values["last_finished_at"] = now
    conn.execute(update(job_leases).where(job_leases.c.name == name, job_leases.c.holder == holder).values(**values))


# --- closed tickets ---------------------------------------------------------------------

def _closed_at():
    """ticket id → when it reached its current closed state (办结 or 回访), for closed tickets."""
    return (
        select(ticket_events.c.ticket_id, func.max(ticket_events.c.at).label("closed_at"))
        .join(tickets, tickets.c.id == ticket_events.c.ticket_id)
        .where(tickets.c.state.in_(CLOSED_VALUES), ticket_events.c.to_state.in_(CLOSED_VALUES))
        .group_by(ticket_events.c.ticket_id)
        .subquery()
    )


def tickets_due_for_anonymising(conn: Connection, closed_before: datetime, limit: int) -> list[int]:
    closed = _closed_at()
    query = (
        select(closed.c.ticket_id)
        .where(closed.c.closed_at <= closed_before,
               ~select(anonymised_tickets.c.ticket_id)
               .where(anonymised_tickets.c.ticket_id == closed.c.ticket_id).exists())
        .order_by(closed.c.ticket_id)
        .limit(limit)
    )
    return [int(i) for i in conn.execute(query).scalars()]


@dataclass
class Anonymised:
    reports: int = 0
    phones: int = 0
    photos: list[str] = field(default_factory=list)  # stored names of resident photos to delete from disk
    attachments: list[str] = field(default_factory=list)  # stored names of after-photos to delete from disk
    outbox: int = 0


def anonymise_ticket(conn: Connection, ticket_id: int, now: datetime, mask: Callable[[str, bool], str],
                     photo_name: Callable[[str | None], str | None],
                     resident: Callable[[str], str]) -> Anonymised | None:
    """Remove a closed ticket's personal data in the caller's transaction: reporters'
    phones and photos go, sender ids become per-ticket pseudonyms (anon:<ticket>:<n>: the
    number of residents who reported stays right), descriptions and addresses are masked
    with `mask(text, address)`; `resident(sender_id)` says who counts as one resident; the resident notices of the outbox go. The ticket row's
    category, place codes, state, times and its event timeline stay. None when the ticket
    is no longer closed or was done meanwhile (another run, a reopen)."""
    from bot.console.tables import attachments, outbox

    row = conn.execute(select(tickets.c.state, tickets.c.description, tickets.c.location_text)
                       .where(tickets.c.id == ticket_id)).first()
    if row is None or row.state not in CLOSED_VALUES:
        return None
    try:
        with conn.begin_nested():
            conn.execute(insert(anonymised_tickets).values(ticket_id=ticket_id, anonymised_at=now))
    except IntegrityError:
        return None
    done = Anonymised()
    conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(
        description=mask(row.description, False), location_text=mask(row.location_text, True)))
    reports = conn.execute(select(ticket_reports).where(ticket_reports.c.ticket_id == ticket_id)
                           .order_by(ticket_reports.c.id)).all()
    pseudonyms = _pseudonyms(ticket_id, reports, resident)
    for r in reports:
        _anonymise_report(conn, r, pseudonyms[r.id], mask, photo_name, done)
    index_ticket(conn, ticket_id)  # from the masked texts: no word of the old ones stays findable
    done.attachments = list(conn.execute(select(attachments.c.stored_name)
                                         .where(attachments.c.ticket_id == ticket_id)).scalars())
    _drop_questions(conn, ticket_id, None, photo_name, done)
    done.outbox = conn.execute(delete(outbox).where(outbox.c.ticket_id == ticket_id,
                                                    outbox.c.kind == "resident")).rowcount
    return done


def _pseudonyms(ticket_id: int, reports: Sequence, resident: Callable[[str], str]) -> dict[int, str]:
    """report id → anon:<ticket>:<n>, n the resident's place in the order they first reported
    (a resident erased earlier keeps their number when the whole ticket is anonymised later)."""
    residents: dict[str, str] = {}
    return {r.id: residents.setdefault(resident(r.sender_id), f"anon:{ticket_id}:{len(residents) + 1}")
            for r in reports}


def _anonymise_report(conn: Connection, r: Any, pseudonym: str, mask: Callable[[str, bool], str],
                      photo_name: Callable[[str | None], str | None], done: Anonymised) -> None:
    name = photo_name(r.photo)
    if name:
        done.photos.append(name)
    done.phones += r.phone is not None
    conn.execute(update(ticket_reports).where(ticket_reports.c.id == r.id).values(
        sender_id=pseudonym, phone=None, photo=None, idempotency_key=f"anon:{r.id}",
        description=mask(r.description, False), location_text=mask(r.location_text, True)))
    done.reports += 1


def anonymise_reports(conn: Connection, ticket_id: int, report_ids: Iterable[int],
                      mask: Callable[[str, bool], str], photo_name: Callable[[str | None], str | None],
                      resident: Callable[[str], str]) -> Anonymised:
    """One resident's erasure on a ticket others reported too (bot/services/rights.py): their
    reports are anonymised as anonymise_ticket does every report (same pseudonyms), the
    ticket's own description and address too when their report is the first (the ticket's
    text is that report's), and the resident notices to them go. The ticket stays as it is."""
    from bot.console.tables import outbox

    wanted = set(report_ids)
    reports = conn.execute(select(ticket_reports).where(ticket_reports.c.ticket_id == ticket_id)
                           .order_by(ticket_reports.c.id)).all()
    pseudonyms = _pseudonyms(ticket_id, reports, resident)
    done = Anonymised()
    mine = [r for r in reports if r.id in wanted]
    if reports and reports[0].id in wanted:
        row = conn.execute(select(tickets.c.description, tickets.c.location_text)
                           .where(tickets.c.id == ticket_id)).one()
        conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(
            description=mask(row.description, False), location_text=mask(row.location_text, True)))
    for r in mine:
        _anonymise_report(conn, r, pseudonyms[r.id], mask, photo_name, done)
    index_ticket(conn, ticket_id)
    senders = {r.sender_id for r in mine}
    if senders:
        _drop_questions(conn, ticket_id, senders, photo_name, done)
        done.outbox = conn.execute(delete(outbox).where(outbox.c.ticket_id == ticket_id, outbox.c.kind == "resident",
                                                        outbox.c.recipient.in_(senders))).rowcount
    return done


def _drop_questions(conn: Connection, ticket_id: int, senders: set[str] | None,
                    photo_name: Callable[[str | None], str | None], done: Anonymised) -> None:
    """Handlers' questions to these residents (None: all) go — their conversation id and the
    question (the events stay) — and the photos they answered with go like the reports' photos."""
    from bot.storage.questions import questions

    which = [questions.c.ticket_id == ticket_id]
    answers = [ticket_events.c.ticket_id == ticket_id, ticket_events.c.kind == ANSWER]
    if senders is not None:
        which.append(questions.c.sender_id.in_(senders))
        answers.append(ticket_events.c.actor.in_([f"resident:{s}" for s in senders]))
    conn.execute(delete(questions).where(*which))
    done.photos += [n for n in (photo_name((d or {}).get("photo"))
                                for d in conn.execute(select(ticket_events.c.data).where(*answers)).scalars()) if n]


# --- conversations ------------------------------------------------------------------------

@dataclass(frozen=True)
class ConversationTickets:
    open: bool  # some ticket of the conversation is open
    last_closed_at: datetime | None  # when its last ticket closed (all closed)


def tickets_of_conversations(conn: Connection, sender_ids: Sequence[str]) -> dict[str, ConversationTickets]:
    """For each sender id that filed (or joined) a ticket: whether one is still open, else
    when the last one closed. Senders without a ticket are not in the answer."""
    if not sender_ids:
        return {}
    closed = _closed_at()
    rows = conn.execute(
        select(ticket_reports.c.sender_id, tickets.c.state, closed.c.closed_at)
        .join(tickets, tickets.c.id == ticket_reports.c.ticket_id)
        .outerjoin(closed, closed.c.ticket_id == tickets.c.id)
        .where(ticket_reports.c.sender_id.in_(list(sender_ids)))
    ).all()
    out: dict[str, ConversationTickets] = {}
    for sender, state, closed_at in rows:
        seen = out.get(sender, ConversationTickets(False, None))
        if state not in CLOSED_VALUES or closed_at is None:
            out[sender] = ConversationTickets(True, None)
        elif not seen.open:
            last = max(x for x in (seen.last_closed_at, closed_at) if x is not None)
            out[sender] = ConversationTickets(False, last)
    return out


# --- the review inbox ---------------------------------------------------------------------

def review_items_after(conn: Connection, after_id: int, limit: int) -> list[tuple[int, str, list]]:
    from bot.retraining.tables import review_items

    rows = conn.execute(select(review_items.c.id, review_items.c.text, review_items.c.entities)
                        .where(review_items.c.id > after_id).order_by(review_items.c.id).limit(limit)).all()
    return [(int(r.id), r.text, list(r.entities or [])) for r in rows]


def set_review_text(conn: Connection, item_id: int, text: str, group_key: str, entities: Iterable[dict]) -> None:
    from bot.retraining.tables import review_items

    conn.execute(update(review_items).where(review_items.c.id == item_id)
                 .values(text=text, group_key=group_key, entities=list(entities)))


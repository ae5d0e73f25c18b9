"""Console repository: the only code that reads and writes the console tables
(and the read-only ticket queries the console needs)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, cast, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import ColumnElement

from bot.console.tables import (
    api_keys,
    attachments,
    feed_cursors,
    outbox,
    personal_data_views,
    sessions,
    user_queues,
    users,
)
from bot.domain.model import ADJUST_DEADLINE, EXTEND, OPEN_STATES, SUPERVISE, Ticket, TicketState
from bot.storage.repository import SqlTicketRepository
from bot.storage.search import matching_ids
from bot.storage.tables import ticket_events, ticket_reports, tickets


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    password_hash: str
    role: str
    active: bool
    created_at: datetime
    notices_seen_at: datetime | None
    queues: tuple[str, ...]
    languages: tuple[str, ...] = ("zh",)  # a 坐席's languages (bot/console/handoff.py)


@dataclass(frozen=True)
class SessionRow:
    id: str
    user_id: int
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    kind: str
    channel: str
    recipient: str
    ticket_id: int | None
    event: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class Attachment:
    id: int
    ticket_id: int
    stored_name: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: int
    created_at: datetime


@dataclass(frozen=True)
class TicketFilter:
    """Which tickets a principal may see, as SQL (mirrored by services.can_see in Python)."""

    all_tickets: bool = False
    queues: tuple[str, ...] = ()
    returned: bool = False  # every 退单 ticket (dispatcher)
    overdue_before: datetime | None = None  # every open ticket due before this (dispatcher)
    extensions: bool = False  # every ticket in hand with a 延期 request (dispatcher)


OPEN_VALUES = [s.value for s in OPEN_STATES]


@dataclass(frozen=True)
class TicketSearch:
    """A queue page's search and filters (services.search parses them from the URL); every
    field set narrows the result, the empty search narrows nothing."""

    number: str = ""  # a whole ticket number, or part of one (exact_number False)
    exact_number: bool = False
    phone_last4: str = ""  # last four digits of a reporter's phone
    phone_confidential: bool = False  # the phone search covers 保密 tickets too
    text: bool = False  # words were asked for (none left after cutting: nothing matches)
    words: tuple[str, ...] = ()
    category: str = ""
    place: str = ""  # a street or community code
    lead: str = ""
    state: str = ""
    overdue_before: datetime | None = None
    supervised: bool = False
    created_from: datetime | None = None
    created_before: datetime | None = None


def search_clauses(s: TicketSearch, dialect: str) -> list[ColumnElement]:
    t = tickets.c
    out: list[ColumnElement] = []
    if s.number:
        out.append(t.number == s.number if s.exact_number else t.number.contains(s.number, autoescape=True))
    if s.phone_last4:
        r = ticket_reports.alias("phone_report")
        out.append(exists().where(r.c.ticket_id == t.id, r.c.phone.endswith(s.phone_last4, autoescape=True)))
        if not s.phone_confidential:
            c = ticket_reports.alias("confidential_report")
            out.append(~exists().where(c.c.ticket_id == t.id, c.c.confidential.is_(True)))
    if s.text:
        out.append(matching_ids(dialect, list(s.words)) if s.words else t.id.is_(None))
    if s.category:
        out.append(t.category == s.category)
    if s.place:
        out.append(or_(t.street_code == s.place, t.community_code == s.place))
    if s.lead:
        out.append(t.lead_queue == s.lead)
    if s.state:
        out.append(t.state == s.state)
    if s.overdue_before is not None:
        out.append(and_(t.state.in_(OPEN_VALUES), t.deadline_at < s.overdue_before))
    if s.supervised:  # as Ticket.supervised(): a 督办 not followed by a calendar change of the deadline
        e, later = ticket_events.alias("supervise"), ticket_events.alias("later")
        moved = exists().where(later.c.ticket_id == t.id, later.c.kind == ADJUST_DEADLINE, later.c.seq > e.c.seq)
        out.append(and_(t.state.in_(OPEN_VALUES), exists().where(e.c.ticket_id == t.id, e.c.kind == SUPERVISE, ~moved)))
    if s.created_from is not None:
        out.append(t.created_at >= s.created_from)
    if s.created_before is not None:
        out.append(t.created_at < s.created_before)
    return out


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def in_queue(queue: str) -> ColumnElement:
    """Lead queue or one of the co queues (co_queues is a JSON list; its text form holds
    each code as a quoted string on SQLite and PostgreSQL alike)."""
    return or_(
        tickets.c.lead_queue == queue,
        cast(tickets.c.co_queues, Text).like(f'%"{_like_escape(queue)}"%', escape="\\"),
    )


def visible(f: TicketFilter) -> ColumnElement:
    if f.all_tickets:
        return tickets.c.id.isnot(None)
    clauses = [in_queue(q) for q in f.queues]
    if f.returned:
        clauses.append(tickets.c.state == TicketState.RETURNED.value)
    if f.overdue_before is not None:
        clauses.append(
            and_(tickets.c.state.in_([s.value for s in OPEN_STATES]), tickets.c.deadline_at < f.overdue_before)
        )
    if f.extensions:
        clauses.append(
            and_(
                tickets.c.state.in_([TicketState.ACCEPTED.value, TicketState.IN_PROGRESS.value]),
                exists().where(ticket_events.c.ticket_id == tickets.c.id, ticket_events.c.kind == EXTEND),
            )
        )
    if not clauses:
        return tickets.c.id.is_(None)
    return or_(*clauses)


class ConsoleRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- users ----------------------------------------------------------------

    def add_user(
        self, username: str, display_name: str, password_hash: str, role: str, queues: Iterable[str], now: datetime
    ) -> int:
        user_id = self.conn.execute(
            insert(users).values(
                username=username,
                display_name=display_name,
                password_hash=password_hash,
                role=role,
                active=True,
                created_at=now,
            )
        ).inserted_primary_key[0]
        self.set_queues(user_id, queues)
        return int(user_id)

    def set_queues(self, user_id: int, queues: Iterable[str]) -> None:
        self.conn.execute(delete(user_queues).where(user_queues.c.user_id == user_id))
        rows = [{"user_id": user_id, "queue_code": q} for q in dict.fromkeys(queues)]
        if rows:
            self.conn.execute(insert(user_queues), rows)

    def _user(self, row: Row | None) -> User | None:
        if row is None:
            return None
        queues = self.conn.execute(
            select(user_queues.c.queue_code).where(user_queues.c.user_id == row.id).order_by(user_queues.c.queue_code)
        ).scalars()
        return User(
            id=row.id,
            username=row.username,
            display_name=row.display_name,
            password_hash=row.password_hash,
            role=row.role,
            active=bool(row.active),
            created_at=row.created_at,
            notices_seen_at=row.notices_seen_at,
            languages=tuple(x for x in (row.languages or "zh").split(",") if x),
            queues=tuple(queues),
        )

    def get_user(self, user_id: int) -> User | None:
        return self._user(self.conn.execute(select(users).where(users.c.id == user_id)).first())

    def get_user_by_username(self, username: str) -> User | None:
        return self._user(self.conn.execute(select(users).where(users.c.username == username)).first())

    def list_users(self) -> list[User]:
        rows = self.conn.execute(select(users).order_by(users.c.id)).all()
        return [u for u in (self._user(r) for r in rows) if u is not None]

    def set_password(self, user_id: int, password_hash: str) -> None:
        self.conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))

    def set_active(self, user_id: int, active: bool) -> None:
        self.conn.execute(update(users).where(users.c.id == user_id).values(active=active))

    def set_notices_seen(self, user_id: int, at: datetime) -> None:
        self.conn.execute(update(users).where(users.c.id == user_id).values(notices_seen_at=at))

    # --- sessions -------------------------------------------------------------

    def add_session(self, session_id: str, user_id: int, csrf_token: str, now: datetime, expires_at: datetime) -> None:
        self.conn.execute(
            insert(sessions).values(
                id=session_id, user_id=user_id, csrf_token=csrf_token, created_at=now, expires_at=expires_at
            )
        )

    def get_session(self, session_id: str) -> SessionRow | None:
        row = self.conn.execute(select(sessions).where(sessions.c.id == session_id)).first()
        if row is None:
            return None
        return SessionRow(row.id, row.user_id, row.csrf_token, row.created_at, row.expires_at)

    def delete_session(self, session_id: str) -> None:
        self.conn.execute(delete(sessions).where(sessions.c.id == session_id))

    def delete_user_sessions(self, user_id: int) -> None:
        self.conn.execute(delete(sessions).where(sessions.c.user_id == user_id))

    def delete_expired_sessions(self, now: datetime) -> int:
        return self.conn.execute(delete(sessions).where(sessions.c.expires_at <= now)).rowcount

    # --- outbox ---------------------------------------------------------------

    def enqueue(
        self,
        *,
        kind: str,
        channel: str,
        recipient: str,
        ticket_id: int | None,
        event: str,
        payload: dict[str, Any],
        now: datetime,
        status: str = "pending",
    ) -> int:
        values: dict[str, Any] = dict(
            kind=kind,
            channel=channel,
            recipient=recipient,
            ticket_id=ticket_id,
            event=event,
            payload=payload,
            status=status,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        if status == "sent":
            values["sent_at"] = now
        return int(self.conn.execute(insert(outbox).values(**values)).inserted_primary_key[0])

    def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[OutboxMessage]:
        """Due messages (pending or failed), leased until `lease_until` so no other worker
        takes them meanwhile; a crash mid-delivery only delays them until the lease ends."""
        query = (
            select(outbox)
            .where(outbox.c.status.in_(("pending", "failed")), outbox.c.next_attempt_at <= now)
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit)
        )
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = self.conn.execute(query).all()
        if rows:
            self.conn.execute(
                update(outbox).where(outbox.c.id.in_([r.id for r in rows])).values(next_attempt_at=lease_until)
            )
        return [_message(r) for r in rows]

    def mark_sent(self, message_id: int, now: datetime) -> None:
        self.conn.execute(
            update(outbox)
            .where(outbox.c.id == message_id)
            .values(status="sent", sent_at=now, attempts=outbox.c.attempts + 1, last_error=None)
        )

    def mark_failed(self, message_id: int, error: str, next_attempt_at: datetime) -> None:
        self.conn.execute(
            update(outbox)
            .where(outbox.c.id == message_id)
            .values(status="failed", attempts=outbox.c.attempts + 1, last_error=error[:2000], next_attempt_at=next_attempt_at)
        )

    def retry_now(self, message_id: int, now: datetime) -> bool:
        return (
            self.conn.execute(
                update(outbox)
                .where(outbox.c.id == message_id, outbox.c.status != "sent")
                .values(next_attempt_at=now)
            ).rowcount
            == 1
        )

    def get_message(self, message_id: int) -> OutboxMessage | None:
        row = self.conn.execute(select(outbox).where(outbox.c.id == message_id)).first()
        return _message(row) if row else None

    def list_outbox(self, *, status: str | None = None, kind: str | None = None, limit: int = 200) -> list[OutboxMessage]:
        query = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
        if status:
            query = query.where(outbox.c.status == status)
        if kind:
            query = query.where(outbox.c.kind == kind)
        return [_message(r) for r in self.conn.execute(query)]

    def outbox_counts(self) -> dict[str, int]:
        rows = self.conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all()
        return {r[0]: int(r[1]) for r in rows}

    def worker_notices(self, queues: Sequence[str] | None, limit: int = 100) -> list[OutboxMessage]:
        """Console notices of these queues (None: every queue), newest first."""
        query = select(outbox).where(outbox.c.kind == "worker").order_by(outbox.c.id.desc()).limit(limit)
        if queues is not None:
            query = query.where(outbox.c.recipient.in_(list(queues)))
        return [_message(r) for r in self.conn.execute(query)]

    def unread_notice_count(self, queues: Sequence[str] | None, since: datetime | None) -> int:
        query = select(func.count()).select_from(outbox).where(outbox.c.kind == "worker")
        if queues is not None:
            query = query.where(outbox.c.recipient.in_(list(queues)))
        if since is not None:
            query = query.where(outbox.c.created_at > since)
        return int(self.conn.execute(query).scalar_one())

    # --- attachments ----------------------------------------------------------

    def add_attachment(
        self, ticket_id: int, stored_name: str, content_type: str, size: int, sha256: str, uploaded_by: int, now: datetime
    ) -> int:
        return int(
            self.conn.execute(
                insert(attachments).values(
                    ticket_id=ticket_id,
                    stored_name=stored_name,
                    content_type=content_type,
                    size=size,
                    sha256=sha256,
                    uploaded_by=uploaded_by,
                    created_at=now,
                )
            ).inserted_primary_key[0]
        )

    def get_attachment(self, attachment_id: int) -> Attachment | None:
        row = self.conn.execute(select(attachments).where(attachments.c.id == attachment_id)).first()
        return Attachment(**dict(row._mapping)) if row else None

    def attachments_for(self, ticket_id: int) -> list[Attachment]:
        rows = self.conn.execute(
            select(attachments).where(attachments.c.ticket_id == ticket_id).order_by(attachments.c.id)
        )
        return [Attachment(**dict(r._mapping)) for r in rows]

    # --- API keys -------------------------------------------------------------

    def add_api_key(self, name: str, key_hash: str, now: datetime, scope: str = "public") -> int:
        return int(
            self.conn.execute(
                insert(api_keys).values(name=name, key_hash=key_hash, active=True, created_at=now, scope=scope)
            ).inserted_primary_key[0]
        )

    def api_key_scope(self, key_hash: str) -> str | None:
        """The scope of an active key ('public' or 'personal'), None for an unknown one."""
        row = self.conn.execute(
            select(api_keys.c.scope).where(api_keys.c.key_hash == key_hash, api_keys.c.active.is_(True))
        ).first()
        return row[0] if row else None

    def api_key_name(self, key_hash: str) -> str | None:
        row = self.conn.execute(
            select(api_keys.c.name).where(api_keys.c.key_hash == key_hash, api_keys.c.active.is_(True))
        ).first()
        return row[0] if row else None

    def list_api_keys(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(select(api_keys).order_by(api_keys.c.id))]

    def set_api_key_active(self, key_id: int, active: bool) -> None:
        self.conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(active=active))

    # --- event feed -----------------------------------------------------------

    def cursor(self, name: str, *, lock: bool = False) -> int | None:
        query = select(feed_cursors.c.last_event_id).where(feed_cursors.c.name == name)
        if lock and self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return self.conn.execute(query).scalar_one_or_none()

    def init_cursor(self, name: str, now: datetime) -> int:
        """Create the cursor at the current end of the event log (history is not re-announced)."""
        last = self.conn.execute(select(func.coalesce(func.max(ticket_events.c.id), 0))).scalar_one()
        self.conn.execute(insert(feed_cursors).values(name=name, last_event_id=int(last), updated_at=now))
        return int(last)

    def set_cursor(self, name: str, last_event_id: int, now: datetime) -> None:
        self.conn.execute(
            update(feed_cursors).where(feed_cursors.c.name == name).values(last_event_id=last_event_id, updated_at=now)
        )

    def events_after(self, event_id: int, limit: int) -> list[Row]:
        query = (
            select(ticket_events, tickets.c.number, tickets.c.lead_queue, tickets.c.co_queues)
            .join(tickets, tickets.c.id == ticket_events.c.ticket_id)
            .where(ticket_events.c.id > event_id)
            .order_by(ticket_events.c.id)
            .limit(limit)
        )
        return list(self.conn.execute(query).all())

    # --- tickets (read side) --------------------------------------------------

    def ticket_rows(
        self,
        scope: TicketFilter,
        *,
        states: Sequence[str] | None = None,
        extra: Sequence[ColumnElement] = (),
        order: str = "deadline",
        limit: int = 100,
        offset: int = 0,
    ) -> list[Ticket]:
        query = select(tickets).where(visible(scope), *extra)
        if states is not None:
            query = query.where(tickets.c.state.in_(list(states)))
        if order == "deadline":
            query = query.order_by(tickets.c.deadline_at, tickets.c.id)
        else:
            query = query.order_by(tickets.c.updated_at.desc(), tickets.c.id.desc())
        rows = self.conn.execute(query.limit(limit).offset(offset)).all()
        # Reuse the ticket store's row → Ticket mapping (events loaded in one query).
        return SqlTicketRepository(self.conn).load(rows)

    def search_clauses(self, search: TicketSearch) -> list[ColumnElement]:
        return search_clauses(search, self.conn.dialect.name)

    def count_tickets(self, scope: TicketFilter, states: Sequence[str] | None = None, extra: Sequence[ColumnElement] = ()) -> int:
        query = select(func.count()).select_from(tickets).where(visible(scope), *extra)
        if states is not None:
            query = query.where(tickets.c.state.in_(list(states)))
        return int(self.conn.execute(query).scalar_one())

    def overdue_unflagged_ids(self, now: datetime, limit: int = 200) -> list[int]:
        query = (
            select(tickets.c.id)
            .where(tickets.c.state.in_(OPEN_VALUES), tickets.c.deadline_at < now)
            .order_by(tickets.c.deadline_at)
            .limit(limit)
        )
        return [int(i) for i in self.conn.execute(query).scalars()]

    def reporters(self, ticket_id: int) -> list[Row]:
        query = (
            select(ticket_reports.c.sender_id, ticket_reports.c.channel, ticket_reports.c.created_at)
            .where(ticket_reports.c.ticket_id == ticket_id)
            .order_by(ticket_reports.c.id)
        )
        return list(self.conn.execute(query).all())

    def reports(self, ticket_id: int) -> list[Row]:
        query = select(ticket_reports).where(ticket_reports.c.ticket_id == ticket_id).order_by(ticket_reports.c.id)
        return list(self.conn.execute(query).all())

    def confidential_among(self, ticket_ids: Iterable[int]) -> frozenset[int]:
        """The tickets of `ticket_ids` a reporter asked to keep 保密."""
        ids = list(ticket_ids)
        if not ids:
            return frozenset()
        query = (
            select(ticket_reports.c.ticket_id)
            .where(ticket_reports.c.ticket_id.in_(ids), ticket_reports.c.confidential.is_(True))
            .distinct()
        )
        return frozenset(int(i) for i in self.conn.execute(query).scalars())

    # --- personal-data view log (append-only) ----------------------------------

    def log_view(self, values: dict[str, Any]) -> int:
        return int(self.conn.execute(insert(personal_data_views).values(**values)).inserted_primary_key[0])

    def view_log(self, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        """Newest first."""
        v = personal_data_views
        query = (
            select(v, tickets.c.number)
            .select_from(v.outerjoin(tickets, tickets.c.id == v.c.ticket_id))
            .order_by(v.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def count_view_log(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(personal_data_views)).scalar_one())


def _message(row: Row) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        kind=row.kind,
        channel=row.channel,
        recipient=row.recipient,
        ticket_id=row.ticket_id,
        event=row.event,
        payload=dict(row.payload or {}),
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )

"""Hand-offs to a person (bot/domain/handoff.py) in the ticket store: the hand-off, its
events (who and when), and the messages of the live chat in order.

One open hand-off per conversation (a partial unique index), so a retried request never
opens a second. Taking is a compare-and-set: UPDATE … WHERE state = 'waiting'. An outgoing
message (agent or system → resident) is delivered once: claimed by
UPDATE … WHERE delivered_at IS NULL, in id order."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Row

from bot.domain.handoff import (
    OPEN_STATES,
    QUEUE_STATES,
    REQUEST,
    Handoff,
    HandoffEvent,
    HandoffState,
    InvalidHandoffStep,
    next_state,
)
from bot.storage.tables import UtcDateTime, metadata

_OPEN = sorted(s.value for s in OPEN_STATES)
# the partial index's condition, the same text on both databases (constants, no input)
_ONE_OPEN = text("state IN (" + ", ".join(f"'{s}'" for s in _OPEN) + ")")

handoffs = Table(
    "handoffs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sender_id", String(255), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("language", String(8), nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("agent", String(80)),  # user:<name> while taken (and after, who held it last)
    Column("requested_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_handoffs_one_open", "sender_id", unique=True,
          sqlite_where=_ONE_OPEN, postgresql_where=_ONE_OPEN),
    Index(None, "state", "requested_at"),
)

handoff_events = Table(
    "handoff_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("handoff_id", Integer, ForeignKey("handoffs.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("actor", String(80), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("note", Text, nullable=False, default=""),
)

handoff_messages = Table(
    "handoff_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("handoff_id", Integer, ForeignKey("handoffs.id"), nullable=False, index=True),
    Column("sender_id", String(255), nullable=False),
    Column("author", String(80), nullable=False),  # resident | system | user:<name>
    Column("outgoing", Boolean, nullable=False),  # to the resident
    Column("text", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),  # outgoing only: picked up by the resident's channel
    # outgoing, not delivered yet: why (WeChat's 48-hour window closed, an API error), for the agent;
    # such a message goes out with the reply to the resident's next message
    Column("delivery_note", Text),
    # incoming: the words as typed when `text` (masked, like the tracker) differs; for the roles
    # that may see phones, cleared by the retention job after PENDING_PHONE_HOURS
    Column("typed", Text),
    Index(None, "sender_id", "outgoing", "delivered_at"),
)


class HandoffRepository:
    """The only code that reads and writes the hand-off tables."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- reading ---------------------------------------------------------------

    def _handoff(self, row: Row | None, events: bool = False) -> Handoff | None:
        if row is None:
            return None
        h = Handoff(row.id, row.sender_id, row.channel, row.reason, row.language, HandoffState(row.state),
                    row.requested_at, row.agent)
        if events:
            rows = self.conn.execute(select(handoff_events).where(handoff_events.c.handoff_id == row.id)
                                     .order_by(handoff_events.c.id)).all()
            h.events = [HandoffEvent(r.kind, r.actor, r.at, r.note) for r in rows]
        return h

    def get(self, handoff_id: int) -> Handoff | None:
        return self._handoff(self.conn.execute(select(handoffs).where(handoffs.c.id == handoff_id)).first(), True)

    def open_for(self, sender_id: str) -> Handoff | None:
        row = self.conn.execute(select(handoffs).where(handoffs.c.sender_id == sender_id,
                                                       handoffs.c.state.in_(_OPEN))).first()
        return self._handoff(row)

    def queue(self, languages: frozenset[str] | None) -> list[Handoff]:
        """The agents' list, longest-waiting first; `languages` None: every language."""
        q = select(handoffs).where(handoffs.c.state.in_(sorted(s.value for s in QUEUE_STATES)))
        if languages is not None:
            q = q.where(handoffs.c.language.in_(sorted(languages | {""})))
        rows = self.conn.execute(q.order_by(handoffs.c.requested_at, handoffs.c.id)).all()
        return [h for h in (self._handoff(r) for r in rows) if h is not None]

    def waiting_before(self, cutoff: datetime) -> list[Handoff]:
        rows = self.conn.execute(select(handoffs).where(handoffs.c.state == HandoffState.WAITING.value,
                                                        handoffs.c.requested_at <= cutoff)
                                 .order_by(handoffs.c.id)).all()
        return [h for h in (self._handoff(r) for r in rows) if h is not None]

    def position(self, handoff: Handoff) -> int:
        """1 = next to be taken, among those waiting for the same language."""
        t = handoffs
        ahead = self.conn.execute(select(func.count()).select_from(t).where(
            t.c.state == HandoffState.WAITING.value, t.c.language == handoff.language,
            (t.c.requested_at < handoff.requested_at)
            | ((t.c.requested_at == handoff.requested_at) & (t.c.id < handoff.id)))).scalar_one()
        return int(ahead) + 1

    def messages(self, handoff_id: int) -> list[Row]:
        return self.conn.execute(select(handoff_messages).where(handoff_messages.c.handoff_id == handoff_id)
                                 .order_by(handoff_messages.c.id)).all()

    # --- writing ---------------------------------------------------------------

    def open(self, sender_id: str, channel: str, reason: str, language: str, now: datetime,
             state: HandoffState = HandoffState.WAITING, kind: str = REQUEST) -> Handoff:
        hid = self.conn.execute(insert(handoffs).values(
            sender_id=sender_id, channel=channel, reason=reason, language=language,
            state=state.value, requested_at=now, updated_at=now)).inserted_primary_key[0]
        self.event(hid, kind, "system", now, reason)
        found = self.get(hid)
        assert found is not None
        return found

    def event(self, handoff_id: int, kind: str, actor: str, at: datetime, note: str = "") -> None:
        self.conn.execute(insert(handoff_events).values(handoff_id=handoff_id, kind=kind, actor=actor, at=at,
                                                        note=note))

    def step(self, handoff: Handoff, kind: str, actor: str, now: datetime, agent: str | None = None,
             note: str = "") -> Handoff:
        """Apply `kind` if the hand-off is still in the state it was read in (compare-and-set);
        InvalidHandoffStep when another step came first."""
        to = next_state(kind, handoff.state)
        values: dict = {"state": to.value, "updated_at": now}
        if agent is not None:
            values["agent"] = agent
        changed = self.conn.execute(update(handoffs).where(
            handoffs.c.id == handoff.id, handoffs.c.state == handoff.state.value).values(**values)).rowcount
        if changed != 1:
            raise InvalidHandoffStep(f"{kind}: the hand-off changed meanwhile")
        assert handoff.id is not None
        self.event(handoff.id, kind, actor, now, note)
        found = self.get(handoff.id)
        assert found is not None
        return found

    def lock(self, handoff_id: int, now: datetime) -> None:
        """Take the hand-off's row lock (an UPDATE) for the rest of the transaction: a check then
        write that two requests may run at once (a double submit) happens one after the other."""
        self.conn.execute(update(handoffs).where(handoffs.c.id == handoff_id).values(updated_at=now))

    def has_event(self, handoff_id: int, kind: str, note: str) -> bool:
        e = handoff_events
        return self.conn.execute(select(e.c.id).where(e.c.handoff_id == handoff_id, e.c.kind == kind,
                                                      e.c.note == note).limit(1)).first() is not None

    def add_message(self, handoff: Handoff, author: str, outgoing: bool, text: str, now: datetime,
                    typed: str | None = None) -> int:
        return self.conn.execute(insert(handoff_messages).values(
            handoff_id=handoff.id, sender_id=handoff.sender_id, author=author, outgoing=outgoing, text=text,
            typed=typed, created_at=now)).inserted_primary_key[0]

    def undelivered(self, sender_id: str) -> list[Row]:
        m = handoff_messages
        return self.conn.execute(select(m).where(m.c.sender_id == sender_id, m.c.outgoing.is_(True),
                                                 m.c.delivered_at.is_(None)).order_by(m.c.id)).all()

    def senders_with_undelivered(self, sender_ids: list[str]) -> list[str]:
        m = handoff_messages
        if not sender_ids:
            return []
        return list(self.conn.execute(select(m.c.sender_id).distinct().where(
            m.c.sender_id.in_(sender_ids), m.c.outgoing.is_(True), m.c.delivered_at.is_(None))).scalars())

    def undelivered_on(self, channel: str, limit: int) -> list[Row]:
        """Outgoing, undelivered, with no delivery note, for hand-offs of `channel`; by id."""
        m, h = handoff_messages, handoffs
        return self.conn.execute(select(m).join(h, h.c.id == m.c.handoff_id).where(
            h.c.channel == channel, m.c.outgoing.is_(True), m.c.delivered_at.is_(None),
            m.c.delivery_note.is_(None)).order_by(m.c.id).limit(limit)).all()

    def hold_back(self, sender_id: str, from_id: int, note: str | None) -> int:
        """Un-claim message `from_id`; with a note, say why it and the later undelivered ones wait."""
        m = handoff_messages
        self.conn.execute(update(m).where(m.c.id == from_id).values(delivered_at=None))
        if note is None:
            return 0
        return self.conn.execute(update(m).where(
            m.c.sender_id == sender_id, m.c.id >= from_id, m.c.outgoing.is_(True), m.c.delivered_at.is_(None),
            m.c.delivery_note.is_(None)).values(delivery_note=note)).rowcount

    # --- retention (bot/services/retention.py) -----------------------------------

    def forget_typed_before(self, cutoff: datetime) -> int:
        """The words as typed go; the masked text stays."""
        m = handoff_messages
        return self.conn.execute(update(m).where(m.c.typed.is_not(None), m.c.created_at <= cutoff)
                                 .values(typed=None)).rowcount

    def ended_before(self, cutoff: datetime, limit: int) -> list[int]:
        """Hand-offs handed back or closed at `cutoff` or before (never an open one)."""
        ended = [HandoffState.RETURNED.value, HandoffState.CLOSED.value]
        return list(self.conn.execute(select(handoffs.c.id).where(handoffs.c.state.in_(ended),
                                                                  handoffs.c.updated_at <= cutoff)
                                      .order_by(handoffs.c.id).limit(limit)).scalars())

    def delete(self, handoff_ids: list[int]) -> int:
        """The hand-offs, their steps and their messages; how many messages went."""
        if not handoff_ids:
            return 0
        n = self.conn.execute(delete(handoff_messages).where(handoff_messages.c.handoff_id.in_(handoff_ids))).rowcount
        self.conn.execute(delete(handoff_events).where(handoff_events.c.handoff_id.in_(handoff_ids)))
        self.conn.execute(delete(handoffs).where(handoffs.c.id.in_(handoff_ids)))
        return n

    def claim(self, message_id: int, now: datetime) -> bool:
        m = handoff_messages
        return self.conn.execute(update(m).where(m.c.id == message_id, m.c.delivered_at.is_(None))
                                 .values(delivered_at=now)).rowcount == 1


__all__ = ["HandoffRepository", "InvalidHandoffStep", "handoff_events", "handoff_messages", "handoffs"]

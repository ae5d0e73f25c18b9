"""A handler's question to a ticket's resident (询问居民) and the answer (居民补充): the rows.

A question goes out through the console's outbox (outbox_id, set when the notifier's feed
queues it) and is open for an answer from when that message was sent (outbox.sent_at) until
it is answered; the answering message's key (sha256) lets a retry of the same message be
recognised instead of attached twice. The ticket events themselves live in ticket_events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, insert, select, update
from sqlalchemy.engine import Connection

from bot.console.tables import outbox
from bot.storage.tables import UtcDateTime, metadata

questions = Table(
    "ticket_questions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=False, index=True),
    Column("report_id", Integer, ForeignKey("ticket_reports.id"), nullable=False),
    Column("sender_id", String(255), nullable=False),  # the resident's conversation
    Column("question", Text, nullable=False),
    Column("asked_by", Integer, ForeignKey("users.id"), nullable=False),
    Column("asked_at", UtcDateTime, nullable=False),
    Column("outbox_id", Integer, ForeignKey("outbox.id")),
    Column("answered_at", UtcDateTime),
    Column("answer_key", String(64)),
    Index(None, "sender_id", "answered_at"),
)


@dataclass(frozen=True)
class Question:
    id: int
    ticket_id: int
    report_id: int
    sender_id: str
    question: str
    asked_by: int
    asked_at: datetime
    outbox_id: int | None
    answered_at: datetime | None
    answer_key: str | None
    # the outbox message carrying it: pending | sent | failed, when sent, the last error
    status: str | None = None
    sent_at: datetime | None = None
    last_error: str | None = None
    attempts: int = 0


def _query():  # noqa: ANN202 - a select over both tables
    return select(questions, outbox.c.status, outbox.c.sent_at, outbox.c.last_error, outbox.c.attempts) \
        .select_from(questions.outerjoin(outbox, outbox.c.id == questions.c.outbox_id))


def _question(row) -> Question:  # noqa: ANN001
    m = row._mapping
    return Question(m["id"], m["ticket_id"], m["report_id"], m["sender_id"], m["question"], m["asked_by"],
                    m["asked_at"], m["outbox_id"], m["answered_at"], m["answer_key"], m["status"], m["sent_at"],
                    m["last_error"], m["attempts"] or 0)


def add(conn: Connection, ticket_id: int, report_id: int, sender_id: str, question: str, asked_by: int,
        at: datetime) -> int:
    return int(conn.execute(insert(questions).values(
        ticket_id=ticket_id, report_id=report_id, sender_id=sender_id, question=question, asked_by=asked_by,
        asked_at=at)).inserted_primary_key[0])


def link_outbox(conn: Connection, question_id: int, outbox_id: int) -> None:
    conn.execute(update(questions).where(questions.c.id == question_id).values(outbox_id=outbox_id))


def for_ticket(conn: Connection, ticket_id: int) -> list[Question]:
    rows = conn.execute(_query().where(questions.c.ticket_id == ticket_id).order_by(questions.c.id)).all()
    return [_question(r) for r in rows]


def get(conn: Connection, question_id: int) -> Question | None:
    row = conn.execute(_query().where(questions.c.id == question_id)).first()
    return _question(row) if row is not None else None


def open_for(conn: Connection, sender_id: str, since: datetime) -> list[Question]:
    """The sender's questions that reached them at or after `since` and are not answered,
    the most recently sent first."""
    rows = conn.execute(_query().where(questions.c.sender_id == sender_id, questions.c.answered_at.is_(None),
                                       outbox.c.status == "sent", outbox.c.sent_at >= since)
                        .order_by(outbox.c.sent_at.desc(), questions.c.id.desc())).all()
    return [_question(r) for r in rows]


def answered_with(conn: Connection, sender_id: str, key: str, since: datetime) -> Question | None:
    """The sender's question answered at or after `since` by the message with this key."""
    row = conn.execute(_query().where(questions.c.sender_id == sender_id, questions.c.answer_key == key,
                                      questions.c.answered_at >= since)
                       .order_by(questions.c.answered_at.desc())).first()
    return _question(row) if row is not None else None


def mark_answered(conn: Connection, question_id: int, key: str, at: datetime) -> bool:
    """Compare-and-set: True for the one caller that answers the question."""
    result = conn.execute(update(questions).where(questions.c.id == question_id, questions.c.answered_at.is_(None))
                          .values(answered_at=at, answer_key=key))
    return result.rowcount == 1

"""Which reports belong to one resident, for their rights over their data
(bot/services/rights.py): a chat identity's reports (the conversation's sender id, and for
"rest:<s>" the bare <s> REST reports were stored under before sender ids were namespaced),
or a phone caller's (来电登记 reports, channel 电话, given that full number)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, and_, cast, delete, func, literal, or_, select, update
from sqlalchemy.engine import Connection, Row

from bot.domain.handoff import OPEN_STATES
from bot.security.identity import REST_CHANNEL, legacy_rest_sender
from bot.storage.handoff import handoff_messages, handoffs
from bot.storage.tables import ticket_reports, tickets

PHONE_CHANNEL = "phone"  # as bot/console/services/intake.py files a caller's report


def of_sender(sender_id: str) -> Any:
    bare = legacy_rest_sender(sender_id)
    if bare is None:
        return ticket_reports.c.sender_id == sender_id
    return or_(ticket_reports.c.sender_id == sender_id,
               and_(ticket_reports.c.sender_id == bare, ticket_reports.c.channel == REST_CHANNEL))


def of_caller(phone: str) -> Any:
    return and_(ticket_reports.c.channel == PHONE_CHANNEL, ticket_reports.c.phone == phone)


def reports(conn: Connection, which: Any) -> list[Row]:
    """The reports `which` selects with their ticket's number, category, state and time,
    oldest ticket first."""
    query = (
        select(ticket_reports, tickets.c.number, tickets.c.category, tickets.c.state,
               tickets.c.created_at.label("ticket_created_at"))
        .join(tickets, tickets.c.id == ticket_reports.c.ticket_id)
        .where(which)
        .order_by(tickets.c.created_at, tickets.c.id, ticket_reports.c.id)
    )
    return list(conn.execute(query).all())


def report_ids_of_ticket(conn: Connection, ticket_id: int) -> list[int]:
    return list(conn.execute(select(ticket_reports.c.id).where(ticket_reports.c.ticket_id == ticket_id)
                             .order_by(ticket_reports.c.id)).scalars())


def handoff_message_count(conn: Connection, sender_id: str) -> int:
    """The live chat's messages with a person (转人工) of this conversation, both ways."""
    m = handoff_messages
    return int(conn.execute(select(func.count()).select_from(m).where(m.c.sender_id == sender_id)).scalar_one())


def erase_handoffs(conn: Connection, sender_id: str) -> int:
    """Delete the conversation's hand-off messages (kept as typed), and take its sender id off
    its ended hand-offs (an open one still needs it to deliver); the hand-offs' times and
    states stay for the figures. The number of messages deleted."""
    deleted = conn.execute(delete(handoff_messages).where(handoff_messages.c.sender_id == sender_id)).rowcount
    ended = and_(handoffs.c.sender_id == sender_id, handoffs.c.state.not_in(sorted(s.value for s in OPEN_STATES)))
    anonymous = literal("anon:handoff:", String) + cast(handoffs.c.id, String)
    conn.execute(update(handoffs).where(ended).values(sender_id=anonymous))
    return int(deleted)

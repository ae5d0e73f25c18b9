"""Which reports belong to one resident, for their rights over their data
(bot/services/rights.py): a chat identity's reports (the conversation's sender id, and for
"rest:<s>" the bare <s> REST reports were stored under before sender ids were namespaced),
or a phone caller's (来电登记 reports, channel 电话, given that full number)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection, Row

from bot.security.identity import REST_CHANNEL, legacy_rest_sender
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

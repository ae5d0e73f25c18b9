"""The phone number a resident gave the complaint form, held until the ticket is filed.

The tracker store keeps phone numbers masked (bot/rasa_ext/masked_events.py), and the form's
`phone` slot holds only the masked number (139****5678) for the summary. The number itself
waits here, one row per conversation, on the server side (the ticket store), and goes into
the ticket's one phone column (ticket_reports.phone) when the complaint is filed. The row
is deleted then, when the form is cancelled, or by the retention job after
PENDING_PHONE_HOURS (a form left unfinished)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Column, String, Table, delete, insert, select
from sqlalchemy.engine import Connection

from bot.storage.tables import UtcDateTime, metadata

# Longer than a conversation session (domain.yml: 24 h) and a day for the form to be finished.
PENDING_PHONE_HOURS = 48

pending_phones = Table(
    "pending_phones",
    metadata,
    Column("sender_id", String(255), primary_key=True),
    Column("phone", String(32), nullable=False),
    Column("kept_at", UtcDateTime, nullable=False),
)


def keep_phone(conn: Connection, sender_id: str, phone: str, now: datetime) -> None:
    """The conversation's phone number is now `phone` (a later answer replaces an earlier one)."""
    conn.execute(delete(pending_phones).where(pending_phones.c.sender_id == sender_id))
    conn.execute(insert(pending_phones).values(sender_id=sender_id, phone=phone, kept_at=now))


def held_phone(conn: Connection, sender_id: str, now: datetime) -> str | None:
    """The conversation's held number, unless it was given PENDING_PHONE_HOURS or more before
    `now`: such a row is expired even before the retention job's next run deletes it (the
    ticket is then filed without a phone, as docs/privacy.md says)."""
    return conn.execute(select(pending_phones.c.phone).where(
        pending_phones.c.sender_id == sender_id, pending_phones.c.kept_at > pending_phone_cutoff(now))).scalar()


def forget_phone(conn: Connection, sender_id: str) -> int:
    return conn.execute(delete(pending_phones).where(pending_phones.c.sender_id == sender_id)).rowcount


def forget_phones_kept_before(conn: Connection, before: datetime) -> int:
    return conn.execute(delete(pending_phones).where(pending_phones.c.kept_at <= before)).rowcount


def pending_phone_cutoff(now: datetime) -> datetime:
    return now - timedelta(hours=PENDING_PHONE_HOURS)

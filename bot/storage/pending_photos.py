"""A photo a resident sent before saying what the problem is (WeChat residents often send
the picture first). It is kept — one per sender, the latest, for PENDING_PHOTO_HOURS —
and the next complaint that resident starts carries it; filing that ticket uses it up.

Synchronous SQLAlchemy Core; the actions call these through runtime.run_store.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import Column, Index, String, Table, Text, delete, insert, select, update
from sqlalchemy.engine import Engine

from bot.storage.tables import UtcDateTime, metadata

PENDING_PHOTO_HOURS = 24
MAX_PHOTO_REF = 512

pending_photos = Table(
    "pending_photos",
    metadata,
    Column("sender_id", String(255), primary_key=True),  # one per sender: bounded by construction
    Column("photo", Text, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Index(None, "received_at"),
)


def keep_photo(engine: Engine, sender_id: str, photo: str, channel: str, now: datetime) -> None:
    """Remember the sender's latest photo (replacing an older one); expired rows go."""
    photo = photo[:MAX_PHOTO_REF]
    channel = (channel or "unknown")[:32]
    with engine.begin() as conn:
        conn.execute(delete(pending_photos).where(pending_photos.c.received_at < _expiry(now)))
        where = pending_photos.c.sender_id == sender_id
        values = {"photo": photo, "channel": channel, "received_at": now}
        if not conn.execute(update(pending_photos).where(where).values(**values)).rowcount:
            conn.execute(insert(pending_photos).values(sender_id=sender_id, **values))


def pending_photo(engine: Engine, sender_id: str, now: datetime) -> Optional[str]:
    """The sender's kept photo, unless it expired."""
    with engine.connect() as conn:
        return conn.execute(select(pending_photos.c.photo).where(
            pending_photos.c.sender_id == sender_id, pending_photos.c.received_at >= _expiry(now))).scalar()


def use_photo(engine: Engine, sender_id: str, photo: str) -> bool:
    """The photo went into a ticket: forget it (only that photo — a newer one stays)."""
    with engine.begin() as conn:
        return conn.execute(delete(pending_photos).where(
            pending_photos.c.sender_id == sender_id, pending_photos.c.photo == photo)).rowcount == 1


def _expiry(now: datetime) -> datetime:
    return now - timedelta(hours=PENDING_PHOTO_HOURS)

"""Conversation transcripts (Rasa's tracker events) as the retention job sees them: which
conversations have been quiet since a time, and deleting one whole conversation; and one
conversation's events as the console's ticket page shows them (stored masked).

Two stores hold them:
- the embedded profile's SQLite files (bot/sqlite_trackerstore.py: qc_tracker_events and
  qc_conversations), one per Rasa server (var/trackers-<port>.db);
- the production profile's PostgreSQL database (Rasa's SQLTrackerStore table `events`,
  QC_TRACKER_DB_URL, optionally in schema QC_TRACKER_DB_SCHEMA).
A delete re-checks in the same statement that nothing was said since the cut-off, so a
resident who writes again meanwhile keeps the conversation.
"""

from __future__ import annotations

import glob
import json
import sqlite3
from typing import Protocol

import sqlalchemy as sa


class Transcripts(Protocol):
    name: str

    def quiet_since(self, cutoff: float, after: str, limit: int) -> list[tuple[str, float]]:
        """(sender id, time of its last event) of conversations whose last event is at or
        before `cutoff` (Unix time), sender ids after `after`, in order, at most `limit`."""

    def delete(self, sender_id: str, cutoff: float) -> int:
        """Delete the conversation's events when its last one is still at or before
        `cutoff`; how many events went."""

    def events_of(self, sender_id: str) -> list[dict]:
        """The conversation's events as stored (dicts, oldest first); [] when there are none."""

    def close(self) -> None: ...


def _parsed(rows: list) -> list[dict]:
    out = []
    for (data,) in rows:
        try:
            event = json.loads(data)
        except (TypeError, ValueError):
            continue  # a row no reader could use: skipped, never a broken page
        if isinstance(event, dict):
            out.append(event)
    return out


class SQLiteTranscripts:
    """One embedded tracker file (bot/sqlite_trackerstore.py's schema)."""

    def __init__(self, path: str, busy_timeout_ms: int = 10_000) -> None:
        self.name = f"sqlite:{path}"
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                     timeout=busy_timeout_ms / 1000)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")

    def _has_tables(self) -> bool:
        row = self._conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                 "AND name IN ('qc_tracker_events', 'qc_conversations')").fetchone()
        return row[0] == 2

    def quiet_since(self, cutoff: float, after: str, limit: int) -> list[tuple[str, float]]:
        if not self._has_tables():
            return []
        rows = self._conn.execute(
            "SELECT sender_id, MAX(timestamp) FROM qc_tracker_events WHERE sender_id > ? "
            "GROUP BY sender_id HAVING MAX(timestamp) <= ? ORDER BY sender_id LIMIT ?",
            (after, cutoff, limit)).fetchall()
        return [(r[0], float(r[1])) for r in rows]

    def events_of(self, sender_id: str) -> list[dict]:
        if not self._has_tables():
            return []
        return _parsed(self._conn.execute("SELECT data FROM qc_tracker_events WHERE sender_id = ? ORDER BY seq",
                                          (sender_id,)).fetchall())

    def delete(self, sender_id: str, cutoff: float) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # the Rasa server's saves wait meanwhile
        try:
            last = conn.execute("SELECT MAX(timestamp) FROM qc_tracker_events WHERE sender_id = ?",
                                (sender_id,)).fetchone()[0]
            if last is None or last > cutoff:
                conn.execute("ROLLBACK")
                return 0
            n = conn.execute("DELETE FROM qc_tracker_events WHERE sender_id = ?", (sender_id,)).rowcount
            conn.execute("DELETE FROM qc_conversations WHERE sender_id = ?", (sender_id,))
            conn.execute("COMMIT")
            return n
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()


class SQLTranscripts:
    """Rasa's SQLTrackerStore table `events` (PostgreSQL in production)."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.name = "sql:events"
        self.engine = sa.create_engine(url, future=True, pool_pre_ping=True)
        self.events = sa.Table("events", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                               sa.Column("sender_id", sa.String(255)), sa.Column("timestamp", sa.Float),
                               sa.Column("data", sa.Text), schema=schema)

    def quiet_since(self, cutoff: float, after: str, limit: int) -> list[tuple[str, float]]:
        t = self.events
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("events", schema=t.schema):
                return []  # no Rasa server has started on this database yet
            last = sa.func.max(t.c.timestamp)
            rows = conn.execute(sa.select(t.c.sender_id, last).where(t.c.sender_id > after)
                                .group_by(t.c.sender_id).having(last <= cutoff)
                                .order_by(t.c.sender_id).limit(limit)).all()
        return [(r[0], float(r[1])) for r in rows]

    def events_of(self, sender_id: str) -> list[dict]:
        t = self.events
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("events", schema=t.schema):
                return []
            rows = conn.execute(sa.select(t.c.data).where(t.c.sender_id == sender_id).order_by(t.c.id)).all()
        return _parsed([tuple(r) for r in rows])

    def delete(self, sender_id: str, cutoff: float) -> int:
        t = self.events
        newer = sa.select(t.c.id).where(t.c.sender_id == sender_id, t.c.timestamp > cutoff).exists()
        with self.engine.begin() as conn:
            return conn.execute(sa.delete(t).where(t.c.sender_id == sender_id, ~newer)).rowcount

    def close(self) -> None:
        self.engine.dispose()


def transcripts_from(tracker_url: str | None, tracker_schema: str | None,
                     sqlite_glob: str | None) -> list[Transcripts]:
    """The tracker stores this deployment writes: PostgreSQL when QC_TRACKER_DB_URL is set,
    else the embedded SQLite files matching `sqlite_glob`."""
    if tracker_url:
        return [SQLTranscripts(tracker_url, tracker_schema)]
    return [SQLiteTranscripts(path) for path in sorted(glob.glob(sqlite_glob or ""))]

"""The embedded profile's tracker store: conversations in one SQLite file, appended to.

Why not Rasa's SQLTrackerStore on SQLite: per turn it counts the session's events through
the ORM, inserts each new event as an ORM object and commits with a full fsync, and reads
through the ORM again — together ~40 % of the Rasa server's CPU under load
(bench/results: py-spy of `make bench`'s speed part). Here the same data costs two indexed
statements on one connection:

- `qc_tracker_events` holds every event (sender, sequence number, JSON), append-only,
  as the SQL store does; `qc_conversations` keeps the number of events and where the
  latest session starts, so a save needs no count and a read only the latest session.
- WAL journal with synchronous=NORMAL: a commit survives the process dying (the case
  that matters: a model swap, a restart, a crash); a power cut may lose the last turns.
- Events are stored with phone and ID numbers masked (bot/rasa_ext/masked_events.py).
- A save appends the events the tracker has beyond those stored, in one transaction
  (BEGIN IMMEDIATE: two Rasa workers on one file take turns; Rasa's lock store already
  serialises one conversation's messages).

Several processes may share the file (Sanic workers); nothing is cached in memory.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterable
from typing import Any

from rasa.core.tracker_store import TrackerStore
from rasa.shared.core.events import SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker

from bot.rasa_ext.erasure import erases
from bot.rasa_ext.masked_events import masked_event
from bot.security.private import private_sqlite

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS qc_conversations (
    sender_id TEXT PRIMARY KEY,
    n_events INTEGER NOT NULL,
    session_start INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS qc_tracker_events (
    sender_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type_name TEXT NOT NULL,
    timestamp REAL,
    data TEXT NOT NULL,
    PRIMARY KEY (sender_id, seq)
) WITHOUT ROWID;
"""

# where in the stored sequence a retrieved tracker's first event sits (see save)
_OFFSET_ATTR = "_qc_first_seq"


class SQLiteTrackerStore(TrackerStore):
    """endpoints.yml: `tracker_store: {type: bot.rasa_ext.sqlite_trackerstore.SQLiteTrackerStore, db: path}`."""

    def __init__(self, domain=None, db: str = "trackers.db", host: str | None = None,
                 event_broker=None, busy_timeout_ms: int = 10_000, **kwargs: Any) -> None:
        super().__init__(domain, event_broker, **kwargs)
        self.path = db
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._connection()  # create the file and tables now: a bad path fails at start-up

    def _connection(self) -> sqlite3.Connection:
        # a connection must not cross a fork (Sanic starts its workers by forking)
        if self._conn is None or self._pid != os.getpid():
            private_sqlite(self.path)  # trackers hold what residents typed (phone numbers masked)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout_ms / 1000)
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    # --- reading -------------------------------------------------------------------------

    async def keys(self) -> Iterable[str]:
        return [r[0] for r in self._connection().execute("SELECT sender_id FROM qc_conversations")]

    async def exists(self, conversation_id: str) -> bool:
        row = self._connection().execute(
            "SELECT 1 FROM qc_conversations WHERE sender_id = ?", (conversation_id,)).fetchone()
        return row is not None

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        """The latest conversation session (as Rasa's SQL store)."""
        return self._retrieve(sender_id, all_sessions=False)

    async def retrieve_full_tracker(self, conversation_id: str) -> DialogueStateTracker | None:
        return self._retrieve(conversation_id, all_sessions=True)

    def _retrieve(self, sender_id: str, all_sessions: bool) -> DialogueStateTracker | None:
        conn = self._connection()
        conn.execute("BEGIN")  # one snapshot for both statements
        try:
            head = conn.execute("SELECT session_start FROM qc_conversations WHERE sender_id = ?",
                                (sender_id,)).fetchone()
            if head is None:
                return None
            first = 0 if all_sessions else head[0]
            rows = conn.execute("SELECT data FROM qc_tracker_events WHERE sender_id = ? AND seq >= ? ORDER BY seq",
                                (sender_id, first)).fetchall()
        finally:
            conn.execute("COMMIT")
        if not rows or self.domain is None:
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, [json.loads(r[0]) for r in rows], self.domain.slots)
        setattr(tracker, _OFFSET_ATTR, first)
        return tracker

    # --- writing -------------------------------------------------------------------------

    async def save(self, tracker: DialogueStateTracker) -> None:
        await self.stream_events(tracker)
        conn = self._connection()
        events: list = list(tracker.events)
        conn.execute("BEGIN IMMEDIATE")
        try:
            head = conn.execute("SELECT n_events, session_start FROM qc_conversations WHERE sender_id = ?",
                                (tracker.sender_id,)).fetchone()
            stored, session_start = head if head else (0, 0)
            # The tracker holds the stored events from its first sequence number on (the
            # latest session, or all of them for a full tracker); the rest are new. A
            # tracker this store did not read starts where the latest session starts, as
            # with Rasa's SQL store.
            first = getattr(tracker, _OFFSET_ATTR, session_start if head else 0)
            known = stored - first
            if known < 0 or known > len(events):
                raise RuntimeError(f"tracker of {tracker.sender_id!r} does not continue the stored one "
                                   f"({len(events)} events from #{first}, {stored} stored)")
            new = events[known:]
            if erases(new):  # 删除我的信息: the conversation goes, this turn with it
                conn.execute("DELETE FROM qc_tracker_events WHERE sender_id = ?", (tracker.sender_id,))
                conn.execute("DELETE FROM qc_conversations WHERE sender_id = ?", (tracker.sender_id,))
                conn.execute("COMMIT")
                return
            rows = []
            for i, event in enumerate(new):
                seq = stored + i
                if isinstance(event, SessionStarted):
                    session_start = seq
                data = masked_event(event.as_dict())  # phone and ID numbers masked at rest
                rows.append((tracker.sender_id, seq, event.type_name, data.get("timestamp"), json.dumps(data)))
            if rows:
                conn.executemany("INSERT INTO qc_tracker_events (sender_id, seq, type_name, timestamp, data) "
                                 "VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute("INSERT INTO qc_conversations (sender_id, n_events, session_start) VALUES (?, ?, ?) "
                         "ON CONFLICT (sender_id) DO UPDATE SET n_events = excluded.n_events, "
                         "session_start = excluded.session_start",
                         (tracker.sender_id, stored + len(new), session_start))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        # the next save of this same object continues after what is now stored
        setattr(tracker, _OFFSET_ATTR, first)

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

"""Rasa's SQL tracker store, made to ride out a database restart and to fail loudly.

Rasa 3.6 wraps every tracker store in FailSafeTrackerStore: when PostgreSQL does not
answer, `retrieve` returns None (the conversation starts over, its state lost) and `save`
goes to an in-memory store of that one process (the other Rasa servers never see it), and
the REST channel still answers 200. tests/cluster/test_service_faults.py saw a resident
mid-complaint answered as if the conversation had just begun after a PostgreSQL restart.

This store (a) checks pooled connections before use (pool_pre_ping) and retries a failed
read or write while the database comes back (QC_TRACKER_RETRY_SECONDS, default 10 s), and
(b) when it stays away, raises TrackerStoreUnavailable — a BaseException on purpose, so
that neither FailSafeTrackerStore nor the channel's `except Exception` turn it into a
quiet fallback: the request fails (our channels catch it and ask the resident to resend:
REST 503, Socket.IO and WeChat the busy message) and nothing half-saved is kept.

It also does a turn's reads and writes in fewer, cheaper steps than Rasa's store, with the
same rows, trackers and broker events, except that the rows have phone and ID numbers masked
(bot/rasa_ext/masked_events.py; tests/cluster/test_trackerstore.py compares the two):
a retrieve is one SELECT and a save one COUNT and one multi-row INSERT, in autocommit, as
Core statements built once (Rasa: the ORM, a schema check and a transaction for each, and
a whole second retrieve inside every save just to find the events the broker has not
had), and the round trips run in a worker thread, so the event loop serves other
conversations while PostgreSQL answers and flushes its WAL. With 1 Rasa server and 50
residents (bench/cluster.py's load) this took the server from ~20 to ~15 ms of CPU a turn
and from ~42 to ~61 turns/s.

Used by the production profile's endpoints file (type: bot.rasa_ext.trackerstore.ResilientSQLTrackerStore).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs
from rasa.shared.core.events import SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bot.rasa_ext.erasure import erases
from bot.rasa_ext.masked_events import masked_event

log = logging.getLogger(__name__)


class TrackerStoreUnavailable(BaseException):
    """The tracker store stayed unreachable: fail the request, never fall back quietly."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


async def _to_the_end(task: asyncio.Future) -> Any:
    """Await `task` to its end; a cancellation meanwhile is raised only after it."""
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():  # the task itself was cancelled (the loop is closing)
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


class ResilientSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, retry_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_seconds = float(retry_seconds if retry_seconds is not None
                                   else os.environ.get("QC_TRACKER_RETRY_SECONDS", "10"))
        url = self.engine.url
        self.engine.dispose()
        # Each read and each write of a turn is one statement (see _statements), in
        # autocommit: no BEGIN / ROLLBACK / COMMIT round trips.
        self.engine = sa.create_engine(url, pool_pre_ping=True, isolation_level="AUTOCOMMIT",
                                       **create_engine_kwargs(url))
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        self._latest, self._all, self._count, self._insert = self._statements()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="qc-tracker-store")
        with self.session_scope():  # Rasa's check that the PostgreSQL schema exists, once
            pass

    def _statements(self) -> tuple:
        """Rasa's SQLTrackerStore queries, built once as Core statements: the events of the
        latest session (timestamp from the latest SessionStarted on, all when there is
        none; SQLTrackerStore._event_query), of all sessions, their count
        (SQLTrackerStore._additional_events), and the insert of new events."""
        t = self.SQLEvent.__table__
        sender = sa.bindparam("sender_id")
        start = (sa.select(sa.func.max(t.c.timestamp))
                 .where(t.c.sender_id == sender, t.c.type_name == SessionStarted.type_name)
                 .scalar_subquery())
        latest = sa.and_(t.c.sender_id == sender, sa.or_(t.c.timestamp >= start, start.is_(None)))
        return (sa.select(t.c.data).where(latest).order_by(t.c.id),
                sa.select(t.c.data).where(t.c.sender_id == sender).order_by(t.c.id),
                sa.select(sa.func.count()).select_from(t).where(latest),
                t.insert())

    async def _run_async(self, what: str, coro_fn: Callable[[], Any]) -> Any:
        # SQLTrackerStore's reads are coroutines that do blocking work inside: run one
        # attempt to completion per try.
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.25
        while True:
            try:
                return await coro_fn()
            except Exception as exc:  # noqa: BLE001
                if not _transient(exc):
                    if isinstance(exc, DBAPIError):
                        # as Rasa's session_scope: a missing schema ends the process
                        # (print_error_and_exit) instead of a quiet fallback
                        with self.session_scope():
                            pass
                    raise
                if time.monotonic() + delay > deadline:
                    log.error("tracker store unreachable for %.0f s during %s: %s", self.retry_seconds, what,
                              type(exc).__name__)
                    raise TrackerStoreUnavailable(f"tracker store unreachable ({what})") from exc
                log.warning("tracker store %s failed (%s), retrying in %.2f s", what, type(exc).__name__, delay)
                self.engine.dispose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _rows(self, sender_id: str, all_sessions: bool) -> list:
        # one statement: the session start and the events come from one snapshot
        with self.engine.connect() as conn:
            return conn.execute(self._all if all_sessions else self._latest, {"sender_id": sender_id}).fetchall()

    async def _read(self, sender_id: str, all_sessions: bool) -> DialogueStateTracker | None:
        rows = await self._blocking(self._rows, sender_id, all_sessions)
        if self.domain and rows:
            return DialogueStateTracker.from_dict(sender_id, [json.loads(r[0]) for r in rows], self.domain.slots)
        return None

    async def _blocking(self, fn: Callable, *args: Any) -> Any:
        """Database round trips in a worker thread: the event loop serves the other
        conversations meanwhile instead of waiting for PostgreSQL (a commit's WAL flush)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        async def attempt() -> DialogueStateTracker | None:
            return await self._read(sender_id, all_sessions=False)

        return await self._run_async("retrieve", attempt)

    async def retrieve_full_tracker(self, conversation_id: str) -> DialogueStateTracker | None:
        async def attempt() -> DialogueStateTracker | None:
            return await self._read(conversation_id, all_sessions=True)

        return await self._run_async("retrieve", attempt)

    async def keys(self) -> Iterable[str]:
        return await self._run_async("keys", lambda: SQLTrackerStore.keys(self))

    async def save(self, tracker: DialogueStateTracker) -> None:
        """SQLTrackerStore.save: the events beyond those stored for the latest session go
        to the event broker (once, before they are written, as TrackerStore.stream_events
        sends them) and are inserted. Rasa reads the whole stored tracker back to know how
        many events the broker has not had (stream_events) and counts them again to write;
        the count alone says both, so each attempt is one count and one INSERT of all new
        rows (a single statement: a failed attempt leaves nothing behind, and the retry
        counts the stored events afresh)."""
        events = list(tracker.events)
        published: list = []

        async def attempt() -> None:
            conn, stored = await self._blocking(self._count_stored, tracker.sender_id)
            try:
                new = events[stored:]
                if not published:
                    published.append(True)
                    if self.event_broker is not None:
                        await self._stream_new_events(self.event_broker, new, tracker.sender_id)
                rows = [self._row(tracker.sender_id, e) for e in new]
            except BaseException:
                conn.close()
                raise
            if erases(new):  # 删除我的信息: the conversation goes, this turn with it (one statement)
                await self._blocking(self._erase_and_close, conn, tracker.sender_id)
                return
            await self._blocking(self._insert_and_close, conn, rows)

        # Once begun, a save runs to its end even if the request is cancelled meanwhile (Sanic
        # cancels the handler of a client that went away): the conversation's lock is held
        # until the events are stored, as with the synchronous original.
        await _to_the_end(asyncio.ensure_future(self._run_async("save", attempt)))

    def _count_stored(self, sender_id: str) -> tuple:
        conn = self.engine.connect()
        try:
            return conn, conn.execute(self._count, {"sender_id": sender_id}).scalar_one()
        except BaseException:
            conn.close()
            raise

    def _insert_and_close(self, conn: Any, rows: list) -> None:
        try:
            if rows:
                conn.execute(self._insert.values(rows))
        finally:
            conn.close()

    def _erase_and_close(self, conn: Any, sender_id: str) -> None:
        try:
            t = self.SQLEvent.__table__
            conn.execute(sa.delete(t).where(t.c.sender_id == sender_id))
        finally:
            conn.close()

    @staticmethod
    def _row(sender_id: str, event: Any) -> dict:
        data = masked_event(event.as_dict())  # phone and ID numbers masked at rest
        return {"sender_id": sender_id, "type_name": event.type_name, "timestamp": data.get("timestamp"),
                "intent_name": data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                "action_name": data.get("name"), "data": json.dumps(data)}

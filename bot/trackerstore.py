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

Used by the production profile's endpoints file (type: bot.trackerstore.ResilientSQLTrackerStore).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any, Callable, Iterable, Optional, Text

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs
from rasa.shared.nlu.constants import INTENT_NAME_KEY
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)


class TrackerStoreUnavailable(BaseException):
    """The tracker store stayed unreachable: fail the request, never fall back quietly."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class ResilientSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, retry_seconds: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_seconds = float(retry_seconds if retry_seconds is not None
                                   else os.environ.get("QC_TRACKER_RETRY_SECONDS", "10"))
        url = self.engine.url
        self.engine.dispose()
        self.engine = sa.create_engine(url, pool_pre_ping=True, **create_engine_kwargs(url))
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)

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
                    raise
                if time.monotonic() + delay > deadline:
                    log.error("tracker store unreachable for %.0f s during %s: %s", self.retry_seconds, what,
                              type(exc).__name__)
                    raise TrackerStoreUnavailable(f"tracker store unreachable ({what})") from exc
                log.warning("tracker store %s failed (%s), retrying in %.2f s", what, type(exc).__name__, delay)
                self.engine.dispose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def retrieve(self, sender_id: Text):
        return await self._run_async("retrieve", lambda: SQLTrackerStore.retrieve(self, sender_id))

    async def retrieve_full_tracker(self, conversation_id: Text):
        return await self._run_async("retrieve", lambda: SQLTrackerStore.retrieve_full_tracker(self, conversation_id))

    async def keys(self) -> Iterable[Text]:
        return await self._run_async("keys", lambda: SQLTrackerStore.keys(self))

    async def save(self, tracker) -> None:
        await self.stream_events(tracker)  # once; its retrieve retries on its own

        def write() -> None:
            # SQLTrackerStore.save's database part: one transaction, so a failed attempt
            # leaves nothing behind and the retry counts the stored events afresh.
            with self.session_scope() as session:
                for event in self._additional_events(session, tracker):
                    data = event.as_dict()
                    session.add(self.SQLEvent(
                        sender_id=tracker.sender_id,
                        type_name=event.type_name,
                        timestamp=data.get("timestamp"),
                        intent_name=data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                        action_name=data.get("name"),
                        data=json.dumps(data),
                    ))
                session.commit()

        async def attempt() -> None:
            write()

        await self._run_async("save", attempt)

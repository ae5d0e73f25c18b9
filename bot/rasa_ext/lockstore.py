"""A Redis lock store that is safe across several Rasa servers.

Rasa 3.6's RedisLockStore changes a conversation's ticket lock by read → modify → write
(GET, issue/remove a ticket, SET; DEL when nobody waits) with nothing in between to stop a
second server doing the same: two servers taking a message of one resident at the same
moment can both draw ticket 0 and process the two messages at once, and the SQL tracker
store then drops one turn's events (tests/cluster/test_same_conversation.py saw it). Here
each change is one optimistic Redis transaction (WATCH the key, MULTI/EXEC, retry when
another server changed it first), so tickets are unique and served in order.

Used by the production profile's endpoints file (type: bot.rasa_ext.lockstore.AtomicRedisLockStore).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore

log = logging.getLogger(__name__)


class AtomicRedisLockStore(RedisLockStore):
    def __init__(self, endpoint_config: Any = None, **kwargs: Any) -> None:
        if endpoint_config is not None:  # built by Rasa from the endpoints file
            kwargs = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **kwargs}
        super().__init__(**kwargs)

    def _change(self, conversation_id: str, fn: Callable[[TicketLock | None], TicketLock | None]) -> Any:
        """Apply `fn` to the stored lock atomically; fn returns the lock to store (None:
        delete it). Returns what fn stored."""
        key = self.key_prefix + conversation_id
        result: list = []

        def txn(pipe: Any) -> None:
            raw = pipe.get(key)
            lock = TicketLock.from_dict(json.loads(raw)) if raw else None
            new = fn(lock)
            pipe.multi()
            if new is None:
                pipe.delete(key)
            else:
                pipe.set(key, new.dumps())
            result[:] = [new]

        self.red.transaction(txn, key)
        return result[0] if result else None

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        number: list = []

        def issue(lock: TicketLock | None) -> TicketLock:
            lock = lock or TicketLock(conversation_id)
            number[:] = [lock.issue_ticket(lock_lifetime)]
            return lock

        try:
            self._change(conversation_id, issue)
        except Exception as exc:  # noqa: BLE001 - Rasa expects LockError
            raise LockError(f"Error while acquiring lock. Error:\n{exc}") from exc
        return number[0]

    def update_lock(self, conversation_id: str) -> None:
        def expire(lock: TicketLock | None) -> TicketLock | None:
            if lock is not None:
                lock.remove_expired_tickets()
            return lock

        self._change(conversation_id, expire)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        def finish(lock: TicketLock | None) -> TicketLock | None:
            if lock is not None:
                lock.remove_ticket_for(ticket_number)
            return lock

        self._change(conversation_id, finish)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        # Remove our ticket and delete the lock when nobody waits — one step, so a ticket
        # another server issued in between is never deleted with it.
        def done(lock: TicketLock | None) -> TicketLock | None:
            if lock is None:
                return None
            lock.remove_ticket_for(ticket_number)
            return lock if lock.is_someone_waiting() else None

        self._change(conversation_id, done)

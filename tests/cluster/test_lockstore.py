"""bot.rasa_ext.lockstore.AtomicRedisLockStore on the real Redis: several lock stores (as several
Rasa servers hold) drawing tickets for one conversation at once never draw the same
number, and a finished ticket's cleanup never deletes a ticket drawn meanwhile."""
from __future__ import annotations

import threading
import uuid

from tests.cluster.conftest import REDIS_URL, require_services


def _stores(n: int, prefix: str):
    from urllib.parse import urlsplit

    from bot.rasa_ext.lockstore import AtomicRedisLockStore

    u = urlsplit(REDIS_URL)
    return [AtomicRedisLockStore(host=u.hostname, port=u.port or 6379, db=int(u.path.lstrip("/") or 1),
                                 key_prefix=prefix) for _ in range(n)]


def test_concurrent_tickets_are_unique_and_cleanup_keeps_waiters():
    require_services()
    prefix = "qctest" + uuid.uuid4().hex[:8]
    stores = _stores(4, prefix)
    conversation = "race-" + uuid.uuid4().hex[:8]
    drawn: list = []
    start = threading.Barrier(len(stores))

    def draw(store):
        start.wait()
        for _ in range(25):
            drawn.append(store.issue_ticket(conversation, 60))

    threads = [threading.Thread(target=draw, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(drawn) == list(range(100))  # 100 distinct tickets, none lost
    lock = stores[0].get_lock(conversation)
    assert lock.now_serving == 0 and len(lock.tickets) == 100

    # Every ticket but the last finished from alternating stores: the lock survives
    # while someone waits, and disappears with the last ticket.
    for n in range(99):
        stores[n % 4].cleanup(conversation, n)
    assert stores[1].get_lock(conversation).now_serving == 99
    stores[2].cleanup(conversation, 99)
    assert stores[3].get_lock(conversation) is None
    stores[0].red.delete(stores[0].key_prefix + conversation)


def test_a_change_made_meanwhile_by_another_server_is_not_overwritten():
    """Another server issues a ticket between our read of the lock and our write: our
    write is refused (EXEC after WATCH) and our change is made again on the lock as it is
    now, so neither ticket is lost."""
    from rasa.core.lock import TicketLock

    require_services()
    prefix = "qctest" + uuid.uuid4().hex[:8]
    ours, other = _stores(2, prefix)
    conversation = "meanwhile-" + uuid.uuid4().hex[:8]
    seen: list = []

    def issue(lock):
        seen.append(None if lock is None else [t.number for t in lock.tickets])
        if len(seen) == 1:
            assert other.issue_ticket(conversation, 60) == 0  # the other server, in between
        lock = lock or TicketLock(conversation)
        lock.issue_ticket(60)
        return lock

    try:
        stored = ours._change(conversation, issue)
        assert seen == [None, [0]]  # read, refused, read again with the other's ticket
        assert [t.number for t in stored.tickets] == [0, 1]
        assert [t.number for t in other.get_lock(conversation).tickets] == [0, 1]
        ours.cleanup(conversation, 1)
        other.cleanup(conversation, 0)
        assert ours.get_lock(conversation) is None
    finally:
        ours.red.delete(ours.key_prefix + conversation)

"""PostgreSQL restarted, Redis stopped, RabbitMQ taken away — under a running cluster.

These tests stop services, so they use their own: a private PostgreSQL (initdb in a temp
dir, random port) holding the ticket store and the tracker store in two databases, a
private redis-server, and RabbitMQ (the machine's) behind a TCP proxy the test can cut.
Each test states what it injected and what it checked."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from urllib.parse import urlsplit

import aiohttp
import pytest

from bench.load import check_tickets, converse, pick_residents
from bot.channels.common import MSG_BUSY
from tests.cluster.conftest import (
    AMQP_URL,
    _amqp,
    _declare_subscriber,
    _delete_exchange,
    _delete_queue,
    read_queue,
    require_services,
)
from tests.cluster.helpers import HttpParser, check_conversation, stored_events


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """(cluster, env, private postgres, private redis, rabbitmq proxy)."""
    require_services()
    from sqlalchemy import create_engine

    from bot.nlu.explain import latest_model
    from bot.ops.cluster import Cluster
    from tests.cluster.private import PrivatePostgres, PrivateRedis, ThreadedTcpProxy

    pg = PrivatePostgres().init()
    redis = PrivateRedis().start()
    a = urlsplit(AMQP_URL)
    mq = ThreadedTcpProxy(a.hostname, a.port or 5672)
    tag = uuid.uuid4().hex[:8]
    admin = create_engine(pg.url, future=True, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE qingcheng")
        conn.exec_driver_sql("CREATE DATABASE qingcheng_tracker")
    admin.dispose()
    base = f"postgresql://postgres@127.0.0.1:{pg.port}"
    env = {
        "QC_PROFILE": "production",
        "QC_DATABASE_URL": f"{base}/qingcheng",
        "QC_TRACKER_DB_URL": f"{base}/qingcheng_tracker",
        "QC_REDIS_URL": redis.url,
        "QC_AMQP_URL": AMQP_URL.replace(f"{a.hostname}:{a.port or 5672}", f"127.0.0.1:{mq.port}"),
        "QC_RASA_EVENTS_QUEUE": f"qc_test_fault_rasa_events_{tag}",
        "QC_EVENTS_EXCHANGE": f"qc.test.fault.events.{tag}",
        "QC_TEST_SUBSCRIBER_QUEUE": f"qc_test_fault_subscriber_{tag}",
        "QC_NOTIFIER_INTERVAL": "1",
        "QC_TRACKER_RETRY_SECONDS": "4",  # short, so the outage test below is quick
    }
    _amqp(_declare_subscriber(env["QC_EVENTS_EXCHANGE"], env["QC_TEST_SUBSCRIBER_QUEUE"]))
    cluster = Cluster(env=env, work_dir=tmp_path_factory.mktemp("faulty"), instances=2, model=str(latest_model()))
    try:
        cluster.start()
        yield cluster, env, pg, redis, mq
    finally:
        cluster.stop()
        mq.close()
        redis.destroy()
        pg.destroy()
        for q in (env["QC_RASA_EVENTS_QUEUE"], env["QC_TEST_SUBSCRIBER_QUEUE"]):
            _delete_queue(q)
        _amqp(_delete_exchange(env["QC_EVENTS_EXCHANGE"]))


class _Counting:
    """aiohttp session wrapper shared by all residents: runs `inject` (in a thread, so
    requests stay in flight meanwhile) just before the n-th POST of the run."""

    def __init__(self, session, n: int, inject) -> None:
        self.session, self.n, self.inject, self.posts = session, n, inject, 0
        self.thread = None

    def post(self, url, **kwargs):
        self.posts += 1
        if self.posts == self.n:
            self.thread = threading.Thread(target=self.inject)
            self.thread.start()
        return self.session.post(url, **kwargs)


async def _residents(base_url, residents, senders, session_wrapper=None):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        session = session_wrapper(s) if session_wrapper else s
        outcomes = await asyncio.gather(*(converse(session, base_url, r, snd) for r, snd in zip(residents, senders)))
        if session_wrapper and session.thread is not None:
            await asyncio.to_thread(session.thread.join)
        return outcomes


def _clear_failure(error: str) -> bool:
    # A status from the server (not a hang, a dropped connection or a reply nobody understands).
    return error.startswith("HTTP 5")


def test_postgres_restarted_during_load(faulty):
    """Injected: PostgreSQL (tickets + tracker) restarted with a fast shutdown while 4
    residents are mid-complaint through nginx. Checked: every turn either succeeded (the
    tracker store and the ticket store reconnect and retry across the restart) or failed
    with an HTTP 5xx status (no hang, no reply from a conversation that lost its state);
    every complaint a resident was told is filed is in the store exactly once under that
    number; residents whose turn failed carry on afterwards and complete, once; no Rasa
    server fell back to its in-memory tracker store."""
    cluster, env, pg, _, _ = faulty
    residents = pick_residents(HttpParser(cluster.rasa_urls[0], cluster.api_token), 4)
    senders = [f"fault-pg-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    first = asyncio.run(_residents(cluster.proxy_url, residents, senders, lambda s: _Counting(s, 6, pg.restart)))
    for o in first:
        assert o.error is None or _clear_failure(o.error), o.error
    told = [o for o in first if o.ticket]
    check = check_tickets(env["QC_DATABASE_URL"], told)
    assert (check["lost"], check["duplicates"], check["number_mismatch"]) == (0, 0, 0), check

    # Later: those who failed go on in the same conversation (the retry) and complete.
    again = [(r, o.sender) for r, o in zip(residents, first) if not o.ticket]
    later = asyncio.run(_residents(cluster.proxy_url, [r for r, _ in again], [s for _, s in again]))
    assert all(o.error is None and o.ticket for o in later), [o.error for o in later]
    done = told + later
    for o in later:
        o.confirmed = True
    check = check_tickets(env["QC_DATABASE_URL"], done)
    assert check["lost"] == 0 and check["duplicates"] == 0 and check["number_mismatch"] == 0, check
    assert check["reports_stored"] == 4
    print(f"PostgreSQL restart: {sum(1 for o in first if o.error)} of 4 residents saw a failed turn")
    _no_quiet_fallback(cluster)


def _no_quiet_fallback(cluster):
    for i in (1, 2):
        log = (cluster.work_dir / f"rasa-{i}.log").read_text(encoding="utf-8", errors="replace")
        assert "Falling back to use the 'InMemoryTrackerStore'" not in log


def test_postgres_down_longer_than_the_retries(faulty):
    """Injected: PostgreSQL stopped mid-complaint for longer than the tracker store retries
    (QC_TRACKER_RETRY_SECONDS=4), then started again. Checked: the message sent meanwhile
    fails with our 503 and the busy message (not a 200 from a conversation that forgot where it was); after
    the restart the same resident continues where the conversation was and files one
    ticket; the tracker store holds every turn whole and in order; no quiet fallback."""
    cluster, env, pg, _, _ = faulty
    resident = pick_residents(HttpParser(cluster.rasa_urls[0], cluster.api_token), 7)[6]
    sender = f"fault-pgdown-{uuid.uuid4().hex[:6]}"
    url = f"{cluster.proxy_url}/webhooks/rest/webhook"

    async def say(message):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            async with s.post(url, json={"sender": sender, "message": message}) as r:
                return r.status, await r.text()

    from bench.load import reply_kind

    status, body = asyncio.run(say(resident.first))
    assert status == 200
    assert reply_kind("\n".join(m.get("text") or "" for m in json.loads(body))) in ("photo", "phone", "location"), body
    pg.stop()
    try:
        status, body = asyncio.run(say("/deny"))
    finally:
        pg.start()
    assert (status, json.loads(body)) == (503, {"error": "unavailable", "message": MSG_BUSY}), (status, body)
    later = asyncio.run(_residents(cluster.proxy_url, [resident], [sender]))[0]
    assert later.error is None and later.ticket, later.error
    assert later.turns < 8  # went on from the form, not from scratch twice over
    later.confirmed = True
    check = check_tickets(env["QC_DATABASE_URL"], [later])
    assert (check["lost"], check["duplicates"], check["number_mismatch"]) == (0, 0, 0)
    events = stored_events({"QC_TRACKER_DB_URL": env["QC_TRACKER_DB_URL"]}, sender)
    users = [e["data"].get("text") for e in events if e["event"] == "user"]
    assert users[0] == resident.first
    assert check_conversation(events, users) == []
    _no_quiet_fallback(cluster)


def test_redis_stopped_then_back(faulty):
    """Injected: the lock store's Redis killed mid-conversation, started again 3 s later on
    the same port. Checked: while it is down a message fails fast with an HTTP 5xx (Rasa
    cannot lock the conversation, so it does not process it unlocked); once it is back the
    same resident's conversation continues and completes with one ticket; the tracker
    store holds the conversation whole and in order."""
    cluster, env, _, redis, _ = faulty
    resident = pick_residents(HttpParser(cluster.rasa_urls[0], cluster.api_token), 5)[4]
    sender = f"fault-redis-{uuid.uuid4().hex[:6]}"
    url = f"{cluster.proxy_url}/webhooks/rest/webhook"

    async def say(message):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            t0 = time.monotonic()
            async with s.post(url, json={"sender": sender, "message": message}) as r:
                return r.status, await r.text(), time.monotonic() - t0

    assert asyncio.run(say(resident.first))[0] == 200
    redis.stop()
    try:
        status, body, took = asyncio.run(say("/deny"))
        assert status >= 500 and took < 30, (status, body, took)
    finally:
        redis.start()
    later = asyncio.run(_residents(cluster.proxy_url, [resident], [sender]))[0]
    assert later.error is None and later.ticket, later.error
    later.confirmed = True
    check = check_tickets(env["QC_DATABASE_URL"], [later])
    assert (check["lost"], check["duplicates"], check["number_mismatch"]) == (0, 0, 0)
    events = stored_events({"QC_TRACKER_DB_URL": env["QC_TRACKER_DB_URL"]}, sender)
    users = [e["data"].get("text") for e in events if e["event"] == "user"]
    assert "/deny" not in users[:2]  # the message sent while Redis was down was not processed
    assert check_conversation(events, users) == []


def test_rabbitmq_away_then_back(faulty):
    """Injected: RabbitMQ taken away from the whole cluster (TCP proxy cut: connections
    dropped, new ones refused) while a resident files a complaint; restored after.
    Checked: the resident is not affected (complaint filed, one ticket); while RabbitMQ is
    away the ticket's events stay in the database (not on the exchange); once it is back
    they are published, each exactly once, and Rasa's conversation events follow (each
    once; in timestamp order they are the conversation as the tracker store holds it)."""
    cluster, env, _, _, mq = faulty
    from sqlalchemy import select

    from bot.storage.engine import make_engine
    from bot.storage.tables import ticket_events, tickets

    resident = pick_residents(HttpParser(cluster.rasa_urls[0], cluster.api_token), 6)[5]
    sender = f"fault-mq-{uuid.uuid4().hex[:6]}"
    asyncio.run(read_queue(env["QC_TEST_SUBSCRIBER_QUEUE"], 0.5))  # earlier tests' events
    mq.cut()
    try:
        outcome = asyncio.run(_residents(cluster.proxy_url, [resident], [sender]))[0]
        assert outcome.error is None and outcome.ticket, outcome.error
        time.sleep(3)  # a few notifier rounds, all failing
        while_away = asyncio.run(read_queue(env["QC_TEST_SUBSCRIBER_QUEUE"], 0.5))
    finally:
        mq.restore()
    engine = make_engine(env["QC_DATABASE_URL"])
    with engine.connect() as conn:
        ids = {f"ticket_event:{i}" for (i,) in conn.execute(
            select(ticket_events.c.id).join(tickets, tickets.c.id == ticket_events.c.ticket_id)
            .where(tickets.c.number == outcome.ticket))}
    engine.dispose()
    assert ids and not ids & {m for m, _, _ in while_away}
    got = []
    deadline = time.monotonic() + 60  # the publisher reconnects on its next round
    while time.monotonic() < deadline and not ids <= set(got):
        got += [m for m, _, _ in asyncio.run(read_queue(env["QC_TEST_SUBSCRIBER_QUEUE"], 1.0))]
    assert ids <= set(got)
    assert all(got.count(i) == 1 for i in ids)

    # Rasa's Pika broker kept the conversation's events while RabbitMQ was away and sent
    # them on reconnecting: every message of the resident, once. Each Rasa server keeps
    # its own backlog, so across servers they arrive out of order; their timestamps give
    # the conversation's order back (what a subscriber must sort by after an outage).
    users = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(users) < outcome.turns:
        for _, _, body in asyncio.run(read_queue(env["QC_RASA_EVENTS_QUEUE"], 1.0)):
            event = json.loads(body)
            if event.get("sender_id") == "rest:" + sender and event.get("event") == "user":
                users.append((event["timestamp"], event.get("text")))
    texts = [t for _, t in sorted(users)]
    assert len(texts) == outcome.turns and texts[0] == resident.first and texts[-1] == "/affirm", users
    stored = [e["data"].get("text") for e in stored_events({"QC_TRACKER_DB_URL": env["QC_TRACKER_DB_URL"]}, sender)
              if e["event"] == "user"]
    assert texts == stored

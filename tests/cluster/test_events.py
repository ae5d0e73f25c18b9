"""Ticket and notification events to RabbitMQ (bot/services/events.py) on real PostgreSQL and a
real RabbitMQ: every row published once, the cursor moves only after RabbitMQ's confirm,
and while RabbitMQ is away nothing moves and nothing is lost."""
from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from tests.cluster.conftest import AMQP_URL, require_services
from tests.cluster.tcpproxy import TcpProxy


@pytest.fixture
def store():
    """A ticket store of its own (fresh schema, dropped after): ticket_events is append-only."""
    from sqlalchemy import create_engine

    from bot.services.setup import prepare_store
    from bot.storage.engine import make_engine
    from tests.cluster.conftest import _with_schema
    from tests.conftest import PG_BASE_URL

    require_services()
    schema = f"qc_ev_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE_URL, future=True)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')  # generated name
    engine = make_engine(_with_schema(schema))
    try:
        prepare_store(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _expected_ids(engine):
    from bot.console.tables import outbox
    from bot.storage.tables import ticket_events

    with engine.connect() as conn:
        events = [f"ticket_event:{i}" for (i,) in conn.execute(select(ticket_events.c.id).order_by(ticket_events.c.id))]
        notes = [f"notification:{i}" for (i,) in conn.execute(select(outbox.c.id).order_by(outbox.c.id))]
    return events, notes


def _file_and_announce(engine, key):
    from bot.console import services as svc
    from tests.console.helpers import file, now, uow

    result = file(engine, key, sender=f"resident-{key}")
    svc.ensure_feed(uow(engine), now())
    svc.process_feed(uow(engine), now())  # ticket events → outbox (resident/worker notices)
    return result


async def _drain(queue, timeout=3.0):
    got = []
    while True:
        msg = await queue.get(no_ack=True, fail=False, timeout=timeout)
        if msg is None:
            return got
        got.append((msg.message_id, msg.routing_key, json.loads(msg.body)))


def test_events_published_once_with_confirms_and_held_while_rabbitmq_is_away(store):
    """Injected: RabbitMQ taken away from the publisher (TCP proxy cut) after a first batch.
    Checked: first batch — every ticket event and notice published once, routing keys by
    kind, cursors at the last ids; while away — publishing fails loudly, the cursors stay,
    a ticket filed meanwhile waits; back — exactly the waiting rows are published, once."""
    require_services()
    import aio_pika

    from bot.console.tables import feed_cursors
    from bot.services.events import OUTBOX_CURSOR, TICKET_CURSOR, EventPublisher

    exchange_name = f"qc.test.events.{uuid.uuid4().hex[:8]}"
    a = urlsplit(AMQP_URL)

    async def go():
        proxy = await TcpProxy(a.hostname, a.port or 5672).start()
        via_proxy = AMQP_URL.replace(f"{a.hostname}:{a.port or 5672}", f"127.0.0.1:{proxy.port}")
        sub = await aio_pika.connect(AMQP_URL, timeout=5)  # the subscriber: a city system
        try:
            ch = await sub.channel()
            ex = await ch.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True, auto_delete=False)
            queue = await ch.declare_queue(exclusive=True)
            await queue.bind(ex, "#")
            publisher = EventPublisher(via_proxy, exchange_name, store, timeout=5)

            _file_and_announce(store, "k1")
            _file_and_announce(store, "k2")
            events, notes = _expected_ids(store)
            assert events and notes
            assert await publisher.publish_pending() == len(events) + len(notes)
            first = await _drain(queue)
            assert [m[0] for m in first] == events + notes  # each once, in order
            assert all(k.startswith("ticket.") for _, k, b in first if b["type"] == "ticket_event")
            assert {b["ticket_number"] for _, _, b in first if b["type"] == "ticket_event"} == {
                f"{n}" for n in _numbers(store)}
            assert await publisher.publish_pending() == 0  # nothing twice

            await proxy.cut()
            _file_and_announce(store, "k3")
            with pytest.raises(Exception):
                await publisher.publish_pending()
            assert _cursors(store) == {TICKET_CURSOR: int(events[-1].split(":")[1]),
                                       OUTBOX_CURSOR: int(notes[-1].split(":")[1])}
            assert await _drain(queue, 1.0) == []

            await proxy.restore()
            events2, notes2 = _expected_ids(store)
            waiting = events2[len(events):] + notes2[len(notes):]
            assert waiting
            assert await publisher.publish_pending() == len(waiting)
            second = await _drain(queue)
            assert [m[0] for m in second] == waiting
            await publisher.close()
            await ex.delete()
        finally:
            await sub.close()
            await proxy.cut()

    def _cursors(engine):
        with engine.connect() as conn:
            return dict(conn.execute(select(feed_cursors.c.name, feed_cursors.c.last_event_id)
                                     .where(feed_cursors.c.name.like("amqp:%"))).all())

    asyncio.run(go())


def _numbers(engine):
    from bot.storage.tables import tickets

    with engine.connect() as conn:
        return [n for (n,) in conn.execute(select(tickets.c.number))]

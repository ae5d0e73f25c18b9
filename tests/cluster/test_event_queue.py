"""issue 20 item 3: the Rasa event queue is bounded and dead-lettered, on the real RabbitMQ.

The broker is built the way a Rasa server builds it: from the production endpoints file
(bot/ops/production.py) through Rasa's EventBroker.create. Every name is unique to the test
(queue, Rasa exchange, dead-letter exchange and its queue), so nobody else's queue sees
these messages, and all of them are deleted at the end."""
from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika

from tests.cluster.conftest import AMQP_URL, require_services


def test_rasa_event_queue_keeps_the_newest_and_dead_letters_the_rest(tmp_path, monkeypatch):
    require_services()
    from rasa.core.brokers.broker import EventBroker
    from rasa.core.utils import read_endpoints_from_path

    from bot.ops.production import endpoints_yaml, rasa_env

    tag = uuid.uuid4().hex[:10]
    queue, exchange, dead, dead_queue = (f"qc_test_evq_{tag}", f"qc.test.rasa.{tag}", f"qc.test.dead.{tag}",
                                         f"qc_test_dead_{tag}")
    env = {"QC_PROFILE": "production", "QC_DATABASE_URL": "postgresql://x@127.0.0.1/x",
           "QC_TRACKER_DB_URL": "postgresql://x@127.0.0.1/y", "QC_REDIS_URL": "redis://127.0.0.1:6379/1",
           "QC_AMQP_URL": AMQP_URL, "QC_RASA_EVENTS_QUEUE": queue, "QC_RASA_EVENTS_MAX_LENGTH": "3",
           "QC_DEAD_LETTER_EXCHANGE": dead, "QC_RASA_EXCHANGE": exchange}
    path = tmp_path / "endpoints.yml"
    path.write_text(endpoints_yaml("http://127.0.0.1:1/webhook", env), encoding="utf-8")

    async def go():
        conn = await aio_pika.connect(AMQP_URL, timeout=5)
        async with conn:
            ch = await conn.channel()
            # a reader of the dead letters, bound before anything is published
            dlx = await ch.declare_exchange(dead, aio_pika.ExchangeType.FANOUT, durable=True)
            dq = await ch.declare_queue(dead_queue, auto_delete=False)
            await dq.bind(dlx)
            cfg = read_endpoints_from_path(str(path)).event_broker
            assert cfg.kwargs["exchange_name"] == exchange  # not the shared rasa-exchange
            broker = await EventBroker.create(cfg)
            try:
                for i in range(5):
                    broker.publish({"sender_id": f"s{i}", "event": "user", "text": str(i)})
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    q = await ch.declare_queue(queue, passive=True)
                    d = await ch.declare_queue(dead_queue, passive=True)
                    if q.declaration_result.message_count == 3 and d.declaration_result.message_count == 2:
                        break
            finally:
                await broker.close()
            kept, dropped = [], []
            for name, into in ((queue, kept), (dead_queue, dropped)):
                qq = await ch.declare_queue(name, passive=True)
                while (msg := await qq.get(no_ack=True, fail=False, timeout=2)) is not None:
                    into.append(json.loads(msg.body)["text"])
            for name in (queue, dead_queue):
                await ch.queue_delete(name)
            for name in (exchange, dead):
                await ch.exchange_delete(name)
            return kept, dropped

    for name, value in rasa_env(env).items():  # the password the endpoints file refers to
        monkeypatch.setenv(name, value)
    kept, dropped = asyncio.run(go())
    assert kept == ["2", "3", "4"]
    assert dropped == ["0", "1"]


def test_rasa_events_reach_the_queue_with_phone_and_id_numbers_masked(tmp_path, monkeypatch):
    """issue 19 "at rest": the queue is a copy of the transcripts, masked as the tracker store
    keeps them — a message kept while the action server was down included (nothing replays
    from the queue)."""
    require_services()
    from rasa.core.brokers.broker import EventBroker
    from rasa.core.utils import read_endpoints_from_path

    from bot.ops.production import endpoints_yaml, rasa_env
    from bot.rasa_ext.masked_events import PENDING_KEY

    tag = uuid.uuid4().hex[:10]
    queue, exchange, dead = f"qc_test_evm_{tag}", f"qc.test.rasa.{tag}", f"qc.test.dead.{tag}"
    env = {"QC_PROFILE": "production", "QC_DATABASE_URL": "postgresql://x@127.0.0.1/x",
           "QC_TRACKER_DB_URL": "postgresql://x@127.0.0.1/y", "QC_REDIS_URL": "redis://127.0.0.1:6379/1",
           "QC_AMQP_URL": AMQP_URL, "QC_RASA_EVENTS_QUEUE": queue, "QC_DEAD_LETTER_EXCHANGE": dead,
           "QC_RASA_EXCHANGE": exchange}
    path = tmp_path / "endpoints.yml"
    path.write_text(endpoints_yaml("http://127.0.0.1:1/webhook", env), encoding="utf-8")
    published = [
        {"sender_id": "rest:a", "event": "user", "text": "我电话13812345678 身份证110101199003071234",
         "parse_data": {"text": "我电话13812345678", "entities": [{"entity": "phone", "value": "13812345678"}]}},
        {"sender_id": "rest:a", "event": "user", "text": "电话13912345678", "metadata": {PENDING_KEY: True}},
        {"sender_id": "rest:a", "event": "bot", "text": "您的电话：13812345678"},
        {"sender_id": "rest:a", "event": "slot", "name": "phone", "value": "13812345678"},
    ]

    async def go():
        conn = await aio_pika.connect(AMQP_URL, timeout=5)
        async with conn:
            ch = await conn.channel()
            broker = await EventBroker.create(read_endpoints_from_path(str(path)).event_broker)
            try:
                for event in published:
                    broker.publish(event)
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    q = await ch.declare_queue(queue, passive=True)
                    if q.declaration_result.message_count == len(published):
                        break
            finally:
                await broker.close()
            got = []
            qq = await ch.declare_queue(queue, passive=True)
            while (msg := await qq.get(no_ack=True, fail=False, timeout=2)) is not None:
                got.append(msg.body.decode())
            await ch.queue_delete(queue)
            for name in (exchange, dead):
                await ch.exchange_delete(name)
            return got

    for name, value in rasa_env(env).items():
        monkeypatch.setenv(name, value)
    bodies = asyncio.run(go())
    assert len(bodies) == len(published)
    events = [json.loads(b) for b in bodies]
    assert [e.get("text") for e in events[:3]] == ["我电话138****5678 身份证110***********1234", "电话139****5678",
                                                   "您的电话：138****5678"]
    assert events[0]["parse_data"]["entities"][0]["value"] == "138****5678"
    assert events[3]["value"] == "138****5678"
    assert not any(n in b for b in bodies for n in ("13812345678", "13912345678", "110101199003071234"))
    assert published[0]["text"].startswith("我电话13812345678")  # the caller's event is not changed

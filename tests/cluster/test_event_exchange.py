"""Two deployments on one RabbitMQ vhost do not see each other's conversation events.

Rasa's Pika broker publishes to the fanout exchange `rasa-exchange` unless told otherwise,
so every deployment's event queue was bound to the same exchange and received every
other deployment's conversations. Now each deployment's exchange is QC_RASA_EXCHANGE, by
default derived from its queue name. Brokers are built the way a Rasa server builds them
(production endpoints file → Rasa's EventBroker.create) on the real RabbitMQ; every queue
and exchange name is unique to the test and deleted at the end. The shared
`rasa-exchange` is never published to: the check on the generated endpoints comes first."""
from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika

from tests.cluster.conftest import AMQP_URL, require_services


def _env(queue: str, dead: str, **extra: str) -> dict:
    return {"QC_PROFILE": "production", "QC_DATABASE_URL": "postgresql://x@127.0.0.1/x",
            "QC_TRACKER_DB_URL": "postgresql://x@127.0.0.1/y", "QC_REDIS_URL": "redis://127.0.0.1:6379/1",
            "QC_AMQP_URL": AMQP_URL, "QC_RASA_EVENTS_QUEUE": queue, "QC_DEAD_LETTER_EXCHANGE": dead, **extra}


def test_two_deployments_on_one_vhost_keep_their_conversation_events_apart(tmp_path, monkeypatch):
    require_services()
    from rasa.core.brokers.broker import EventBroker
    from rasa.core.utils import read_endpoints_from_path

    from bot.ops.production import endpoints_yaml, rasa_env

    tag = uuid.uuid4().hex[:10]
    dead = f"qc.test.dead.{tag}"
    queue_a, queue_b, exchange_b = f"qc_test_dep_a_{tag}", f"qc_test_dep_b_{tag}", f"qc.test.rasa.b.{tag}"
    env_a = _env(queue_a, dead)  # the default: derived from the queue name
    env_b = _env(queue_b, dead, QC_RASA_EXCHANGE=exchange_b)
    for name, value in rasa_env(env_a).items():  # the password the endpoints file refers to
        monkeypatch.setenv(name, value)
    configs = []
    for name, env in (("a", env_a), ("b", env_b)):
        path = tmp_path / f"endpoints-{name}.yml"
        path.write_text(endpoints_yaml("http://127.0.0.1:1/webhook", env), encoding="utf-8")
        configs.append(read_endpoints_from_path(str(path)).event_broker)
    exchanges = [cfg.kwargs.get("exchange_name") for cfg in configs]
    # before anything is published (so a failure never reaches the shared exchange)
    assert exchanges == [f"{queue_a}.exchange", exchange_b]

    async def go():
        conn = await aio_pika.connect(AMQP_URL, timeout=5)
        async with conn:
            ch = await conn.channel()
            brokers = [await EventBroker.create(cfg) for cfg in configs]
            try:
                brokers[0].publish({"sender_id": "resident-a", "event": "user", "text": "A 的投诉"})
                brokers[1].publish({"sender_id": "resident-b", "event": "user", "text": "B 的投诉"})
                for _ in range(100):  # publishing is asynchronous: wait until both arrived
                    await asyncio.sleep(0.05)
                    counts = [(await ch.declare_queue(q, passive=True)).declaration_result.message_count
                              for q in (queue_a, queue_b)]
                    if sum(counts) >= 2:
                        break
                await asyncio.sleep(0.5)  # a stray copy would have arrived by now
            finally:
                for b in brokers:
                    await b.close()
            got = {}
            for q in (queue_a, queue_b):
                qq = await ch.declare_queue(q, passive=True)
                got[q] = []
                while (msg := await qq.get(no_ack=True, fail=False, timeout=2)) is not None:
                    got[q].append(json.loads(msg.body)["sender_id"])
            for q in (queue_a, queue_b):
                await ch.queue_delete(q)
            for ex in (*exchanges, dead):
                await ch.exchange_delete(ex)
            return got

    got = asyncio.run(go())
    assert got == {queue_a: ["resident-a"], queue_b: ["resident-b"]}

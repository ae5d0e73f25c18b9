"""The production cluster (bot/ops/cluster.py) on real PostgreSQL, Redis and RabbitMQ.

One cluster per test session: 2 Rasa servers, 2 action servers, the web server, nginx;
ticket store and tracker store in two fresh PostgreSQL schemas (dropped at the end), the
lock store under its own Redis key prefix, conversation events in their own RabbitMQ queue.
An unreachable service fails the tests loudly; QC_SKIP_SERVICES=1 skips them (counted in
the summary by tests/conftest.py).
"""
from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine

from tests.conftest import PG_BASE_URL, SKIP_SERVICES_REASON, _skip_services

REDIS_URL = os.environ.get("QC_TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
AMQP_URL = os.environ.get("QC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def require_services() -> None:
    """Fail (not skip) when a service the cluster needs does not answer."""
    if _skip_services():
        pytest.skip(SKIP_SERVICES_REASON)
    from urllib.parse import urlsplit

    import redis

    problems = []
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Redis at {REDIS_URL}: {type(exc).__name__}: {exc}")
    a = urlsplit(AMQP_URL)
    try:
        socket.create_connection((a.hostname, a.port or 5672), timeout=3).close()
    except OSError as exc:
        problems.append(f"RabbitMQ at {a.hostname}:{a.port or 5672}: {exc}")
    if problems:
        pytest.fail("services unreachable: " + "; ".join(problems)
                    + ". Start them, or set QC_SKIP_SERVICES=1 to skip these tests.", pytrace=False)


def _with_schema(schema: str) -> str:
    sep = "&" if "?" in PG_BASE_URL else "?"
    return f"{PG_BASE_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="session")
def production_env() -> Iterator[dict[str, str]]:
    """QC_PROFILE=production pointing at fresh schemas, a fresh lock prefix and queue."""
    require_services()
    admin = create_engine(PG_BASE_URL, future=True, connect_args={"connect_timeout": 5})
    tag = uuid.uuid4().hex[:10]
    tickets, tracker = f"qc_cl_tickets_{tag}", f"qc_cl_tracker_{tag}"
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{tickets}"')  # generated names, not input
            conn.exec_driver_sql(f'CREATE SCHEMA "{tracker}"')
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        pytest.fail(f"PostgreSQL unreachable at {PG_BASE_URL} ({type(exc).__name__}: {exc}); "
                    "set QC_SKIP_SERVICES=1 to skip these tests.", pytrace=False)
    env = {
        "QC_PROFILE": "production",
        "QC_DATABASE_URL": _with_schema(tickets),
        "QC_TRACKER_DB_URL": PG_BASE_URL.split("?")[0],
        "QC_TRACKER_DB_SCHEMA": tracker,
        "QC_REDIS_URL": REDIS_URL,
        "QC_LOCK_PREFIX": f"qctest{tag}",
        "QC_AMQP_URL": AMQP_URL,
        "QC_RASA_EVENTS_QUEUE": f"qc_test_rasa_events_{tag}",
        "QC_EVENTS_EXCHANGE": f"qc.test.events.{tag}",
        # every client here is 127.0.0.1 and Redis counts are shared by every run on this machine:
        # the per-client backstops are tested in tests/security, not here
        "QC_CLIENT_RATE_LIMIT": "1000000",
        "QC_LOGIN_CLIENT_LIMIT": "1000000",
        "QC_HANDOFF_HOURS": "00:00-23:59",  # 坐席 answer whatever the wall clock says (else 留言 at night)
    }
    # A city system subscribed before the first ticket: a queue bound to our exchange.
    env_queue = f"qc_test_ticket_events_{tag}"
    _amqp(_declare_subscriber(env["QC_EVENTS_EXCHANGE"], env_queue))
    try:
        yield {**env, "QC_TEST_SUBSCRIBER_QUEUE": env_queue}
    finally:
        _delete_queue(env_queue)
        _amqp(_delete_exchange(env["QC_EVENTS_EXCHANGE"]))
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{tickets}" CASCADE')
            conn.exec_driver_sql(f'DROP SCHEMA "{tracker}" CASCADE')
        admin.dispose()
        _delete_queue(env["QC_RASA_EVENTS_QUEUE"])


def _amqp(coro) -> None:
    import asyncio

    asyncio.run(coro)


async def _declare_subscriber(exchange: str, queue: str) -> None:
    import aio_pika

    conn = await aio_pika.connect(AMQP_URL, timeout=5)
    async with conn:
        ch = await conn.channel()
        ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        q = await ch.declare_queue(queue, durable=False, auto_delete=False)
        await q.bind(ex, "#")


async def _delete_exchange(exchange: str) -> None:
    import aio_pika

    try:
        conn = await aio_pika.connect(AMQP_URL, timeout=5)
        async with conn:
            await (await conn.channel()).exchange_delete(exchange)
    except Exception:  # noqa: BLE001 - cleanup only
        pass


async def read_queue(name: str, timeout: float = 2.0) -> list:
    """Every message waiting in a queue (consumed): (message_id, routing_key, body bytes)."""
    import aio_pika

    conn = await aio_pika.connect(AMQP_URL, timeout=5)
    got = []
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(name, passive=True)
        while (msg := await q.get(no_ack=True, fail=False, timeout=timeout)) is not None:
            got.append((msg.message_id, msg.routing_key, msg.body))
    return got


def _delete_queue(name: str) -> None:
    import asyncio

    import aio_pika

    async def go() -> None:
        conn = await aio_pika.connect(AMQP_URL, timeout=5)
        async with conn:
            await (await conn.channel()).queue_delete(name)

    try:
        asyncio.run(go())
    except Exception:  # noqa: BLE001 - cleanup only
        pass


@pytest.fixture(scope="session")
def cluster(production_env, tmp_path_factory):
    from bot.nlu.explain import latest_model
    from bot.ops.cluster import Cluster

    c = Cluster(env=production_env, work_dir=tmp_path_factory.mktemp("cluster"), instances=2,
                model=str(latest_model()))
    c.start()
    try:
        yield c
    finally:
        c.stop()

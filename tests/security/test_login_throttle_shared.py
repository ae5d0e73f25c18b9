"""The console's log-in throttle across web servers: with Redis, failures counted by one
server block the same (client, user name) on another, a success on either clears it, and
with Redis down each server still throttles on its own count."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import redis

from bot.console.throttle import LoginThrottle

pytestmark = pytest.mark.asyncio
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)
# Clients are fresh names: the real Redis keeps a client's count 15 minutes after its last
# failure, across tests and across runs on the same machine.


async def test_two_servers_count_together(redis_url: str) -> None:
    key = (f"client-{uuid.uuid4().hex[:8]}", f"grid-{uuid.uuid4().hex[:8]}")
    a, b = LoginThrottle(redis_url=redis_url), LoginThrottle(redis_url=redis_url)
    for server in (a, b, a, b):
        await server.failed(key, NOW)
    assert (await a.blocked(key, NOW), await b.blocked(key, NOW)) == (False, False)  # 4 of 5
    await b.failed(key, NOW)
    assert (await a.blocked(key, NOW), await b.blocked(key, NOW)) == (True, True)
    assert not await a.blocked((f"client-{uuid.uuid4().hex[:8]}", key[1]), NOW)  # another client is not
    stored = redis.Redis.from_url(redis_url)
    name = LoginThrottle.redis_name(key)
    assert int(stored.get(name)) == 5 and 0 < stored.ttl(name) <= 15 * 60
    assert key[1].encode() not in name.encode()  # no user name in Redis
    await a.succeeded(key)
    assert stored.get(name) is None
    assert (await a.blocked(key, NOW), await b.blocked(key, NOW)) == (False, False)


async def test_redis_down_each_server_counts_alone() -> None:
    key = ("203.0.113.7", "grid")
    down = LoginThrottle(redis_url="redis://127.0.0.1:1/0")
    for _ in range(4):
        await down.failed(key, NOW)
    assert not await down.blocked(key, NOW)
    await down.failed(key, NOW)
    assert await down.blocked(key, NOW)
    assert not await down.blocked(key, NOW + timedelta(minutes=15))  # the window passed


@pytest.mark.parametrize("shared", [True, False])
async def test_a_count_lasts_the_window_after_the_last_failure_with_or_without_redis(shared: bool, redis_url: str) -> None:
    """One rule in Redis and in this process: five failures four minutes apart block."""
    key = (f"client-{uuid.uuid4().hex[:8]}", f"grid-{uuid.uuid4().hex[:8]}")
    throttle = LoginThrottle(redis_url=redis_url if shared else "")
    for minutes in (0, 4, 8, 12, 16):
        assert not await throttle.blocked(key, NOW + timedelta(minutes=minutes))
        await throttle.failed(key, NOW + timedelta(minutes=minutes))
    assert await throttle.blocked(key, NOW + timedelta(minutes=16))
    if not shared:  # Redis keeps its own time (the TTL); this process's clock is the argument
        assert await throttle.blocked(key, NOW + timedelta(minutes=30))
        assert not await throttle.blocked(key, NOW + timedelta(minutes=31))

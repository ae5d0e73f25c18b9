"""Per-sender rate limits for the public endpoints (REST channel, Socket.IO widget channel,
widget photo upload). The WeChat channel keeps its own store-backed limit (wechat.py).

At most `limit` hits per key in each `window` seconds (fixed windows). With QC_REDIS_URL set,
the counters live in Redis (one INCR'd key per sender and window, expiring with it), so every
instance behind the proxy counts together; without it they live in this process's memory
(the embedded single-instance default). When Redis does not answer, this process's own
counters take over (logged) — a flood is still limited and nobody gets a 5xx. The same
counters (SharedCounters) count the console's failed log-ins (bot/console/throttle.py).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

REDIS_ENV = "QC_REDIS_URL"
LIMIT_ENV = "QC_RATE_LIMIT"  # messages per sender per minute (REST, Socket.IO); default 20 like WeChat
# messages per client address per minute (REST, Socket.IO), whatever the sender ids: a backstop
# against rotating ids, generous because many residents share one carrier-NAT address
CLIENT_LIMIT_ENV = "QC_CLIENT_RATE_LIMIT"
CLIENT_LIMIT_DEFAULT = 300
UPLOAD_LIMIT_ENV = "QC_UPLOAD_RATE_LIMIT"  # widget photo uploads per client address per minute; default 10
MSG_TOO_FAST = "您发送太频繁了，请稍后再试。"


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)
    if value < 1:
        raise ValueError(f"{name} must be a positive number, not {raw!r}")
    return value


class SharedRedis:
    """An asyncio Redis client for counters shared between instances: one client per event
    loop (a client belongs to the loop it was made in), half-second timeouts, and a warning
    at most once a minute while Redis does not answer (the caller then counts locally)."""

    def __init__(self, url: str, what: str) -> None:
        self.url, self.what = url, what
        self._redis: Any = None
        self._loop: Any = None
        self._warned_at = 0.0

    def client(self) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        if self._redis is None or self._loop is not loop:
            from redis import asyncio as aioredis

            self._redis = aioredis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._loop = loop
        return self._redis

    def down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning("%s: Redis unavailable (%s), counting in this process only", self.what, type(exc).__name__)
        self._redis = None


class SharedCounters:
    """Counters that expire, for the rate limits and the console's log-in throttle: one Redis
    scheme (`qc:<namespace>:<sha256 of the key>[:<window number>]`, INCR + EXPIRE, so no
    user name or address is stored in Redis) and one fallback. Every count is also kept in
    this process (bounded); with Redis the answer is the larger of the two, so a Redis that
    does not answer, or lost its data, still leaves this process limiting on its own count.

    Own code rather than the `limits` library: limits needs packaging>=21, which Rasa 3.6's
    pin (20.9) excludes, and it has no fall-back-to-local-when-Redis-is-down."""

    def __init__(self, namespace: str, redis_url: str = "", max_keys: int = 100_000, what: str = "") -> None:
        self.namespace, self.redis_url, self.max_keys = namespace, redis_url, max_keys
        self._local: dict[str, tuple[int, float]] = {}  # name → (count, expires at)
        self._redis = SharedRedis(redis_url, what or namespace)

    def name(self, key: str, window: int | None = None) -> str:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"qc:{self.namespace}:{digest}" + ("" if window is None else f":{window}")

    def _here(self, name: str, now: float) -> int:
        count, expires = self._local.get(name, (0, now))
        return count if now < expires else 0

    async def add(self, key: str, now: float, ttl: float, window: int | None = None) -> int:
        """Count one more for `key` (in `window` when given); it expires `ttl` seconds from now."""
        name = self.name(key, window)
        if name not in self._local and len(self._local) >= self.max_keys:
            # bounded memory: forget expired counts first, then the oldest half
            self._local = {k: v for k, v in self._local.items() if now < v[1]}
            if len(self._local) >= self.max_keys:
                self._local = dict(list(self._local.items())[self.max_keys // 2:])
        here = self._here(name, now) + 1
        self._local[name] = (here, now + ttl)
        if self.redis_url:
            try:
                pipe = self._redis.client().pipeline(transaction=True)
                pipe.incr(name)
                pipe.expire(name, int(ttl))
                shared, _ = await pipe.execute()
                return max(int(shared), here)
            except Exception as exc:  # noqa: BLE001 - Redis down: this process's count decides, say so now and then
                self._redis.down(exc)
        return here

    async def get(self, key: str, now: float, window: int | None = None) -> int:
        name = self.name(key, window)
        here = self._here(name, now)
        if self.redis_url:
            try:
                return max(int(await self._redis.client().get(name) or 0), here)
            except Exception as exc:  # noqa: BLE001
                self._redis.down(exc)
        return here

    async def clear(self, key: str, window: int | None = None) -> None:
        name = self.name(key, window)
        self._local.pop(name, None)
        if self.redis_url:
            try:
                await self._redis.client().delete(name)
            except Exception as exc:  # noqa: BLE001
                self._redis.down(exc)


class RateLimiter:
    """At most `limit` hits per key in each fixed window of `window` seconds."""

    def __init__(self, limit: int, window: float = 60.0, name: str = "rest", redis_url: str | None = None,
                 clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit ≥ 1 and window > 0")
        self.limit, self.window, self.name = limit, float(window), name
        self.redis_url = redis_url if redis_url is not None else (os.environ.get(REDIS_ENV) or "")
        self.clock = clock
        self.counters = SharedCounters(f"rate:{name}", self.redis_url, max_keys, f"rate limit {name}")

    @classmethod
    def from_env(cls, name: str, default_limit: int, env: str = LIMIT_ENV, window: float = 60.0) -> RateLimiter:
        return cls(env_int(env, default_limit), window, name)

    @property
    def shared(self) -> bool:
        return bool(self.redis_url)

    async def hit(self, key: str) -> bool:
        """Count one request of `key`; True when it is within the limit."""
        now = self.clock()
        # the key of a window outlives it by 5 s (clocks of instances differ a little)
        hits = await self.counters.add(key, now, self.window + 5, window=int(now // self.window))
        return hits <= self.limit


# One per-client counter for every chat channel of a process (REST and Socket.IO, README:
# "REST + Socket.IO messages per client address per minute"); with Redis the one key space
# "qc:rate:client:…" for every instance. Keyed by the settings so a changed environment
# (tests, a reload) gets a counter of its own.
_CLIENT_LIMITERS: dict[tuple[int, str], RateLimiter] = {}


def client_limiter() -> RateLimiter:
    limit, redis_url = env_int(CLIENT_LIMIT_ENV, CLIENT_LIMIT_DEFAULT), os.environ.get(REDIS_ENV) or ""
    found = _CLIENT_LIMITERS.get((limit, redis_url))
    if found is None:
        found = _CLIENT_LIMITERS[(limit, redis_url)] = RateLimiter(limit, 60.0, "client", redis_url)
    return found

"""Per-sender rate limits for the public endpoints (REST channel, Socket.IO widget channel,
widget photo upload). The WeChat channel keeps its own store-backed limit (wechat.py).

At most `limit` hits per key in each `window` seconds (fixed windows). With QC_REDIS_URL set,
the counters live in Redis (one INCR'd key per sender and window, expiring with it), so every
instance behind the proxy counts together; without it they live in this process's memory
(the embedded single-instance default). When Redis does not answer, this process's own
counters take over (logged) — a flood is still limited and nobody gets a 5xx.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

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


class RateLimiter:
    def __init__(self, limit: int, window: float = 60.0, name: str = "rest", redis_url: Optional[str] = None,
                 clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit ≥ 1 and window > 0")
        self.limit, self.window, self.name = limit, float(window), name
        self.redis_url = redis_url if redis_url is not None else (os.environ.get(REDIS_ENV) or "")
        self.clock = clock
        self.max_keys = max_keys
        self._counts: Dict[str, Tuple[int, int]] = {}  # key → (window number, hits)
        self._redis = SharedRedis(self.redis_url, f"rate limit {name}")

    @classmethod
    def from_env(cls, name: str, default_limit: int, env: str = LIMIT_ENV, window: float = 60.0) -> "RateLimiter":
        return cls(env_int(env, default_limit), window, name)

    @property
    def shared(self) -> bool:
        return bool(self.redis_url)

    def _bucket(self) -> int:
        return int(self.clock() // self.window)

    def _local(self, key: str, bucket: int) -> int:
        seen_bucket, hits = self._counts.get(key, (bucket, 0))
        hits = hits + 1 if seen_bucket == bucket else 1
        if key not in self._counts and len(self._counts) >= self.max_keys:
            # bounded memory: forget finished windows first, then the oldest half
            self._counts = {k: v for k, v in self._counts.items() if v[0] == bucket}
            if len(self._counts) >= self.max_keys:
                self._counts = dict(list(self._counts.items())[self.max_keys // 2:])
        self._counts[key] = (bucket, hits)
        return hits

    async def _shared(self, key: str, bucket: int) -> int:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        name = f"qc:rate:{self.name}:{digest}:{bucket}"
        pipe = self._redis.client().pipeline(transaction=True)
        pipe.incr(name)
        pipe.expire(name, int(self.window) + 5)
        hits, _ = await pipe.execute()
        return int(hits)

    async def hit(self, key: str) -> bool:
        """Count one request of `key`; True when it is within the limit."""
        bucket = self._bucket()
        if self.shared:
            try:
                return await self._shared(key, bucket) <= self.limit
            except Exception as exc:  # noqa: BLE001 - Redis down: limit locally, say so now and then
                self._redis.down(exc)
        return self._local(key, bucket) <= self.limit


# One per-client counter for every chat channel of a process (REST and Socket.IO, README:
# "REST + Socket.IO messages per client address per minute"); with Redis the one key space
# "qc:rate:client:…" for every instance. Keyed by the settings so a changed environment
# (tests, a reload) gets a counter of its own.
_CLIENT_LIMITERS: Dict[Tuple[int, str], "RateLimiter"] = {}


def client_limiter() -> "RateLimiter":
    limit, redis_url = env_int(CLIENT_LIMIT_ENV, CLIENT_LIMIT_DEFAULT), os.environ.get(REDIS_ENV) or ""
    found = _CLIENT_LIMITERS.get((limit, redis_url))
    if found is None:
        found = _CLIENT_LIMITERS[(limit, redis_url)] = RateLimiter(limit, 60.0, "client", redis_url)
    return found

"""At most `limit` failed log-ins per (client address, user name) in `window`: password
guessing is slowed to a crawl, and a legitimate user is locked out of nothing else. And at
most `client_limit` failed log-ins per client address in `window` over all user names
(QC_LOGIN_CLIENT_LIMIT, default 20): spraying one password over many names is slowed too.

With QC_REDIS_URL set the failures are counted in Redis (one key per client and name,
expiring `window` after the last failure), so every web server behind the proxy counts
together; without it, or while Redis does not answer, this process counts alone (logged).
"""
from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta

from bot.security.ratelimit import REDIS_ENV, SharedRedis, env_int

Key = tuple[str, str]
ANY_USER = "\x00any"  # the per-client count (no user name contains NUL: the form refuses it)
CLIENT_LIMIT_ENV = "QC_LOGIN_CLIENT_LIMIT"


class LoginThrottle:
    def __init__(self, limit: int = 5, window: timedelta = timedelta(minutes=15), max_keys: int = 10000,
                 redis_url: str | None = None, client_limit: int | None = None) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self.client_limit = client_limit if client_limit is not None else env_int(CLIENT_LIMIT_ENV, 20)
        self.failures: dict[Key, list[datetime]] = {}
        self.redis_url = redis_url if redis_url is not None else (os.environ.get(REDIS_ENV) or "")
        self._redis = SharedRedis(self.redis_url, "log-in throttle")

    # --- this process ---------------------------------------------------------------
    def _recent(self, key: Key, now: datetime) -> list[datetime]:
        recent = [t for t in self.failures.get(key, []) if now - t < self.window]
        if recent:
            self.failures[key] = recent
        else:
            self.failures.pop(key, None)
        return recent

    def _failed_here(self, key: Key, now: datetime) -> None:
        if len(self.failures) >= self.max_keys:
            for k in list(self.failures)[: self.max_keys // 2]:
                self._recent(k, now)
        self.failures.setdefault(key, []).append(now)

    # --- shared -----------------------------------------------------------------------
    @staticmethod
    def _name(key: Key) -> str:
        digest = hashlib.sha256("\x00".join(key).encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"qc:login-failures:{digest}"  # hashed: no user names or addresses in Redis

    # --- what the log-in handler calls ---------------------------------------------------
    def _limits(self, key: Key) -> list[tuple[Key, int]]:
        return [(key, self.limit), ((key[0], ANY_USER), self.client_limit)]

    async def blocked(self, key: Key, now: datetime) -> bool:
        for k, limit in self._limits(key):
            if await self._over(k, limit, now):
                return True
        return False

    async def _over(self, key: Key, limit: int, now: datetime) -> bool:
        if len(self._recent(key, now)) >= limit:
            return True
        if self.redis_url:
            try:
                count = await self._redis.client().get(self._name(key))
                return int(count or 0) >= limit
            except Exception as exc:  # noqa: BLE001 - Redis down: this process's count decides
                self._redis.down(exc)
        return False

    async def failed(self, key: Key, now: datetime) -> None:
        for k, _ in self._limits(key):
            self._failed_here(k, now)
        if self.redis_url:
            try:
                pipe = self._redis.client().pipeline(transaction=True)
                for k, _ in self._limits(key):
                    pipe.incr(self._name(k))
                    pipe.expire(self._name(k), int(self.window.total_seconds()))
                await pipe.execute()
            except Exception as exc:  # noqa: BLE001
                self._redis.down(exc)

    async def succeeded(self, key: Key) -> None:
        """The user's own count is cleared; the client's is not (one good password among many
        sprayed names must not reset the spray's count)."""
        self.failures.pop(key, None)
        if self.redis_url:
            try:
                await self._redis.client().delete(self._name(key))
            except Exception as exc:  # noqa: BLE001
                self._redis.down(exc)

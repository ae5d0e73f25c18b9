"""At most `limit` failed log-ins per (client address, user name) in `window`: password
guessing is slowed to a crawl, and a legitimate user is locked out of nothing else. And at
most `client_limit` failed log-ins per client address in `window` over all user names
(QC_LOGIN_CLIENT_LIMIT, default 20): spraying one password over many names is slowed too.

A count expires `window` after the last failure. With QC_REDIS_URL set the failures are
counted in Redis (one hashed key per client and name), so every web server behind the proxy
counts together; without it, or while Redis does not answer, this process counts alone
(logged). The counters are bot/security/ratelimit.py's SharedCounters, as for the rate limits.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from bot.security.ratelimit import REDIS_ENV, SharedCounters, env_int

Key = tuple[str, str]
ANY_USER = "\x00any"  # the per-client count (no user name contains NUL: the form refuses it)
CLIENT_LIMIT_ENV = "QC_LOGIN_CLIENT_LIMIT"


class LoginThrottle:
    def __init__(self, limit: int = 5, window: timedelta = timedelta(minutes=15), max_keys: int = 10000,
                 redis_url: str | None = None, client_limit: int | None = None) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self.client_limit = client_limit if client_limit is not None else env_int(CLIENT_LIMIT_ENV, 20)
        self.redis_url = redis_url if redis_url is not None else (os.environ.get(REDIS_ENV) or "")
        # the shared counters of bot/security/ratelimit.py: hashed keys, Redis or this process
        self.failures = SharedCounters("login-failures", self.redis_url, max_keys, "log-in throttle")

    @staticmethod
    def _key(key: Key) -> str:
        return "\x00".join(key)

    @classmethod
    def redis_name(cls, key: Key) -> str:
        """The Redis key of (client, user name): hashed, no user names or addresses in Redis."""
        return SharedCounters("login-failures").name(cls._key(key))

    def _limits(self, key: Key) -> list[tuple[Key, int]]:
        return [(key, self.limit), ((key[0], ANY_USER), self.client_limit)]

    # --- what the log-in handler calls ---------------------------------------------------
    async def blocked(self, key: Key, now: datetime) -> bool:
        for k, limit in self._limits(key):
            if await self.failures.get(self._key(k), now.timestamp()) >= limit:
                return True
        return False

    async def failed(self, key: Key, now: datetime) -> None:
        """Each failure counts; a count expires `window` after the last failure."""
        for k, _ in self._limits(key):
            await self.failures.add(self._key(k), now.timestamp(), self.window.total_seconds())

    async def succeeded(self, key: Key) -> None:
        """The user's own count is cleared; the client's is not (one good password among many
        sprayed names must not reset the spray's count)."""
        await self.failures.clear(self._key(key))

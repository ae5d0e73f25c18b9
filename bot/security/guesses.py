"""Slowing down guesses of a ticket's phone digits (ticket number + 尾号, actions/status.py).

Four digits are 10 000 guesses: at most `limit` wrong tries per sender, and at most
`ticket_limit` per ticket number over all senders (sender ids are cheap to change on the
REST and widget channels), each count expiring `window` after its last wrong try. The
counters are bot/security/ratelimit.py's SharedCounters: in Redis when QC_REDIS_URL is set
(every action server counts together), else in this process.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

from bot.security.ratelimit import REDIS_ENV, SharedCounters, env_int

LIMIT_ENV = "QC_STATUS_GUESS_LIMIT"  # wrong tries per sender (default 5)
TICKET_LIMIT_ENV = "QC_STATUS_GUESS_TICKET_LIMIT"  # wrong tries per ticket number (default 20)


class GuessThrottle:
    def __init__(self, limit: int = 5, ticket_limit: int = 20, window: float = 15 * 60,
                 redis_url: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.limit, self.ticket_limit, self.window, self.clock = limit, ticket_limit, float(window), clock
        url = redis_url if redis_url is not None else (os.environ.get(REDIS_ENV) or "")
        self.counters = SharedCounters("status-guesses", url, what="ticket status guesses")

    @classmethod
    def from_env(cls) -> GuessThrottle:
        return cls(env_int(LIMIT_ENV, 5), env_int(TICKET_LIMIT_ENV, 20))

    def _limits(self, sender: str, number: str) -> list[tuple[str, int]]:
        return [("sender\x00" + sender, self.limit), ("ticket\x00" + number, self.ticket_limit)]

    async def blocked(self, sender: str, number: str) -> bool:
        now = self.clock()
        for key, limit in self._limits(sender, number):
            if await self.counters.get(key, now) >= limit:
                return True
        return False

    async def failed(self, sender: str, number: str) -> None:
        now = self.clock()
        for key, _ in self._limits(sender, number):
            await self.counters.add(key, now, self.window)

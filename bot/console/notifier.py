"""The background worker started with the web app: turns new ticket events into outbox
messages, flags overdue tickets (督办), and drains the outbox with retries and backoff.

A message is never lost: it is written in the same transaction as the event cursor,
leased (not deleted) while it is being sent, and only marked `sent` after the channel
accepted it. A failed attempt keeps it visible (status `failed`, attempts, last error)
and schedules the next try: 5 s, 10 s, 20 s … capped at 30 min, for as long as it takes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import aiohttp

from bot.console import services
from bot.console.repository import OutboxMessage
from bot.console.uow import ConsoleUnitOfWork

log = logging.getLogger(__name__)
T = TypeVar("T")

# The assistant's intent for pushed ticket news (domain.yml, data/rules/followup.yml).
EXTERNAL_INTENT = "EXTERNAL_ticket_update"


class DeliveryError(Exception):
    pass


class Channel(Protocol):
    async def deliver(self, message: OutboxMessage) -> None: ...


class ConsoleChannel:
    """Worker notices: the console shows them from the outbox itself (badge + list)."""

    async def deliver(self, message: OutboxMessage) -> None:
        return None


class RasaChannel:
    """Resident notices through the Rasa server's HTTP API (needs --enable-api + token)."""

    def __init__(self, base_url: str, token: str | None, session: aiohttp.ClientSession, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def deliver(self, message: OutboxMessage) -> None:
        url = f"{self.base_url}/conversations/{quote(message.recipient, safe='')}/trigger_intent"
        params = {"output_channel": "latest"}
        if self.token:
            params["token"] = self.token
        entities = {k: v for k, v in message.payload.items() if v not in (None, "")}
        body = {"name": EXTERNAL_INTENT, "entities": entities}
        try:
            async with self.session.post(url, params=params, json=body, timeout=self.timeout) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:300]
                    raise DeliveryError(f"Rasa answered HTTP {resp.status}: {text}")
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"Rasa unreachable at {self.base_url}: {type(exc).__name__}: {exc}") from exc
        except asyncio.TimeoutError as exc:
            raise DeliveryError(f"Rasa did not answer within {self.timeout.total:.0f} s") from exc


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """asyncio.to_thread that, when cancelled, still waits for the thread: a cancelled
    caller (shutdown) never leaves a database write running behind its back."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.gather(future, return_exceptions=True)
        raise


def backoff(attempts: int, base: float = 5.0, cap: float = 1800.0) -> timedelta:
    """Delay before the next try after `attempts` failed tries (1 → base)."""
    return timedelta(seconds=min(cap, base * (2 ** max(0, attempts - 1))))


@dataclass
class DrainResult:
    sent: int = 0
    failed: int = 0


async def drain_once(
    uow_factory: Callable[[], ConsoleUnitOfWork],
    channels: Mapping[str, Channel],
    now: datetime | None = None,
    batch: int = 50,
    lease: timedelta = timedelta(minutes=2),
    base_delay: float = 5.0,
    stopping: Callable[[], bool] = lambda: False,
) -> DrainResult:
    """Send what is due. When `stopping()` turns true, the message in flight is finished
    and recorded, the rest of the batch is handed back (due now) for the next sender."""
    now = now or datetime.now(timezone.utc)

    def claim() -> list[OutboxMessage]:
        uow = uow_factory()
        with uow:
            found = uow.console.claim_due(now, now + lease, batch)
            uow.commit()
            return found

    def release(ids: list[int]) -> None:
        uow = uow_factory()
        with uow:
            for message_id in ids:
                uow.console.retry_now(message_id, now)
            uow.commit()

    messages = await in_thread(claim)
    result = DrainResult()
    for index, message in enumerate(messages):
        if stopping():
            await in_thread(release, [m.id for m in messages[index:]])
            break
        channel = channels.get(message.channel)
        error: str | None = None
        if channel is None:
            error = f"no channel {message.channel!r} configured"
        else:
            try:
                await channel.deliver(message)
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a bug in one channel must not stop the others
                log.exception("delivering outbox message %s failed", message.id)
                error = f"{type(exc).__name__}: {exc}"
        done_at = datetime.now(timezone.utc) if now is None else now

        def record(message: OutboxMessage = message, error: str | None = error) -> None:
            uow = uow_factory()
            with uow:
                if error is None:
                    uow.console.mark_sent(message.id, done_at)
                else:
                    delay = backoff(message.attempts + 1, base_delay)
                    uow.console.mark_failed(message.id, error, done_at + delay)
                uow.commit()

        await in_thread(record)
        if error is None:
            result.sent += 1
        else:
            result.failed += 1
            log.warning("outbox %s to %s:%s failed (attempt %s): %s", message.id, message.channel,
                        message.recipient, message.attempts + 1, error)
    return result


class Notifier:
    """The loop: feed → outbox, overdue sweep, drain; one step failing never stops it."""

    def __init__(
        self,
        uow_factory: Callable[[], ConsoleUnitOfWork],
        channels: Mapping[str, Channel],
        interval: float = 2.0,
        sweep_every: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        publisher: Any = None,
    ) -> None:
        self.uow_factory = uow_factory
        # Production profile: ticket + notification events to RabbitMQ (bot/services/events.py).
        self.publisher = publisher
        self.channels = channels
        self.interval = interval
        self.sweep_every = sweep_every
        self.clock = clock
        self.wake = asyncio.Event()
        self._stopping = False
        self._last_sweep: float = 0.0

    async def step(self) -> None:
        now = self.clock()
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_sweep >= self.sweep_every:
            self._last_sweep = loop.time()
            await in_thread(services.sweep_overdue, self.uow_factory(), now)
        await in_thread(services.process_feed, self.uow_factory(), now)
        await drain_once(self.uow_factory, self.channels, stopping=lambda: self._stopping)
        if self.publisher is not None:
            try:
                await self.publisher.publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - RabbitMQ down: the rows wait, next round retries
                log.warning("event publishing to RabbitMQ failed, will retry: %s: %s", type(exc).__name__, exc)

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("notifier step failed")
            try:
                await asyncio.wait_for(self.wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()

    async def stop(self, task: asyncio.Task, grace: float = 12.0) -> None:
        """Stop the loop `task` runs: the step in flight finishes (a message the channel
        accepted is recorded as sent, not sent again after a restart); cancelled only if
        it takes longer than `grace` (RasaChannel's own timeout is 10 s; stop_stack waits 15 s)."""
        self._stopping = True
        self.wake.set()
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            log.warning("notifier still busy after %.0f s at shutdown: cancelled", grace)
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def channels_for(rasa_url: str, token: str | None, session: aiohttp.ClientSession) -> dict[str, Any]:
    return {"console": ConsoleChannel(), "rasa": RasaChannel(rasa_url, token, session)}

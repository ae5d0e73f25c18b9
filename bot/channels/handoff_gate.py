"""Where the chat channels meet the hand-off to a person (bot/services/handoff.py).

Every resident message on REST and Socket.IO passes `on_message` before Rasa sees it: while
a hand-off holds the conversation (waiting, taken, or 留言 offered) the message is stored
for the agent, in order, and the assistant is not called. The state is a row in the ticket
store, read on every message, so it survives restarts and every Rasa server of a cluster
reads the same answer (no per-process cache, no tracker pause to keep in step).

What an agent (or the hand-off itself) says to the resident waits in handoff_messages and is
picked up exactly once: with the reply to the resident's next message, by a REST poll
(GET /webhooks/rest/messages), and pushed to an open widget session (`Pusher`).

When the store cannot be reached the message goes to the assistant (logged): a resident is
never left without an answer because the hand-off table is down.

The channels check before Rasa takes the conversation's lock (a held conversation never waits
for it), and `install()` checks again inside the lock: a message sent while 我要找人工客服 was
still being answered (on another Rasa server, say) passed the first check before the hand-off
existed, and would otherwise be answered by the assistant once the lock came free.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from bot.ops import runtime
from bot.services import handoff
from bot.storage.handoff import HandoffRepository
from bot.text import mask_personal_data

log = logging.getLogger(__name__)
PUSH_INTERVAL_ENV = "QC_HANDOFF_PUSH_INTERVAL"  # seconds between widget pushes (default 1)
PASS = handoff.Gate(False, [])


GATE_KEY = "qc_handoff_gate"  # metadata: the resident's words for the check inside the lock
_INSTALLED_FLAG = "_qc_handoff_gate"


def gated(metadata: dict | None, text: str) -> dict:
    """Metadata asking Agent.handle_message (as installed) to check the hand-off again under the
    lock; the key is removed before Rasa reads the message (never stored in the tracker)."""
    return {**(metadata or {}), GATE_KEY: {"text": text, "had_metadata": metadata is not None}}


def install() -> None:
    """Idempotent: Agent.handle_message checks the hand-off inside the conversation's lock for a
    message a channel marked with `gated` (Rasa 3.6's body: lock, then the processor)."""
    from rasa.core.agent import Agent

    if getattr(Agent.handle_message, _INSTALLED_FLAG, False):
        return
    original = Agent.handle_message

    async def handle_message(self, message):  # noqa: ANN001, ANN202 - Rasa's signature
        mark = message.metadata.pop(GATE_KEY, None) if isinstance(message.metadata, dict) else None
        if mark is None or not self.is_ready():
            return await original(self, message)
        if not mark["had_metadata"] and not message.metadata:
            message.metadata = None
        async with self.lock_store.lock(message.sender_id):
            gate = await on_message(message.sender_id, mark["text"])
            for reply in gate.replies:
                await message.output_channel.send_text_message(message.sender_id, reply)
            if gate.held:  # the hand-off opened while this message waited for the lock
                return None
            return await self.processor.handle_message(message)

    setattr(handle_message, _INSTALLED_FLAG, True)
    Agent.handle_message = handle_message


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def on_message(conversation: str, text: str) -> handoff.Gate:
    try:
        return await runtime.run_store(lambda: handoff.resident_message(
            runtime.uow(), conversation, text, _now(), handoff.hours_from_env()))
    except Exception:  # noqa: BLE001 - fail open: the assistant answers
        log.exception("hand-off check for %s failed: the assistant answers", mask_personal_data(conversation))
        return PASS


async def pickup(conversation: str) -> list[str]:
    return await runtime.run_store(lambda: handoff.pickup(runtime.uow(), conversation, _now(),
                                                          handoff.hours_from_env()))


def _waiting_for(conversations: list[str]) -> list[str]:
    with runtime.uow() as uow:
        return HandoffRepository(uow.connection()).senders_with_undelivered(conversations)


class Pusher:
    """Pushes waiting messages to the widget sessions open on this process, in real time
    (every PUSH_INTERVAL seconds): a message is claimed before it is sent, so a session open
    on two processes still gets it once."""

    def __init__(self, send: Callable[[str, str], Awaitable[None]]) -> None:
        self.send = send
        self.sessions: dict[str, int] = {}  # conversation → open sockets on this process
        self.interval = float(os.environ.get(PUSH_INTERVAL_ENV) or 1)
        self.task: asyncio.Task | None = None

    def opened(self, conversation: str) -> None:
        self.sessions[conversation] = self.sessions.get(conversation, 0) + 1
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run(), name="handoff-pusher")

    def closed(self, conversation: str) -> None:
        left = self.sessions.get(conversation, 0) - 1
        if left > 0:
            self.sessions[conversation] = left
        else:
            self.sessions.pop(conversation, None)

    async def push_once(self) -> int:
        sent = 0
        waiting = await runtime.run_store(_waiting_for, sorted(self.sessions))
        for conversation in waiting:
            for text in await pickup(conversation):
                await self.send(conversation, text)
                sent += 1
        return sent

    async def run(self) -> None:
        while self.sessions:  # ends with the last session; the next one starts it again
            try:
                await self.push_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("hand-off push failed")
            await asyncio.sleep(self.interval)

"""When the action server is down, the resident is told so and what they typed is kept.

Rasa 3.6 logs a failed custom-action call and goes on without it: REST answered `200 []`,
the widget showed nothing, WeChat `success` and nothing, and a phone number typed then was
lost (its validation, a custom action, never ran). Installed in every Rasa server (our
channels import this module):

- RemoteAction: an action server that cannot be reached (connection refused or dropped,
  a proxy's 502/503/504, a time-out) raises ActionServerUnavailable — a BaseException, so
  that Rasa's `except Exception` does not swallow it: the turn stops and nothing of it is
  saved.
- MessageProcessor.handle_message: the message of such a turn is kept in the tracker as
  a "pending" user event (UserUttered with metadata qc_pending, then UserUtteranceReverted
  and action_listen, which that revert takes back too: the dialogue state does not change),
  and the channel answers
  MSG_KEPT. The sender's next message first replays the pending ones, in order, through
  the same output channel (the resident hears their answers), then is handled itself
  (a resend of the last kept message is handled once). The tracker store keeps a kept
  message as typed (the one exception to masking at rest: a phone number in it is what the
  form waits for); its replay is stored masked, as every message.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from bot.rasa_ext.masked_events import PENDING_KEY, masked_text

log = logging.getLogger(__name__)

REPLAYED_KEY = "qc_replayed"
_INSTALLED_FLAG = "_qc_actions_down"


class ActionServerUnavailable(BaseException):
    """No action server answered: fail the turn (nothing saved), keep the message."""


def _unreachable(exc: BaseException) -> bool:
    from rasa.utils.endpoints import ClientResponseError  # Rasa's own, raised for an HTTP error status

    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, (aiohttp.ClientConnectionError, asyncio.TimeoutError)):
            return True
        if isinstance(e, (aiohttp.ClientResponseError, ClientResponseError)) and e.status in (502, 503, 504):
            return True
    return False


def pending_messages(events: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """The trailing pending messages of a conversation (oldest first): (text, metadata)."""
    from rasa.shared.core.events import ActionExecuted, UserUtteranceReverted, UserUttered

    found = []
    i = len(events)
    while i >= 3 and isinstance(events[i - 1], ActionExecuted) and isinstance(events[i - 2], UserUtteranceReverted) \
            and isinstance(events[i - 3], UserUttered) and (events[i - 3].metadata or {}).get(PENDING_KEY):
        user = events[i - 3]
        found.append((user.text, {k: v for k, v in (user.metadata or {}).items() if k != PENDING_KEY}))
        i -= 3
    return list(reversed(found))


def install() -> None:
    from rasa.core.actions.action import RemoteAction
    from rasa.core.channels.channel import UserMessage
    from rasa.core.processor import MessageProcessor
    from rasa.shared.core.constants import ACTION_LISTEN_NAME
    from rasa.shared.core.events import ActionExecuted, UserUtteranceReverted, UserUttered

    if getattr(RemoteAction.run, _INSTALLED_FLAG, False):
        return
    remote_run = RemoteAction.run
    handle = MessageProcessor.handle_message

    async def run(self, *args, **kwargs):
        try:
            return await remote_run(self, *args, **kwargs)
        except Exception as exc:
            if _unreachable(exc):
                log.error("action server unreachable running %s: %s", self.name(), exc)
                raise ActionServerUnavailable(self.name()) from exc
            raise

    async def keep(processor: MessageProcessor, message: UserMessage) -> None:
        # a first message: its session starts now, as Rasa would have started it
        tracker = await processor.fetch_tracker_with_initial_session(message.sender_id, message.output_channel,
                                                                     message.metadata)
        tracker.update(UserUttered(message.text, metadata={**(message.metadata or {}), PENDING_KEY: True},
                                   input_channel=message.input_channel, message_id=message.message_id))
        tracker.update(UserUtteranceReverted())
        tracker.update(ActionExecuted(ACTION_LISTEN_NAME))
        await processor.save_tracker(tracker)

    async def handle_message(self, message: UserMessage):
        tracker = await self.tracker_store.retrieve(message.sender_id)
        pending = pending_messages(list(tracker.events) if tracker else [])
        # (stored masked: bot/rasa_ext/masked_events.py; compared masked)
        if pending and masked_text(pending[-1][0]) == masked_text(message.text):
            pending.pop()  # the resident sent it again themselves: handled once, now
        try:
            for text, metadata in pending:
                log.info("replaying a message kept while the action server was down")
                await handle(self, UserMessage(text, message.output_channel, message.sender_id,
                                               input_channel=message.input_channel,
                                               metadata={**metadata, REPLAYED_KEY: True}))
            return await handle(self, message)
        except ActionServerUnavailable:
            await keep(self, message)
            raise

    setattr(run, _INSTALLED_FLAG, True)
    RemoteAction.run = run
    MessageProcessor.handle_message = handle_message

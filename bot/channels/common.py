"""What the chat channels share: what a resident is told when a message cannot be handled
now, and admission (length, then the per-client and per-sender rate limits) for REST and
Socket.IO. No Rasa or Sanic imports: the cluster's nginx config embeds MSG_BUSY
(bot/ops/cluster.py)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.channels.payloads import resident_text
from bot.security.ratelimit import MSG_TOO_FAST, RateLimiter
from bot.text import clean_message, mask_personal_data

__all__ = ["EMPTY_MESSAGE", "MAX_MESSAGE_CHARS", "MSG_BUSY", "MSG_KEPT", "MSG_TOO_FAST", "MSG_TOO_LONG",
           "Refusal", "admit", "text_for_rasa"]

log = logging.getLogger(__name__)

# The bot or a store failed: the message was not handled, the resident is asked to resend.
MSG_BUSY = "系统暂时繁忙，您的消息没有处理成功，请稍后重发。"
# The action server is down: the message is kept and handled first thing next time (bot/rasa_ext/actions_down.py).
MSG_KEPT = "系统繁忙，您刚才的信息已记下，请稍后再试。"
MAX_MESSAGE_CHARS = 20000
MSG_TOO_LONG = f"内容过长（超过 {MAX_MESSAGE_CHARS} 字），请分几次发送。"
# Rasa strips whitespace and then drops the turn; a zero-width space survives and our
# NLU guard reads it as "empty", so the resident hears why nothing happened.
EMPTY_MESSAGE = "\u200b"


@dataclass(frozen=True)
class Refusal:
    """Why a message is not processed: the HTTP status and error code REST answers with, and
    what the resident reads."""
    status: int
    code: str
    message: str


TOO_LONG = Refusal(413, "message_too_long", MSG_TOO_LONG)
TOO_FAST = Refusal(429, "too_many_messages", MSG_TOO_FAST)


async def admit(channel: str, message: str, client: str, sender: str, client_limiter: RateLimiter,
                limiter: RateLimiter) -> Refusal | None:
    """None when the message may reach the bot. Checked in this order, and a refused message
    counts against no later limit: its length, its client address (however many senders it
    rotates through), its sender."""
    if len(message) > MAX_MESSAGE_CHARS:
        return TOO_LONG
    if not await client_limiter.hit(client):
        log.warning("%s: client %s over %d messages in %gs, not processed", channel, client,
                    client_limiter.limit, client_limiter.window)
        return TOO_FAST
    if not await limiter.hit(sender):
        log.warning("%s: %s over %d messages in %gs, not processed", channel, mask_personal_data(sender),
                    limiter.limit, limiter.window)
        return TOO_FAST
    return None


def text_for_rasa(message: str, conversation: str) -> str:
    """The text Rasa gets: NUL / lone surrogates cleaned (no store keeps them), /intent{…}
    only for our own buttons' payloads (bot/channels/payloads.py), empty as EMPTY_MESSAGE."""
    message = resident_text(clean_message(message), conversation)
    return message if message.strip() else EMPTY_MESSAGE

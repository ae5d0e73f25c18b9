"""转人工 on WeChat (bot/services/handoff.py, docs/handoff.md): the gate on incoming messages,
the agent's messages pushed through the customer-service API, and the
`transfer_customer_service` option.

- **Gate**: every turn for the bot (text, voice, location, photo, a QR scan) first asks the
  hand-off table; while a person holds the conversation the message is kept for the agent
  (a photo as its reference) and the assistant is not called. What waited for the resident
  goes out with the answer (the passive reply), before the assistant's own words.
- **Push**: what an agent writes is sent as a customer-service message within the 48-hour
  window of the resident's last message, claimed before it is sent (one sender across
  workers and Rasa servers), in order. Outside the window — or when WeChat refuses — the
  message is not sent, not dropped: it gets a delivery note the agent reads in the console
  and goes out with the reply to the resident's next message (which reopens the window).
  Never a template message: those are for ticket news, not a chat.
- **transfer_customer_service** (`handoff: transfer_customer_service` in credentials.yml):
  the city staffs the Official Account's own 客服 system, so a hand-off the assistant opened
  in this turn is closed in our queue (event note "转微信客服") and the passive reply is
  WeChat's transfer_customer_service message; WeChat then routes the resident to its 客服.
  The transfer exists only as a passive reply: an answer later than the 5 seconds keeps the
  hand-off in our queue and sends the assistant's words.

When the hand-off table cannot be read the assistant answers (logged), as on REST.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from bot.channels.wechat.api import OUT_OF_WINDOW, WeChatApiError
from bot.channels.wechat.checks import OPENID, mask
from bot.channels.wechat.config import CHANNEL_NAME, WeChatConfig
from bot.channels.wechat.replies import chunks
from bot.channels.wechat.store import WeChatStore
from bot.services import handoff
from bot.storage.uow import SqlAlchemyUnitOfWork

log = logging.getLogger(__name__)

QUEUE, TRANSFER = "queue", "transfer_customer_service"
MODES = (QUEUE, TRANSFER)
TRANSFER_NOTE = "转微信客服"
RETRIES = 3  # API failures (not the window) tried again at the next beats before the agent is told
LATER = "居民再发消息时会随回复一并送达。"
WINDOW_CLOSED = "未送达：居民超过48小时没有发消息，微信客服消息窗口已关闭。" + LATER


def failure_note(exc: WeChatApiError) -> str:
    if exc.errcode == 45015:
        return WINDOW_CLOSED
    if exc.errcode == 45047:
        return "未送达：本次窗口内发给居民的客服消息已达微信的条数上限（45047）。" + LATER
    return f"未送达：微信接口返回 {exc.errcode} {exc.errmsg}。" + LATER


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _uow(store: WeChatStore) -> SqlAlchemyUnitOfWork:
    return SqlAlchemyUnitOfWork(store.engine)  # the channel's database is the ticket store


# --- store calls, in a worker thread through the gateway's InThread ---------------------------

def gate(store: WeChatStore, openid: str, text: str) -> handoff.Gate:
    return handoff.resident_message(_uow(store), openid, text, _now(), handoff.hours_from_env())


def transferred(store: WeChatStore, openid: str) -> bool:
    return handoff.transferred(_uow(store), openid, TRANSFER_NOTE, _now())


def outgoing(store: WeChatStore) -> list[handoff.Outgoing]:
    return handoff.outgoing_on(_uow(store), CHANNEL_NAME)


def claim(store: WeChatStore, message_id: int) -> bool:
    return handoff.claim(_uow(store), message_id, _now())


def hold_back(store: WeChatStore, openid: str, message_id: int, note: str | None) -> int:
    return handoff.not_delivered(_uow(store), openid, message_id, note)


def for_agent(msg_type: str, fields: dict[str, str], turn_text: str, photo: str | None) -> str:
    """What the agent reads for a WeChat message (not the payload the bot would get)."""
    if msg_type == "text":
        return fields.get("Content", "")
    if msg_type == "voice":
        return f"（语音）{fields.get('Recognition', '')}"
    if msg_type == "image":
        return f"（照片）{photo or ''}"
    if msg_type == "event":
        return f"（{(fields.get('Event') or '').lower()} {fields.get('EventKey') or ''}）".replace(" ）", "）")
    return turn_text  # location: its label


class Pusher:
    """Sends the agents' messages to WeChat residents, every `interval` seconds while the
    server runs (started and stopped with the recovery sweep)."""

    def __init__(self, config: WeChatConfig, db: Any, api: Callable[[], Any], clock: Callable[[], float]) -> None:
        self.config = config
        self.db = db
        self.api = api
        self.clock = clock
        self.failures: dict[int, int] = defaultdict(int)  # message id → failed sends on this process

    async def window_open(self, openid: str) -> bool:
        resident = await self.db(WeChatStore.resident, openid)
        last = (resident or {}).get("last_inbound_at")
        return last is not None and self.clock() - last.timestamp() < self.config.cs_window_hours * 3600 - 60

    async def push_once(self) -> int:
        sent = 0
        by_sender: dict[str, list[handoff.Outgoing]] = defaultdict(list)
        for m in await self.db(outgoing):
            by_sender[m.sender_id].append(m)
        for openid, messages in by_sender.items():
            if not OPENID.match(openid):
                continue
            if not await self.window_open(openid):
                await self.db(hold_back, openid, messages[0].id, WINDOW_CLOSED)
                log.info("wechat: hand-off message for %s held back: the 48-hour window is closed", mask(openid))
                continue
            for m in messages:
                if not await self.db(claim, m.id):
                    continue  # another worker sends it
                try:
                    for piece in chunks(m.text):
                        await self.api().send_custom_text(openid, piece)
                except WeChatApiError as exc:
                    await self._failed(openid, m, exc)
                    break  # the later ones wait: in order or not at all
                self.failures.pop(m.id, None)
                sent += 1
        return sent

    async def _failed(self, openid: str, m: handoff.Outgoing, exc: WeChatApiError) -> None:
        self.failures[m.id] += 1
        if exc.errcode in OUT_OF_WINDOW or self.failures[m.id] >= RETRIES:
            self.failures.pop(m.id, None)
            await self.db(hold_back, openid, m.id, failure_note(exc))
        else:  # un-claimed, no note: the next beat tries again
            await self.db(hold_back, openid, m.id, None)
        log.warning("wechat: hand-off message to %s not sent: %s", mask(openid), exc)

    async def run(self) -> None:
        failing = False
        while True:
            try:
                await self.push_once()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                if not failing:
                    log.exception("wechat: hand-off push failed")
                else:
                    log.warning("wechat: hand-off push failed again: %s", type(exc).__name__)
                failing = True
            await asyncio.sleep(self.config.handoff_push_interval)

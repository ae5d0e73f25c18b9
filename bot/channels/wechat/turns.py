"""What the bot hears: a WeChat message (text, voice, location, image, event) becomes a
turn for Rasa, or a direct reply when there is nothing for the bot; then the bot's answer."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

from bot.channels.common import MSG_BUSY, MSG_KEPT
from bot.channels.wechat import handoff as wh
from bot.channels.wechat import store as st
from bot.channels.wechat.api import WeChatApi, WeChatApiError
from bot.channels.wechat.checks import COMMUNITY, MEDIA_ID, Inbound
from bot.channels.wechat.config import CHANNEL_NAME, WeChatConfig
from bot.channels.wechat.replies import (
    MSG_PHOTO_FAILED,
    MSG_TEXT_ONLY,
    MSG_VOICE_UNCLEAR,
    chunks,
    payload,
    render,
    resident_text,
)
from bot.channels.wechat.store import InThread, WeChatStore, to_thread
from bot.rasa_ext.actions_down import ActionServerUnavailable
from bot.rasa_ext.trackerstore import TrackerStoreUnavailable
from bot.services import handoff
from bot.uploads import SNIFF_BYTES, PhotoUnreadable, save_photo, sniff_image

log = logging.getLogger(__name__)

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


@dataclass
class BotTurn:
    text: str
    metadata: dict[str, Any]


@dataclass
class WorkResult:
    chunks: list[str]
    failed: bool = False
    buttons: Any = st.KEEP  # the buttons the bot offered (None: none), or KEEP when it was not asked
    # the assistant answered under `handoff: transfer_customer_service`: if it opened a hand-off and
    # the answer is in time for the passive reply, the gateway transfers instead (wechat/handoff.py)
    transfer: bool = False


class Turns:
    def __init__(self, config: WeChatConfig, db: InThread, api: Callable[[], WeChatApi]):
        self.config = config
        self.db = db
        self.api = api  # created on first use (an image): starting Rasa touches no network

    async def work(self, inbound: Inbound, on_new_message: OnNewMessage) -> WorkResult:
        waiting: list[str] = []  # claimed for the resident by the gate: never lost on a failure
        try:
            turn = await self.prepare(inbound)
            if not isinstance(turn, BotTurn):
                return WorkResult(chunks(turn) if turn else [])
            gate = await self.gate(inbound, turn)
            waiting = chunks("\n\n".join(gate.replies))
            if gate.held:  # a person holds the conversation: kept for them, the assistant is silent
                return WorkResult(waiting)
            collector = CollectingOutputChannel()
            message = UserMessage(turn.text, collector, inbound.openid, input_channel=CHANNEL_NAME,
                                  metadata=turn.metadata)
            await asyncio.wait_for(on_new_message(message), timeout=self.config.bot_timeout)
            text, buttons = render(collector.messages)
            return WorkResult(waiting + chunks(text), buttons=buttons or None,
                              transfer=self.config.handoff == wh.TRANSFER)
        except ActionServerUnavailable:  # the message is kept and handled first thing next time
            log.error("wechat: %s kept: the action server is down", inbound.msg_key)
            return WorkResult(waiting + [MSG_KEPT], failed=True)
        except (Exception, TrackerStoreUnavailable):  # the bot or a store failed: the resident is asked to resend
            log.exception("wechat: %s failed", inbound.msg_key)
            return WorkResult(waiting + [MSG_BUSY], failed=True)

    async def gate(self, inbound: Inbound, turn: BotTurn) -> handoff.Gate:
        photo = (turn.metadata.get("wechat") or {}).get("photo")
        text = wh.for_agent(inbound.msg_type, inbound.fields, turn.text,
                            f"{self.config.public_url}/widget/photo/{photo['name']}" if photo else None)
        try:
            return await self.db(wh.gate, inbound.openid, text)
        except Exception:  # noqa: BLE001 - fail open: the assistant answers
            log.exception("wechat: hand-off check for %s failed: the assistant answers", inbound.msg_key)
            return handoff.Gate(False, [])

    async def prepare(self, inbound: Inbound) -> BotTurn | str | None:
        """A turn for the bot, a direct reply (str), or None (nothing to say)."""
        f = inbound.fields
        meta: dict[str, Any] = {"msg_type": inbound.msg_type, "create_time": f.get("CreateTime")}
        if f.get("MsgId"):
            meta["msg_id"] = f["MsgId"]
        kind = inbound.msg_type
        if kind == "event":
            return await self.event(inbound, meta)
        if kind not in ("text", "voice", "location", "image"):
            return MSG_TEXT_ONLY
        resident = await self.db(WeChatStore.resident, inbound.openid) or {}
        if resident.get("scene_community"):  # the community of the QR code they subscribed through
            meta["scene_community"] = resident["scene_community"]
        if kind == "text":
            return BotTurn(resident_text(resident, f.get("Content", "")), {"wechat": meta})
        if kind == "voice":
            recognition = (f.get("Recognition") or "").strip()
            if not recognition:
                return MSG_VOICE_UNCLEAR
            meta["voice"] = True
            return BotTurn(resident_text(resident, recognition), {"wechat": meta})
        if kind == "location":
            return location(f, meta)
        return await self.image(inbound, meta)

    async def image(self, inbound: Inbound, meta: dict[str, Any]) -> BotTurn | str:
        media_id = inbound.fields.get("MediaId", "")
        if not MEDIA_ID.match(media_id):
            return MSG_PHOTO_FAILED
        try:
            data = await self.api().get_media(media_id, self.config.max_image_bytes)
        except WeChatApiError as exc:
            log.warning("wechat: image %s not downloaded: %s", inbound.msg_key, exc)
            return MSG_PHOTO_FAILED
        ext = sniff_image(data[:SNIFF_BYTES])
        if ext is None:
            log.warning("wechat: media %s is not a JPEG/PNG/WebP image (%d bytes)", inbound.msg_key, len(data))
            return MSG_PHOTO_FAILED
        try:  # stored without GPS position, device or thumbnail (bot.uploads.save_photo)
            name = await to_thread(self.save_upload, data, ext)
        except PhotoUnreadable:
            log.warning("wechat: media %s could not be decoded (%d bytes)", inbound.msg_key, len(data))
            return MSG_PHOTO_FAILED
        ref = f"{self.config.public_url}/widget/photo/{name}"
        meta["photo"] = {"name": name, "bytes": len(data)}
        return BotTurn(payload("inform", {"photo": ref}), {"wechat": meta})

    def save_upload(self, data: bytes, ext: str) -> str:
        """Under var/uploads/ (never a web root) with a random name, like the widget's uploads."""
        return save_photo(data, ext, Path(self.config.upload_dir))

    async def event(self, inbound: Inbound, meta: dict[str, Any]) -> BotTurn | str | None:
        event = (inbound.fields.get("Event") or "").lower()
        key = (inbound.fields.get("EventKey") or "").strip()
        meta["event"] = event
        if event in ("subscribe", "scan"):
            code = key[len("qrscene_"):] if key.startswith("qrscene_") else (key if event == "scan" else "")
            if COMMUNITY.match(code):
                await self.db(WeChatStore.set_scene, inbound.openid, code)
                meta["scene_community"] = code
                return BotTurn(payload("inform", {"community": code}), {"wechat": meta})
            return BotTurn(payload("greet"), {"wechat": meta}) if event == "subscribe" else None
        if event == "click":
            return MSG_TEXT_ONLY
        return None  # unsubscribe, VIEW, LOCATION reports, template receipts: nothing to say


def location(f: dict[str, str], meta: dict[str, Any]) -> BotTurn | str:
    try:
        lat, lng = float(f.get("Location_X", "")), float(f.get("Location_Y", ""))
    except ValueError:
        return MSG_TEXT_ONLY
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return MSG_TEXT_ONLY
    label = (f.get("Label") or "").strip()
    meta["location"] = {"lat": lat, "lng": lng, "scale": f.get("Scale"), "label": label}
    return BotTurn(label or f"我的位置（纬度 {lat:.5f}，经度 {lng:.5f}）", {"wechat": meta})

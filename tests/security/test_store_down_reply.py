"""When the tracker store stays unreachable, bot/rasa_ext/trackerstore.py raises TrackerStoreUnavailable,
a BaseException so Rasa cannot fall back quietly. Our channels still answer the resident
politely: the REST channel with a 503 and a JSON error body, the widget's Socket.IO channel
with the busy message, and the next message (store back) is served normally."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest
import socketio
from rasa.core.channels.channel import UserMessage

from bot.channels.common import MSG_BUSY
from bot.channels.rest import RestInput
from bot.channels.socketio import SocketIOInput
from bot.rasa_ext.trackerstore import TrackerStoreUnavailable
from bot.security.ratelimit import RateLimiter
from tests.security.test_rate_limits import close, serve

pytestmark = pytest.mark.asyncio


class StoreDownOnce:
    """on_new_message whose first call finds the tracker store gone; later calls answer."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, message: UserMessage) -> None:
        self.calls.append(message.text)
        if len(self.calls) == 1:
            raise TrackerStoreUnavailable("tracker store unreachable (retrieve)")
        await message.output_channel.send_text_message(message.sender_id, f"收到：{message.text}")


async def test_rest_answers_503_when_the_tracker_store_is_down() -> None:
    bot = StoreDownOnce()
    channel = RestInput()
    channel.limiter = RateLimiter(100, 60, f"rest-{uuid.uuid4().hex}", redis_url="")
    server, base = await serve(channel, bot, "/webhooks/rest")
    try:
        async with aiohttp.ClientSession() as s:
            url = base + "/webhooks/rest/webhook"
            async with s.post(url, json={"sender": "r1", "message": "暖气不热"}) as r:
                first = (r.status, r.headers["Content-Type"], await r.json())
            async with s.post(url, json={"sender": "r1", "message": "暖气不热"}) as r:
                second = (r.status, await r.json())
    finally:
        await close(server)
    assert first == (503, "application/json", {"error": "unavailable", "message": MSG_BUSY})
    assert second == (200, [{"recipient_id": "r1", "text": "收到：暖气不热"}])
    assert bot.calls == ["暖气不热", "暖气不热"]


async def test_socketio_sends_the_busy_message_when_the_tracker_store_is_down() -> None:
    bot = StoreDownOnce()
    channel = SocketIOInput(user_message_evt="user_uttered", bot_message_evt="bot_uttered",
                            session_persistence=True)
    channel.limiter = RateLimiter(100, 60, f"sio-{uuid.uuid4().hex}", redis_url="")
    server, base = await serve(channel, bot, "/webhooks/socketio")
    client = socketio.AsyncClient()
    answers: list[Any] = []

    @client.on("bot_uttered")
    async def on_bot(data: Any) -> None:
        answers.append(data.get("text"))

    confirmed: list[str] = []
    client.on("session_confirm", lambda sid: confirmed.append(sid))
    try:
        await client.connect(base, socketio_path="/socket.io", transports=["polling"])
        await client.emit("session_request", {"session_id": uuid.uuid4().hex})
        await asyncio.sleep(0.3)  # the room is joined
        session = confirmed[0]  # the server issues it
        await client.emit("user_uttered", {"message": "井盖丢了", "session_id": session})
        for _ in range(50):
            if answers:
                break
            await asyncio.sleep(0.1)
        await client.emit("user_uttered", {"message": "井盖丢了", "session_id": session})
        for _ in range(50):
            if len(answers) >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 2)
        except asyncio.TimeoutError:
            pass
        await close(server)
    assert answers == [MSG_BUSY, "收到：井盖丢了"]
    assert bot.calls == ["井盖丢了", "井盖丢了"]

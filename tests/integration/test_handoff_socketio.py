"""转人工 on the widget's channel, on SQLite and PostgreSQL: the real Socket.IO blueprint and a
real python-socketio client. While a person holds the conversation the assistant hears
nothing; the agent's messages arrive on the resident's socket by themselves (no message of
the resident's needed), once and in order; after the hand-back the assistant answers again."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import socketio
from rasa.core.channels.channel import UserMessage
from sqlalchemy.engine import Engine

from bot.channels import handoff_gate
from bot.channels.socketio import SocketIOInput
from bot.domain.handoff import ASKED, HANDED_BACK_NOTICE
from bot.ops import runtime
from bot.security.ratelimit import RateLimiter
from bot.services import handoff
from bot.storage.handoff import HandoffRepository
from bot.storage.uow import SqlAlchemyUnitOfWork
from tests.security.test_rate_limits import close, serve

pytestmark = pytest.mark.asyncio
ASK = "我要找人工客服"


@pytest.fixture(autouse=True)
def store(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(handoff.HOURS_ENV, "00:00-23:59")
    monkeypatch.setenv(handoff_gate.PUSH_INTERVAL_ENV, "0.05")
    runtime.reset_engine(engine)  # the gate reads the hand-off table through the runtime's store
    yield
    runtime.reset_engine(None)


class Bot:
    """Rasa's stand-in: ASK opens a hand-off as action_human_handoff does; else "收到：…"."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.texts: list[str] = []

    async def __call__(self, message: UserMessage) -> None:
        self.texts.append(message.text)
        if message.text == ASK:
            _, notice = await asyncio.to_thread(
                handoff.request, SqlAlchemyUnitOfWork(self.engine), message.sender_id, message.input_channel,
                ASKED, datetime.now(timezone.utc), handoff.hours_from_env())
            await message.output_channel.send_text_message(message.sender_id, notice)
        else:
            await message.output_channel.send_text_message(message.sender_id, f"收到：{message.text}")


def kept(engine: Engine, handoff_id: Any) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(r.author, r.text) for r in HandoffRepository(conn).messages(handoff_id) if not r.outgoing]


async def until(predicate: Any, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_the_agents_words_arrive_on_the_socket_once_in_order_and_the_assistant_is_silent(engine: Engine) -> None:
    bot = Bot(engine)
    channel = SocketIOInput(user_message_evt="user_uttered", bot_message_evt="bot_uttered", session_persistence=True)
    channel.limiter = RateLimiter(100, 60, f"sio-{uuid.uuid4().hex}", redis_url="")
    server, base = await serve(channel, bot, "/webhooks/socketio")
    client = socketio.AsyncClient()
    heard: list[str] = []
    confirmed: list[str] = []
    client.on("bot_uttered", lambda data: heard.append(data.get("text")))
    client.on("session_confirm", lambda sid: confirmed.append(sid))
    uow = lambda: SqlAlchemyUnitOfWork(engine)  # noqa: E731
    try:
        await client.connect(base, socketio_path="/socket.io", transports=["polling"])
        await client.emit("session_request", {"session_id": uuid.uuid4().hex})
        assert await until(lambda: confirmed)
        session = confirmed[0]
        await client.emit("user_uttered", {"message": ASK, "session_id": session})
        assert await until(lambda: heard)
        assert heard == ["正在为您转接人工客服，请稍候。您前面还有 0 位居民在等待。人工服务时间：每天 00:00–23:59。"
                         "等待期间您发的消息会转给工作人员。"]
        with engine.connect() as conn:
            h = HandoffRepository(conn).open_for(session)
        assert h is not None and (h.channel, h.state.value) == ("socketio", "waiting")
        await client.emit("user_uttered", {"message": "暖气不热", "session_id": session})
        assert await until(lambda: kept(engine, h.id) == [("resident", "暖气不热")])

        now = datetime.now(timezone.utc)
        handoff.take(uow(), h.id, "user:agent1", "小王", now)
        for text in ("请问是哪个小区？", "楼号也告诉我一下", "好的，马上联系物业"):
            handoff.say(uow(), h.id, "user:agent1", text, now)
        expected = ["工作人员小王已接入，请问有什么可以帮您？", "请问是哪个小区？", "楼号也告诉我一下", "好的，马上联系物业"]
        assert await until(lambda: len(heard) >= 5)
        await asyncio.sleep(0.5)  # ten push beats: nothing comes twice
        assert heard[1:] == expected
        assert bot.texts == [ASK]  # held: the assistant heard nothing

        handoff.hand_back(uow(), h.id, "user:agent1", now)
        assert await until(lambda: len(heard) >= 6)
        await client.emit("user_uttered", {"message": "楼下有人遛狗不牵绳", "session_id": session})
        assert await until(lambda: len(heard) >= 7)
        await asyncio.sleep(0.3)
        assert heard[5:] == [HANDED_BACK_NOTICE, "收到：楼下有人遛狗不牵绳"]
        assert bot.texts == [ASK, "楼下有人遛狗不牵绳"]
        assert kept(engine, h.id) == [("resident", "暖气不热")]
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 2)
        except asyncio.TimeoutError:
            pass
        await close(server)
        if channel.pusher.task is not None:
            channel.pusher.task.cancel()
            await asyncio.gather(channel.pusher.task, return_exceptions=True)

"""Rate limits per sender hold under a flood: the REST channel, the Socket.IO widget channel
and the widget's photo upload (the WeChat channel's own limit: tests/wechat). One sender over
the limit is politely refused and nothing of theirs beyond the limit reaches the bot; other
senders are unaffected; with Redis the limit holds across two instances; Redis down → the
process's own counters still limit, nobody gets a 5xx."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import TestClient, TestServer
from rasa.core.channels.channel import UserMessage
from sanic import Sanic

from bot.channels.rest import RestInput
from bot.channels.socketio import SocketIOInput
from bot.security.ratelimit import MSG_TOO_FAST, RateLimiter
from bot.security.sessionid import new_session_id
from bot.web.widget import SESSION_HEADER, UPLOAD_HEADER, UPLOAD_LIMITER
from tests.console.test_console_web import png_bytes
from tests.security.conftest import make_app

pytestmark = pytest.mark.asyncio


def upload_form() -> aiohttp.FormData:
    """A photo as the file field "file": what a dict of bytes made, without aiohttp's deprecation
    (a stream instead would be sent chunked, which changes what an early 429 leaves on the connection)."""
    form = aiohttp.FormData()
    form.add_field("file", png_bytes(), filename="file")
    return form


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingBot:
    """Stands in for Rasa's on_new_message: records each message, answers "收到"."""

    def __init__(self) -> None:
        self.messages: list[UserMessage] = []

    async def __call__(self, message: UserMessage) -> None:
        self.messages.append(message)
        await message.output_channel.send_text_message(message.sender_id, f"收到：{message.text}")

    def by_sender(self) -> Counter:
        # the REST channel keys conversations "rest:<sender>" (bot/security/identity.py)
        return Counter(m.sender_id.removeprefix("rest:") for m in self.messages)


async def serve(channel: Any, bot: RecordingBot, prefix: str) -> tuple[Any, str]:
    Sanic.test_mode = True
    app = Sanic(f"rl_{uuid.uuid4().hex[:12]}")
    app.config.MOTD = False
    app.blueprint(channel.blueprint(bot), url_prefix=prefix)
    port = free_port()
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False)
    await server.startup()
    return server, f"http://127.0.0.1:{port}"


async def close(server: Any) -> None:
    server.close()
    try:  # open long-polls would hold wait_closed for the ping interval
        await asyncio.wait_for(server.wait_closed(), 2)
    except asyncio.TimeoutError:
        pass


async def flood_rest(urls: list[str], sender: str, n: int) -> list[tuple[int, Any]]:
    async with aiohttp.ClientSession() as s:
        async def one(i: int) -> tuple[int, Any]:
            url = urls[i % len(urls)] + "/webhooks/rest/webhook"
            async with s.post(url, json={"sender": sender, "message": f"消息{i}"}) as r:
                return r.status, await r.json()

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def test_rest_flood_one_sender_refused_others_unaffected() -> None:
    bot = RecordingBot()
    channel = RestInput(limiter=RateLimiter(5, 60, f"rest-{uuid.uuid4().hex}", redis_url=""))
    server, base = await serve(channel, bot, "/webhooks/rest")
    try:
        flood, calm = await asyncio.gather(flood_rest([base], "flooder", 40), flood_rest([base], "neighbour", 5))
    finally:
        await close(server)
    statuses = Counter(status for status, _ in flood)
    assert statuses == {200: 5, 429: 35}
    refused = [body for status, body in flood if status == 429]
    assert all(b == {"error": "too_many_messages", "message": MSG_TOO_FAST} for b in refused)
    assert [status for status, _ in calm] == [200] * 5
    assert bot.by_sender() == {"flooder": 5, "neighbour": 5}
    # nothing reached the bot twice
    assert len({m.text for m in bot.messages if m.sender_id == "rest:flooder"}) == 5


async def test_rest_limit_is_shared_across_two_instances_through_redis(redis_url: str) -> None:
    bot_a, bot_b = RecordingBot(), RecordingBot()
    name = f"rest-{uuid.uuid4().hex}"
    a = RestInput(limiter=RateLimiter(6, 60, name, redis_url=redis_url))
    b = RestInput(limiter=RateLimiter(6, 60, name, redis_url=redis_url))
    server_a, url_a = await serve(a, bot_a, "/webhooks/rest")
    server_b, url_b = await serve(b, bot_b, "/webhooks/rest")
    try:
        flood = await flood_rest([url_a, url_b], "flooder", 30)
        calm = await flood_rest([url_a, url_b], "neighbour", 6)
    finally:
        await close(server_a)
        await close(server_b)
    assert Counter(s for s, _ in flood) == {200: 6, 429: 24}
    assert [s for s, _ in calm] == [200] * 6
    both = bot_a.by_sender() + bot_b.by_sender()
    assert both == {"flooder": 6, "neighbour": 6}
    texts = [m.text for m in bot_a.messages + bot_b.messages if m.sender_id == "rest:flooder"]
    assert len(texts) == len(set(texts)) == 6


async def test_redis_down_still_limits_in_process() -> None:
    limiter = RateLimiter(3, 60, "down", redis_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert [await limiter.hit("x") for _ in range(5)] == [True, True, True, False, False]
    assert await limiter.hit("y") is True


async def test_a_redis_that_lost_its_counts_still_leaves_the_process_limiting(redis_url: str) -> None:
    import redis

    limiter = RateLimiter(3, 60, f"lost-{uuid.uuid4().hex}", redis_url=redis_url)
    assert [await limiter.hit("x") for _ in range(3)] == [True, True, True]
    stored = redis.Redis.from_url(redis_url)
    [name] = stored.keys(f"qc:rate:{limiter.name}:*")
    assert name.decode().startswith(f"qc:rate:{limiter.name}:") and b"x" not in name.split(b":")[-2]
    stored.delete(name)  # a Redis restart without persistence
    assert await limiter.hit("x") is False


async def test_windows_roll_over() -> None:
    now = [1000.0]
    limiter = RateLimiter(2, 60, "clock", redis_url="", clock=lambda: now[0])
    assert [await limiter.hit("s") for _ in range(3)] == [True, True, False]
    now[0] += 60
    assert await limiter.hit("s") is True


async def test_socketio_flood_one_session_refused_others_unaffected() -> None:
    bot = RecordingBot()
    channel = SocketIOInput(user_message_evt="user_uttered", bot_message_evt="bot_uttered",
                            session_persistence=True)
    channel.limiter = RateLimiter(4, 60, f"sio-{uuid.uuid4().hex}", redis_url="")
    server, base = await serve(channel, bot, "/webhooks/socketio")
    clients = []
    try:
        answers: dict[str, list[str]] = {}

        async def connect() -> tuple[socketio.AsyncClient, str]:
            client = socketio.AsyncClient()
            got: list[str] = []
            client.on("session_confirm", lambda sid: got.append(sid))
            await client.connect(base, socketio_path="/socket.io", transports=["polling"])
            await client.emit("session_request", {})
            clients.append(client)
            for _ in range(50):
                if got:
                    break
                await asyncio.sleep(0.05)
            session_id = got[0]  # the server issues it
            answers[session_id] = []

            @client.on("bot_uttered")
            async def on_bot(data: Any) -> None:
                answers[session_id].append(data.get("text"))

            return client, session_id

        (c1, flooder), (c2, neighbour) = await connect(), await connect()
        await asyncio.sleep(0.3)  # the rooms are joined
        for i in range(12):
            await c1.emit("user_uttered", {"message": f"刷屏{i}", "session_id": flooder})
        for i in range(3):
            await c2.emit("user_uttered", {"message": f"正常{i}", "session_id": neighbour})
        for _ in range(50):
            if len(answers[flooder]) >= 12 and len(answers[neighbour]) >= 3:
                break
            await asyncio.sleep(0.1)
    finally:
        for c in clients:
            try:
                await asyncio.wait_for(c.disconnect(), 2)
            except asyncio.TimeoutError:
                pass
        await close(server)
    assert bot.by_sender() == {flooder: 4, neighbour: 3}
    assert sorted(answers[flooder]) == sorted([f"收到：刷屏{i}" for i in range(4)] + [MSG_TOO_FAST] * 8)
    # each message is its own task on the server: their replies may cross (the flooder's are compared
    # the same way); what matters here is that none of the neighbour's is refused
    assert sorted(answers[neighbour]) == [f"收到：正常{i}" for i in range(3)]


async def test_widget_upload_flood_refused_per_client(engine: Any, tmp_path: Path, widget_config: Any) -> None:
    app = make_app(engine, tmp_path, widget_config)
    app[UPLOAD_LIMITER] = RateLimiter(3, 60, f"up-{uuid.uuid4().hex}", redis_url="")
    async with TestClient(TestServer(app)) as client:
        statuses = []
        for _ in range(8):
            r = await client.post("/widget/upload", data=upload_form(), headers={UPLOAD_HEADER: "1", SESSION_HEADER: new_session_id()})
            statuses.append(r.status)
            if r.status == 429:
                assert (await r.json()) == {"error": "too_many_uploads", "message": MSG_TOO_FAST}
    assert statuses == [201] * 3 + [429] * 5
    stored = sorted(p.name for p in widget_config.upload_dir.iterdir())
    assert len(stored) == 3  # refused uploads stored nothing


async def test_widget_upload_limit_behind_our_proxy_counts_each_client(engine: Any, tmp_path: Path,
                                                                        widget_config: Any) -> None:
    from dataclasses import replace

    from bot.web.widget import WIDGET

    async def uploads(trusted: tuple, forwarded: list) -> list:
        app = make_app(engine, tmp_path, replace(widget_config, trusted_proxies=trusted))
        app[UPLOAD_LIMITER] = RateLimiter(2, 60, f"up-{uuid.uuid4().hex}", redis_url="")
        assert app[WIDGET].trusted_proxies == trusted
        async with TestClient(TestServer(app)) as client:
            out = []
            for xff in forwarded:
                r = await client.post("/widget/upload", data=upload_form(),
                                      headers={UPLOAD_HEADER: "1", SESSION_HEADER: new_session_id(), "X-Forwarded-For": xff})
                out.append(r.status)
            return out

    # behind our proxy (127.0.0.1): each resident has their own limit; a forged first hop does not help
    assert await uploads(("127.0.0.1",), ["1.1.1.1", "2.2.2.2", "1.1.1.1", "9.9.9.9, 1.1.1.1", "2.2.2.2"]) == \
        [201, 201, 201, 429, 201]
    # not behind a proxy we trust: the header is the client's claim and is ignored
    assert await uploads((), ["1.1.1.1", "2.2.2.2", "3.3.3.3"]) == [201, 201, 429]

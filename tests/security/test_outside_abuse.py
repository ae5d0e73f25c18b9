"""Issue 13 items 13 and 14 (Socket.IO session ids), checked from outside over HTTP and
Socket.IO against running servers, as an attacker would:

- rotating REST sender ids or Socket.IO sessions does not get past the per-client backstop
  (QC_CLIENT_RATE_LIMIT), and behind our proxy each forwarded client has its own;
- spraying one password over many user names is slowed per client (QC_LOGIN_CLIENT_LIMIT),
  the right password included, while another client logs in;
- the Socket.IO server issues session ids: one the client made up is replaced, and a
  message sent under a made-up one reaches nobody's conversation."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import Engine

from bot.security.ratelimit import MSG_TOO_FAST
from tests.console.helpers import PASSWORD, csrf_of, make_users
from tests.security.conftest import make_app
from tests.security.test_rate_limits import RecordingBot, close, serve

pytestmark = pytest.mark.asyncio


async def rest(base: str, sender: str, message: str, headers: dict | None = None) -> int:
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/webhooks/rest/webhook", json={"sender": sender, "message": message},
                          headers=headers or {}) as r:
            return r.status


async def test_rest_rotating_sender_ids_meet_the_per_client_backstop(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.channels.rest import RestInput

    monkeypatch.setenv("QC_CLIENT_RATE_LIMIT", "10")
    monkeypatch.setenv("QC_TRUSTED_PROXIES", "127.0.0.1")
    monkeypatch.delenv("QC_REDIS_URL", raising=False)
    bot = RecordingBot()
    server, base = await serve(RestInput(), bot, "/webhooks/rest")
    try:
        # 30 fresh sender ids from one client (each far under its own per-sender limit)
        rotating = [await rest(base, f"bot-{uuid.uuid4().hex[:10]}", f"刷{i}", {"X-Forwarded-For": "203.0.113.7"})
                    for i in range(30)]
        # another resident behind the same proxy is unaffected
        other = [await rest(base, "neighbour", f"正常{i}", {"X-Forwarded-For": "198.51.100.2"}) for i in range(3)]
    finally:
        await close(server)
    assert rotating == [200] * 10 + [429] * 20
    assert other == [200] * 3
    assert len([m for m in bot.messages if m.text.startswith("刷")]) == 10


async def test_socketio_rotating_sessions_meet_the_per_client_backstop(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.channels.socketio import SocketIOInput

    monkeypatch.setenv("QC_CLIENT_RATE_LIMIT", "6")
    monkeypatch.delenv("QC_REDIS_URL", raising=False)
    bot = RecordingBot()
    channel = SocketIOInput(user_message_evt="user_uttered", bot_message_evt="bot_uttered", session_persistence=True)
    server, base = await serve(channel, bot, "/webhooks/socketio")
    clients: list[socketio.AsyncClient] = []
    answers: list[str] = []
    try:
        for i in range(4):  # a new connection and a new session each time, 3 messages each
            client = socketio.AsyncClient()
            confirmed: list[str] = []
            client.on("session_confirm", lambda sid, c=confirmed: c.append(sid))
            client.on("bot_uttered", lambda data: answers.append(data.get("text")))
            await client.connect(base, socketio_path="/socket.io", transports=["polling"])
            clients.append(client)
            await client.emit("session_request", {})
            for _ in range(50):
                if confirmed:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # the room is joined
            for j in range(3):
                await client.emit("user_uttered", {"message": f"刷{i}-{j}", "session_id": confirmed[0]})
                await asyncio.sleep(0.05)
        for _ in range(60):
            if len(answers) >= 12:
                break
            await asyncio.sleep(0.1)
    finally:
        for c in clients:
            try:
                await asyncio.wait_for(c.disconnect(), 2)
            except asyncio.TimeoutError:
                pass
        await close(server)
    assert len(bot.messages) == 6
    assert Counter(answers) == Counter({MSG_TOO_FAST: 6, **{f"收到：{m.text}": 1 for m in bot.messages}})


async def test_socketio_session_ids_are_issued_by_the_server() -> None:
    from bot.channels.socketio import SocketIOInput

    bot = RecordingBot()
    channel = SocketIOInput(user_message_evt="user_uttered", bot_message_evt="bot_uttered", session_persistence=True)
    server, base = await serve(channel, bot, "/webhooks/socketio")
    victim, attacker = socketio.AsyncClient(), socketio.AsyncClient()
    got: dict[str, list] = {"victim": [], "attacker": [], "victim_said": [], "attacker_heard": []}
    victim.on("session_confirm", lambda sid: got["victim"].append(sid))
    attacker.on("session_confirm", lambda sid: got["attacker"].append(sid))
    attacker.on("bot_uttered", lambda data: got["attacker_heard"].append(data.get("text")))
    chosen = "0123456789abcdef0123456789abcdef"  # the right shape, made up by the client
    try:
        await victim.connect(base, socketio_path="/socket.io", transports=["polling"])
        await attacker.connect(base, socketio_path="/socket.io", transports=["polling"])
        await victim.emit("session_request", {"session_id": chosen})
        for _ in range(50):
            if got["victim"]:
                break
            await asyncio.sleep(0.05)
        # the attacker guesses/chooses ids: both are replaced, and a message under one is dropped
        await attacker.emit("session_request", {"session_id": chosen})
        await asyncio.sleep(0.3)
        await attacker.emit("user_uttered", {"message": "没有解决", "session_id": chosen})
        await attacker.emit("user_uttered", {"message": "我的工单", "session_id": uuid.uuid4().hex})
        await asyncio.sleep(0.5)
        # the server's own id still works
        await victim.emit("user_uttered", {"message": "井盖丢了", "session_id": got["victim"][0]})
        for _ in range(50):
            if bot.messages:
                break
            await asyncio.sleep(0.1)
    finally:
        for c in (victim, attacker):
            try:
                await asyncio.wait_for(c.disconnect(), 2)
            except asyncio.TimeoutError:
                pass
        await close(server)
    assert len(got["victim"]) == 1 and got["victim"][0] != chosen
    assert len(got["attacker"]) == 1 and got["attacker"][0] not in (chosen, got["victim"][0])
    assert [(m.sender_id, m.text) for m in bot.messages] == [(got["victim"][0], "井盖丢了")]
    assert got["attacker_heard"] == []


async def _try_login(client: TestClient, username: str, password: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    page = await client.get("/console/login")
    token = csrf_of(await page.text())
    resp = await client.post("/console/login", data={"csrf": token, "username": username, "password": password},
                             allow_redirects=False, headers=headers)
    return resp.status


async def test_password_spraying_over_many_user_names_is_slowed(engine: Engine, tmp_path: Path,
                                                                 widget_config: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_LOGIN_CLIENT_LIMIT", "8")
    monkeypatch.delenv("QC_REDIS_URL", raising=False)
    make_users(engine, ("grid", "root"))
    async with TestClient(TestServer(make_app(engine, tmp_path, widget_config))) as client:
        # one guess per name: each name stays far under its own limit of 5
        sprayed = [await _try_login(client, f"user{i}", "Spring2026!") for i in range(12)]
        # the sprayer now guesses a real user's real password: still refused
        right = await _try_login(client, "grid", PASSWORD)
    assert sprayed == [401] * 8 + [429] * 4
    assert right == 429


async def test_password_spraying_is_counted_per_forwarded_client(engine: Engine, tmp_path: Path,
                                                                 widget_config: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from bot.console.http import CONSOLE_CONFIG

    monkeypatch.setenv("QC_LOGIN_CLIENT_LIMIT", "4")
    monkeypatch.delenv("QC_REDIS_URL", raising=False)
    make_users(engine, ("grid",))
    app = make_app(engine, tmp_path, widget_config)
    app[CONSOLE_CONFIG] = replace(app[CONSOLE_CONFIG], trusted_proxies=("127.0.0.1",))
    async with TestClient(TestServer(app)) as client:
        sprayed = [await _try_login(client, f"user{i}", "Spring2026!", "203.0.113.9") for i in range(6)]
        # a worker behind the same proxy, from their own address, still logs in
        worker = await _try_login(client, "grid", PASSWORD, "198.51.100.20")
    assert sprayed == [401] * 4 + [429] * 2
    assert worker == 303


async def test_rest_and_socketio_share_one_per_client_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/configuration.md's backstop is "REST + Socket.IO messages per client address per minute": one
    address alternating channels gets QC_CLIENT_RATE_LIMIT in total, not that much on each."""
    from sanic import Sanic

    from bot.channels.rest import RestInput
    from bot.channels.socketio import SocketIOInput
    from tests.security.test_rate_limits import free_port

    monkeypatch.setenv("QC_CLIENT_RATE_LIMIT", "7")
    monkeypatch.delenv("QC_REDIS_URL", raising=False)
    monkeypatch.delenv("QC_TRUSTED_PROXIES", raising=False)
    bot = RecordingBot()
    Sanic.test_mode = True
    app = Sanic(f"both_{uuid.uuid4().hex[:12]}")  # one Rasa server with both channels, as credentials.yml has
    app.config.MOTD = False
    app.blueprint(RestInput().blueprint(bot), url_prefix="/webhooks/rest")
    channel = SocketIOInput(user_message_evt="user_uttered", bot_message_evt="bot_uttered", session_persistence=True)
    app.blueprint(channel.blueprint(bot), url_prefix="/webhooks/socketio")
    port = free_port()
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False)
    await server.startup()
    base = f"http://127.0.0.1:{port}"
    client = socketio.AsyncClient()
    answers: list[str] = []
    confirmed: list[str] = []
    try:
        rest_codes = [await rest(base, f"r-{uuid.uuid4().hex[:8]}", f"刷REST{i}") for i in range(5)]
        client.on("session_confirm", lambda sid: confirmed.append(sid))
        client.on("bot_uttered", lambda data: answers.append(data.get("text")))
        await client.connect(base, socketio_path="/socket.io", transports=["polling"])
        await client.emit("session_request", {})
        for _ in range(50):
            if confirmed:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        for j in range(5):
            await client.emit("user_uttered", {"message": f"刷IO{j}", "session_id": confirmed[0]})
            await asyncio.sleep(0.05)
        for _ in range(60):
            if len(answers) >= 5:
                break
            await asyncio.sleep(0.1)
        more_rest = await rest(base, "r-last", "刷REST-last")
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 2)
        except asyncio.TimeoutError:
            pass
        await close(server)
    assert rest_codes == [200] * 5
    assert Counter(answers) == Counter({"收到：刷IO0": 1, "收到：刷IO1": 1, MSG_TOO_FAST: 3})
    assert more_rest == 429
    assert len(bot.messages) == 7

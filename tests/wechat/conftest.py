"""Fixtures for the WeChat channel tests: the WeChat API stand-in, channel servers (the
real Sanic blueprint, served in-process) with a fake bot, and a WeChat-side client."""
from __future__ import annotations

import asyncio
import base64
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from rasa.core.channels.channel import UserMessage
from sanic import Sanic

from bot.channels.wechat import WeChatConfig, WeChatGateway, WeChatInput
from bot.channels.wechat.api import Timeouts
from bot.channels.wechat.store import TABLES
from bot.storage.engine import make_engine
from bot.storage.tables import metadata
from tests.wechat.standin import WeChatStandIn
from tests.wechat.wxclient import WeChatServer

TOKEN = "qingcheng-test-token"
APPID = "wx0123456789abcdef"
SECRET = "stand-in-secret"
AES_KEY = base64.b64encode(bytes(range(7, 39))).decode().rstrip("=")  # 43 characters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeClock:
    """time.time() plus an offset the test moves (token expiry, the 48-hour window);
    frozen, only the offset moves it: a lease then runs out when the test says so, not
    when a loaded machine happens to be slow."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.frozen_at: float | None = None

    def freeze(self) -> None:
        self.frozen_at = time.time()

    def __call__(self) -> float:
        return (time.time() if self.frozen_at is None else self.frozen_at) + self.offset


class FakeBot:
    """Stands in for Rasa's on_new_message: records what reached it, answers "收到：…"."""

    def __init__(self) -> None:
        self.messages: list[UserMessage] = []
        self.delay = 0.0
        self.buttons: list[dict[str, str]] | None = None
        self.fail = False

    async def __call__(self, message: UserMessage) -> None:
        self.messages.append(message)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("bot down")
        out = message.output_channel
        if self.buttons:
            await out.send_text_with_buttons(message.sender_id, "请选择：", list(self.buttons))
        else:
            await out.send_text_message(message.sender_id, f"收到：{message.text}")

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


class ChannelServer:
    def __init__(self, config: WeChatConfig, bot: Any, clock: Any, engine: Any):
        self.gateway = WeChatGateway(config, clock=clock, engine=engine)
        self.channel = WeChatInput(gateway=self.gateway)
        self.bot = bot
        self.server: Any = None
        self.url = ""

    async def start(self) -> ChannelServer:
        Sanic.test_mode = True  # several apps in one process (Sanic's touch-up runs once per method)
        app = Sanic(f"wx_test_{uuid.uuid4().hex[:12]}")
        app.config.MOTD = False
        app.blueprint(self.channel.blueprint(self.bot), url_prefix="/webhooks/wechat")
        port = free_port()
        self.server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True,
                                              access_log=False)
        await self.server.startup()
        await self.server.after_start()  # the channel's start listeners (the recovery sweep)
        self.url = f"http://127.0.0.1:{port}/webhooks/wechat/webhook"
        return self

    async def close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.before_stop()  # the channel's stop listeners (the recovery sweep)
        await self.gateway.stop_sweeper()
        await self.gateway.drain(10)
        if server is not None:
            server.close()
            await server.wait_closed()


class _Killed:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("this worker was killed")


def cut_off(server: ChannelServer) -> None:
    """A killed process writes nothing more: a store call already handed to a thread (a
    lease renewal) fails instead of landing later, e.g. after the test moved the clock on."""
    server.gateway.store.engine = _Killed()


class Harness:
    """One stand-in, one database, any number of channel instances ("workers")."""

    def __init__(self, standin: WeChatStandIn, db_url: str, tmp: Path):
        self.standin = standin
        self.db_url = db_url
        self.tmp = tmp
        self.clock = FakeClock()
        self.bot = FakeBot()
        self.engines: list[Any] = []
        self.servers: list[ChannelServer] = []

    def config(self, **overrides: Any) -> WeChatConfig:
        values: dict[str, Any] = dict(
            token=TOKEN, appid=APPID, secret=SECRET, encoding_aes_key=AES_KEY, mode="compatible",
            api_base=self.standin.url, upload_dir=self.tmp / "uploads", template_id="TPL-ticket-update",
            passive_budget=4.0, timeouts=Timeouts(token=2.0, media=1.0, send=2.0),
        )
        values.update(overrides)
        cfg = WeChatConfig(**values)
        cfg.validate()
        return cfg

    async def channel(self, bot: Any = None, **overrides: Any) -> ChannelServer:
        engine = make_engine(self.db_url)
        self.engines.append(engine)
        server = await ChannelServer(self.config(**overrides), bot or self.bot, self.clock, engine).start()
        self.servers.append(server)
        return server

    def engine(self) -> Any:
        """An engine on the harness's database, for the test's own queries."""
        engine = make_engine(self.db_url)
        self.engines.append(engine)
        return engine

    def wechat(self, server: ChannelServer, **kw: Any) -> WeChatServer:
        return WeChatServer(server.url, kw.pop("token", TOKEN), kw.pop("appid", APPID),
                            kw.pop("encoding_aes_key", AES_KEY), clock=self.clock)

    async def close(self) -> None:
        for s in self.servers:
            await s.close()
        for e in self.engines:
            e.dispose()


def _fresh_tables(url: str) -> None:
    eng = make_engine(url)
    metadata.drop_all(eng, tables=TABLES)
    eng.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wechat.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wechat.db'}"
    url = request.getfixturevalue("pg_url")
    _fresh_tables(url)
    return url


async def harness_on(db_url: str, tmp: Path):
    standin = WeChatStandIn(APPID, SECRET)
    await standin.start()
    h = Harness(standin, db_url, tmp)
    try:
        yield h
    finally:
        await h.close()
        await standin.close()


@pytest_asyncio.fixture
async def h(sqlite_url: str, tmp_path: Path):
    """SQLite harness (message handling)."""
    async for x in harness_on(sqlite_url, tmp_path):
        yield x


@pytest_asyncio.fixture
async def hdb(any_db_url: str, tmp_path: Path):
    """Harness on SQLite and on PostgreSQL (dedupe, tokens, rate limits)."""
    async for x in harness_on(any_db_url, tmp_path):
        yield x

"""转人工 on WeChat, on SQLite and PostgreSQL: the channel (real Sanic blueprint, signed and
encrypted posts) with a bot that opens a hand-off as action_human_handoff does, the WeChat
API stand-in, and the work console over HTTP on the same database.

The whole cycle (ask, held messages and a photo kept for the agent, the agent takes and
writes, pushed as customer-service messages once and in order, hand back); a closed 48-hour
window (the agent reads why, the message goes with the reply to the resident's next
message, never a template); and `handoff: transfer_customer_service` (byte-exact XML)."""
from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from rasa.core.channels.channel import UserMessage
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.channels.wechat.handoff import TRANSFER_NOTE, WINDOW_CLOSED
from bot.console import services as csvc
from bot.console.config import ConsoleConfig
from bot.console.http import CONSOLE_CONFIG, CONSOLE_ENGINE
from bot.console.tables import users
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.handoff import ASKED, HANDED_BACK_NOTICE
from bot.services import handoff
from bot.storage.handoff import handoff_events, handoff_messages, handoffs
from bot.storage.uow import SqlAlchemyUnitOfWork
from bot.web.app import init_app
from bot.web.keys import Settings
from tests.console.helpers import PASSWORD, another_client, login, post
from tests.wechat.conftest import harness_on
from tests.wechat.standin import JPEG
from tests.wechat.wxclient import ACCOUNT, image_msg, text_msg

pytestmark = pytest.mark.asyncio
CUSTOM = "/cgi-bin/message/custom/send"
TEMPLATE = "/cgi-bin/message/template/send"
ASK = "我要找人工客服"


@pytest.fixture(autouse=True)
def service_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(handoff.HOURS_ENV, "00:00-23:59")


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    from argon2 import PasswordHasher

    from bot.console import auth
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


class HandoffBot:
    """Rasa's stand-in: "我要找人工客服" opens a hand-off exactly as action_human_handoff does
    (bot/services/handoff.request, the channel of the message) and says the notice; anything
    else is answered "收到：…"."""

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


@pytest_asyncio.fixture
async def h(engine: Engine, tmp_path: Path) -> AsyncIterator[Any]:
    async for harness in harness_on(engine.url.render_as_string(hide_password=False), tmp_path):
        harness.clock.freeze()  # CreateTime in the replies is exact
        yield harness


@pytest_asyncio.fixture
async def console(engine: Engine, tmp_path: Path) -> AsyncIterator[TestClient]:
    app = init_app(Settings(database_url=engine.url.render_as_string(hide_password=False),
                            rasa_url="http://127.0.0.1:9"))
    app[CONSOLE_ENGINE] = engine
    # 坐席 may not see phones here: the transcript shows them masked
    app[CONSOLE_CONFIG] = ConsoleConfig(notifier=False, upload_dir=tmp_path / "uploads",
                                        phone_roles=frozenset({"admin"}))
    async with TestClient(TestServer(app)) as c:
        yield c


async def agent(console: TestClient, engine: Engine) -> str:
    user_id = csvc.create_user(ConsoleUnitOfWork(engine), "agent1", "小王", PASSWORD, "agent", (),
                               datetime.now(timezone.utc))
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.id == user_id).values(languages="zh"))
    return await login(console, "agent1")


def custom(openid: str, text: str) -> dict:
    return {"touser": openid, "msgtype": "text", "text": {"content": text}}


def rows(engine: Engine, hid: int) -> list[tuple]:
    m = handoff_messages
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(m.c.author, m.c.outgoing, m.c.text, m.c.delivered_at.is_not(None), m.c.delivery_note)
            .where(m.c.handoff_id == hid).order_by(m.c.id)).all()]


def handoff_of(engine: Engine, openid: str) -> tuple[int, str, str]:
    with engine.connect() as conn:
        [(hid, state, channel)] = conn.execute(select(handoffs.c.id, handoffs.c.state, handoffs.c.channel)
                                               .where(handoffs.c.sender_id == openid)).all()
    return hid, state, channel


async def asked(h: Any, wx: Any, openid: str) -> int:
    reply = await wx.post(text_msg(openid, ASK), encrypted=True)
    assert reply.content.startswith("正在为您转接人工客服，请稍候。您前面还有 0 位居民在等待。"), reply.content
    hid, state, channel = handoff_of(h.engine(), openid)
    assert (state, channel) == ("waiting", "wechat")
    return hid


async def test_a_person_takes_over_on_wechat_and_hands_back(h, engine: Engine, console: TestClient) -> None:
    bot = HandoffBot(engine)
    srv = await h.channel(bot, handoff_push_interval=0.05)
    wx = h.wechat(srv)
    me = "oHandoffResident000000000001"
    hid = await asked(h, wx, me)

    # held while waiting: kept for the agent (text masked at rest, a photo as its reference); the bot hears nothing
    held = await wx.post(text_msg(me, "暖气不热，我的电话13847112345"), encrypted=True)
    assert (held.status, held.body) == (200, "success")
    h.standin.add_media("MEDIA_held_photo", JPEG)
    photo = await wx.post(image_msg(me, "MEDIA_held_photo"), encrypted=True)
    assert (photo.status, photo.body) == (200, "success")
    assert bot.texts == [ASK]
    [(_, _, kept_text, _, _), (_, _, kept_photo, _, _)] = rows(engine, hid)
    assert kept_text == "暖气不热，我的电话138****2345"
    name = re.fullmatch(r"（照片）/widget/photo/([0-9a-f]{32}\.jpg)", kept_photo)
    assert name and (h.tmp / "uploads" / name.group(1)).exists()

    # the agent takes it and writes, in the console over HTTP: pushed in real time, in order
    csrf = await agent(console, engine)
    assert (await post(console, f"/console/handoff/{hid}/take", csrf)).status == 303
    assert (await post(console, f"/console/handoff/{hid}/say", csrf, text="您好，请问是哪个小区？")).status == 303
    assert await h.standin.wait_for(lambda: len(h.standin.sent(me)) == 2)
    assert h.standin.sent(me) == [custom(me, "工作人员小王已接入，请问有什么可以帮您？"),
                                  custom(me, "您好，请问是哪个小区？")]
    page = await (await console.get(f"/console/handoff/{hid}")).text()
    assert "138****2345" in page and "13847112345" not in page and name.group(1) in page
    async with another_client(console) as other:  # a role that may see phones: the transcript masked too,
        # the number only in the 代登记 form's phone field (where the ticket keeps it)
        csvc.create_user(ConsoleUnitOfWork(engine), "root", "管理员", PASSWORD, "admin", (), datetime.now(timezone.utc))
        await login(other, "root")
        admin_page = await (await other.get(f"/console/handoff/{hid}")).text()
        assert "暖气不热，我的电话138****2345" in admin_page and "暖气不热，我的电话13847112345" not in admin_page

    # the resident answers: kept, nothing sent twice (the pushed ones are delivered), the bot silent
    answer = await wx.post(text_msg(me, "锦绣小区"), encrypted=True)
    assert answer.body == "success" and bot.texts == [ASK]

    # hand back: the notice is pushed; then the assistant answers again
    assert (await post(console, f"/console/handoff/{hid}/back", csrf)).status == 303
    assert await h.standin.wait_for(lambda: len(h.standin.sent(me)) == 3)
    back = await wx.post(text_msg(me, "楼下有人遛狗不牵绳"), encrypted=True)
    assert back.fields == {"ToUserName": me, "FromUserName": ACCOUNT, "CreateTime": str(int(h.clock())),
                           "MsgType": "text", "Content": "收到：楼下有人遛狗不牵绳"}
    assert bot.texts == [ASK, "楼下有人遛狗不牵绳"]
    await asyncio.sleep(0.3)  # several push beats: nothing more goes out
    assert h.standin.sent(me) == [custom(me, "工作人员小王已接入，请问有什么可以帮您？"),
                                  custom(me, "您好，请问是哪个小区？"), custom(me, HANDED_BACK_NOTICE)]
    assert rows(engine, hid) == [
        ("resident", False, "暖气不热，我的电话138****2345", False, None),
        ("resident", False, kept_photo, False, None),
        ("system", True, "工作人员小王已接入，请问有什么可以帮您？", True, None),
        ("user:agent1", True, "您好，请问是哪个小区？", True, None),
        ("resident", False, "锦绣小区", False, None),
        ("system", True, HANDED_BACK_NOTICE, True, None)]
    assert handoff_of(engine, me)[1] == "returned"


async def test_outside_the_48_hour_window_the_agent_is_told_and_the_message_waits(
        h, engine: Engine, console: TestClient) -> None:
    bot = HandoffBot(engine)
    srv = await h.channel(bot, handoff_push_interval=0.05)
    wx = h.wechat(srv)
    me = "oHandoffResident000000000002"
    hid = await asked(h, wx, me)
    csrf = await agent(console, engine)
    assert (await post(console, f"/console/handoff/{hid}/take", csrf)).status == 303
    assert await h.standin.wait_for(lambda: len(h.standin.sent(me)) == 1)

    h.clock.offset = 49 * 3600  # the resident last wrote 49 hours ago
    assert (await post(console, f"/console/handoff/{hid}/say", csrf, text="请问问题解决了吗？")).status == 303
    assert await h.standin.wait_for(lambda: rows(engine, hid)[-1][4] is not None)
    assert rows(engine, hid)[-1] == ("user:agent1", True, "请问问题解决了吗？", False, WINDOW_CLOSED)
    assert len(h.standin.calls_to(CUSTOM)) == 1 and h.standin.calls_to(TEMPLATE) == []  # not tried, no template
    page = await (await console.get(f"/console/handoff/{hid}")).text()
    assert WINDOW_CLOSED in page

    # the resident writes again (the window opens): the message goes with the passive reply, once
    again = await wx.post(text_msg(me, "还没有"), encrypted=True)
    assert again.fields == {"ToUserName": me, "FromUserName": ACCOUNT, "CreateTime": str(int(h.clock())),
                            "MsgType": "text", "Content": "请问问题解决了吗？"}
    assert rows(engine, hid)[-2:] == [("user:agent1", True, "请问问题解决了吗？", True, WINDOW_CLOSED),
                                      ("resident", False, "还没有", False, None)]
    page = await (await console.get(f"/console/handoff/{hid}")).text()
    assert WINDOW_CLOSED not in page  # delivered now

    # WeChat itself says the window is closed (45015): the same note, nothing delivered
    h.standin.out_of_window.add(me)
    assert (await post(console, f"/console/handoff/{hid}/say", csrf, text="那我再催一下")).status == 303
    assert await h.standin.wait_for(lambda: rows(engine, hid)[-1][4] is not None)
    assert rows(engine, hid)[-1] == ("user:agent1", True, "那我再催一下", False, WINDOW_CLOSED)
    assert [c.json["text"]["content"] for c in h.standin.calls_to(CUSTOM)][1:] == ["那我再催一下"]  # tried once
    assert h.standin.sent(me) == [custom(me, "工作人员小王已接入，请问有什么可以帮您？")]
    assert h.standin.calls_to(TEMPLATE) == []
    assert bot.texts == [ASK]


async def test_transfer_customer_service_answers_with_wechats_transfer(h, engine: Engine) -> None:
    bot = HandoffBot(engine)
    srv = await h.channel(bot, handoff="transfer_customer_service")
    wx = h.wechat(srv)
    me = "oHandoffResident000000000003"
    ordinary = await wx.post(text_msg(me, "你好"))  # plain mode: the reply's bytes as WeChat reads them
    now = int(h.clock())
    assert ordinary.body == (f"<xml><ToUserName><![CDATA[{me}]]></ToUserName><FromUserName><![CDATA[{ACCOUNT}]]>"
                             f"</FromUserName><CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                             "<Content><![CDATA[收到：你好]]></Content></xml>")
    transfer = await wx.post(text_msg(me, ASK))
    assert transfer.body == (f"<xml><ToUserName><![CDATA[{me}]]></ToUserName><FromUserName><![CDATA[{ACCOUNT}]]>"
                             f"</FromUserName><CreateTime>{now}</CreateTime>"
                             "<MsgType><![CDATA[transfer_customer_service]]></MsgType></xml>")
    hid, state, channel = handoff_of(engine, me)
    assert (state, channel) == ("closed", "wechat")  # never in our agents' queue
    with engine.connect() as conn:
        steps = [tuple(r) for r in conn.execute(select(handoff_events.c.kind, handoff_events.c.actor,
                                                       handoff_events.c.note)
                                                .where(handoff_events.c.handoff_id == hid)
                                                .order_by(handoff_events.c.id)).all()]
    assert steps == [("转人工", "system", "asked"), ("结束", "system", TRANSFER_NOTE)]
    assert rows(engine, hid) == []
    # safe mode: the same transfer, encrypted and signed
    again = await wx.post(text_msg(me, ASK), encrypted=True)
    assert again.fields == {"ToUserName": me, "FromUserName": ACCOUNT, "CreateTime": str(now),
                            "MsgType": "transfer_customer_service"}
    assert bot.texts == ["你好", ASK, ASK]
    assert h.standin.calls_to(CUSTOM) == []

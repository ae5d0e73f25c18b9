"""Issue 13 item 3, from the outside: a REST client naming a WeChat resident's openid.

The real Rasa server + action server with the WeChat channel (safe mode, the API played by
the stand-in) and the REST channel with QC_REST_TOKEN set, as in production. A resident
files a complaint through WeChat; then an attacker (and a trusted front-end with the token)
posts to REST with sender=<that openid>: no token → 401, nothing processed; with the token
the REST conversation is its own ("rest:<sender>"): the WeChat resident's ticket is not
shown and cannot be re-opened, and the WeChat conversation is untouched."""
from __future__ import annotations

import re
import uuid

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.nlu.explain import latest_model
from bot.storage.engine import init_db, make_engine
from bot.storage.tables import ticket_events, ticket_reports, tickets
from tests.wechat.conftest import AES_KEY, APPID, SECRET, TOKEN, free_port
from tests.wechat.stack import start_wechat_stack
from tests.wechat.standin import WeChatStandIn
from tests.wechat.test_wechat_e2e import Resident
from tests.wechat.wxclient import WeChatServer, event_msg, location_msg, text_msg

API_TOKEN = "identity-api-" + uuid.uuid4().hex
REST_TOKEN = "identity-rest-" + uuid.uuid4().hex
OPENID = "oIdentityResident00000000001"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wechat_identity")
    db_url = f"sqlite:///{tmp / 'tickets.db'}"
    init_db(make_engine(db_url))
    standin_port = free_port()
    s = start_wechat_stack(tmp, free_port(), free_port(), str(latest_model()), api_token=API_TOKEN, env={
        "QC_DATABASE_URL": db_url, "QC_UPLOAD_DIR": str(tmp / "uploads"), "QC_REST_TOKEN": REST_TOKEN,
        "QC_WECHAT_TOKEN": TOKEN, "QC_WECHAT_AES_KEY": AES_KEY, "QC_WECHAT_APPID": APPID,
        "QC_WECHAT_SECRET": SECRET, "QC_WECHAT_API_BASE": f"http://127.0.0.1:{standin_port}",
    }, log_name="identity")
    try:
        yield s, db_url, standin_port
    finally:
        s.stop()


async def _file_through_wechat(stack, standin_port: int) -> str:
    standin = WeChatStandIn(APPID, SECRET)
    await standin.start(port=standin_port)
    try:
        me = Resident(WeChatServer(stack.webhook, TOKEN, APPID, AES_KEY), standin, OPENID)
        await me.send(event_msg(OPENID, "subscribe", ""))
        assert "在哪里" in await me.send(text_msg(OPENID, "下水道堵了 污水都漫到路上了 臭得不行"))
        said = await me.send(location_msg(OPENID, 40.8415, 111.7498, "内蒙古自治区呼和浩特市新城区海拉尔东路街道公主府社区"))
        assert "照片" in said
        assert "联系电话" in await me.send(text_msg(OPENID, "1"))  # 跳过 the photo
        assert "请确认您的诉求" in await me.send(text_msg(OPENID, "1"))  # 跳过 the phone
        said = await me.send(text_msg(OPENID, "确认提交"))
        m = re.search(r"QC-\d{6}-\d{4}", said)
        assert m, said
        return m.group(0)
    finally:
        await standin.close()


async def _rest(s: aiohttp.ClientSession, url: str, message: str, token: str | None) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with s.post(f"{url}/webhooks/rest/webhook", json={"sender": OPENID, "message": message},
                      headers=headers) as r:
        return r.status, await r.json()


async def _tracker(s: aiohttp.ClientSession, url: str, conversation: str) -> dict:
    async with s.get(f"{url}/conversations/{conversation}/tracker",
                     params={"token": API_TOKEN, "include_events": "ALL"}) as r:
        assert r.status == 200
        return await r.json()


def _ticket_state(db_url: str) -> tuple:
    with make_engine(db_url).connect() as conn:
        rows = conn.execute(select(tickets.c.number, tickets.c.state, ticket_reports.c.sender_id,
                                   ticket_reports.c.channel)
                            .join(ticket_reports, ticket_reports.c.ticket_id == tickets.c.id)).all()
        events = conn.execute(select(func.count()).select_from(ticket_events)).scalar_one()
    return [tuple(r) for r in rows], events


@pytest.fixture(scope="module")
def filed(stack):
    """A ticket filed by the WeChat resident: (stack, db_url, number, rows and events before)."""
    import asyncio

    wx, db_url, standin_port = stack
    number = asyncio.run(_file_through_wechat(wx, standin_port))
    before = _ticket_state(db_url)
    assert before[0] == [(number, "派单", OPENID, "wechat")]
    return wx, db_url, number, before


@pytest.mark.asyncio
async def test_rest_without_the_front_ends_token_gets_401_and_nothing_is_processed(filed):
    wx, db_url, number, before = filed
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        wechat_events = len((await _tracker(s, wx.rasa_url, OPENID))["events"])
        for token in (None, "wrong", REST_TOKEN + "x"):
            status, body = await _rest(s, wx.rasa_url, "我的诉求办得怎么样了", token)
            assert status == 401, (status, body)
            assert body["error"] == "unauthorized"
        assert len((await _tracker(s, wx.rasa_url, OPENID))["events"]) == wechat_events
        rest = await _tracker(s, wx.rasa_url, "rest:" + OPENID)
        assert [e for e in rest["events"] if e.get("event") == "user"] == []
    assert _ticket_state(db_url) == before


@pytest.mark.asyncio
async def test_rest_naming_a_wechat_openid_reaches_neither_the_conversation_nor_the_tickets(filed):
    """A front-end with the token, naming the openid: its own conversation."""
    wx, db_url, number, before = filed
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        wechat_events = len((await _tracker(s, wx.rasa_url, OPENID))["events"])
        said = []
        for message in ("我的诉求办得怎么样了", f"查询 {number}", "没有解决"):
            status, body = await _rest(s, wx.rasa_url, message, REST_TOKEN)
            assert status == 200
            assert all(m["recipient_id"] == OPENID for m in body)  # answered in the front-end's terms
            said.append(" ".join(m.get("text") or "" for m in body))
        assert said == ["没有查到您名下的工单。如果您有工单号，请直接发送（例如 QC-261124-0001）。",
                        f"没有查到工单 {number}，或该工单不是您提交的。为保护隐私，只能查询本人提交的工单。",
                        "目前没有需要您评价的工单。如需查询进度，请发送工单号。"]

        wechat = await _tracker(s, wx.rasa_url, OPENID)
        assert len(wechat["events"]) == wechat_events
        assert {e.get("input_channel") for e in wechat["events"] if e.get("event") == "user"} == {"wechat"}
        rest = await _tracker(s, wx.rasa_url, "rest:" + OPENID)
        assert [e["text"] for e in rest["events"] if e.get("event") == "user"] == \
            ["我的诉求办得怎么样了", f"查询 {number}", "没有解决"]
    assert _ticket_state(db_url) == before

"""End to end: a complaint filed through WeChat messages (safe mode), against the real
Rasa server and action server, the WeChat API played by the stand-in."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from sqlalchemy import select, update

from bot.channels.wechat.store import wechat_residents
from bot.console.notifier import DeliveryError, RasaChannel
from bot.console.repository import OutboxMessage
from bot.nlu.explain import latest_model
from bot.photoclean import clean_photo
from bot.storage.engine import init_db, make_engine
from bot.storage.tables import ticket_reports, tickets
from tests.wechat.conftest import AES_KEY, APPID, SECRET, TOKEN, free_port
from tests.wechat.stack import start_wechat_stack
from tests.wechat.standin import JPEG, WeChatStandIn
from tests.wechat.wxclient import WeChatServer, event_msg, image_msg, location_msg, text_msg, voice_msg

API_TOKEN = "e2e-rasa-api-token"
TEMPLATE_ID = "TPL-e2e-ticket-update"
TEMPLATE = "/cgi-bin/message/template/send"


@pytest.fixture(scope="module")
def wechat_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wechat_e2e")
    db_url = f"sqlite:///{tmp / 'tickets.db'}"
    init_db(make_engine(db_url))
    standin_port = free_port()
    stack = start_wechat_stack(tmp, free_port(), free_port(), str(latest_model()), api_token=API_TOKEN, env={
        "QC_DATABASE_URL": db_url,
        "QC_UPLOAD_DIR": str(tmp / "uploads"),
        "QC_WECHAT_TOKEN": TOKEN, "QC_WECHAT_AES_KEY": AES_KEY, "QC_WECHAT_APPID": APPID,
        "QC_WECHAT_SECRET": SECRET, "QC_WECHAT_API_BASE": f"http://127.0.0.1:{standin_port}",
        "QC_WECHAT_TEMPLATE_ID": TEMPLATE_ID,
    })
    try:
        yield stack, db_url, standin_port, tmp
    finally:
        stack.stop()


class Resident:
    """One resident's phone: posts as WeChat would and reads the answer, passive or
    (when the bot took longer than the passive budget) via custom/send at the stand-in."""

    def __init__(self, wx: WeChatServer, standin: WeChatStandIn, openid: str):
        self.wx, self.standin, self.openid = wx, standin, openid

    async def send(self, body: bytes) -> str:
        before = len(self.standin.sent(self.openid))
        reply = await self.wx.post(body, encrypted=True)
        assert reply.status == 200, reply.body
        if reply.content:
            return reply.content
        assert await self.standin.wait_for(lambda: len(self.standin.sent(self.openid)) > before, timeout=30)
        return "\n".join(m["text"]["content"] for m in self.standin.sent(self.openid)[before:])


@pytest.mark.asyncio
async def test_complaint_filed_through_wechat(wechat_stack):
    stack, db_url, standin_port, tmp = wechat_stack
    standin = WeChatStandIn(APPID, SECRET)
    await standin.start(port=standin_port)
    try:
        wx = WeChatServer(stack.webhook, TOKEN, APPID, AES_KEY)
        assert await wx.verify("20261125") == (200, "20261125")
        me = Resident(wx, standin, "oE2eResident000000000000001")

        said = await me.send(event_msg(me.openid, "subscribe", ""))  # no QR scene: the location is asked
        assert "青城诉求助手" in said
        said = await me.send(text_msg(me.openid, "下水道堵了 污水都漫到路上了 臭得不行"))
        assert "在哪里" in said
        said = await me.send(location_msg(me.openid, 40.8415, 111.7498, "内蒙古自治区呼和浩特市新城区海拉尔东路街道公主府社区"))
        assert "照片" in said and "1. 跳过" in said
        standin.add_media("MEDIA_e2e_photo", JPEG)
        said = await me.send(image_msg(me.openid, "MEDIA_e2e_photo"))
        assert "联系电话" in said and "1. 跳过" in said
        said = await me.send(text_msg(me.openid, "1"))  # the numbered "跳过"
        assert "请确认您的诉求" in said and "照片：已上传" in said and "公主府社区" in said
        confirm = text_msg(me.openid, "确认提交")
        said = await me.send(confirm)
        assert "工单号 QC-" in said, said
        # WeChat retries the last message (its answer got lost): nothing is filed twice
        again = await wx.post(confirm, encrypted=True)
        assert again.status == 200
        said_voice = await me.send(voice_msg(me.openid, "谢谢"))
        assert said_voice

        with make_engine(db_url).connect() as conn:
            rows = conn.execute(select(tickets, ticket_reports.c.photo, ticket_reports.c.channel)
                                .join(ticket_reports, ticket_reports.c.ticket_id == tickets.c.id)
                                .where(ticket_reports.c.sender_id == me.openid)).mappings().all()
        assert len(rows) == 1
        row = rows[0]
        assert row["category"] == "drainage" and row["community_code"] == "150102001001"
        assert row["street_code"] == "150102001" and row["channel"] == "wechat"
        m = re.fullmatch(r"/widget/photo/([0-9a-f]{32}\.jpg)", row["photo"] or "")
        assert m, row["photo"]
        assert (tmp / "uploads" / m.group(1)).read_bytes() == clean_photo(JPEG, "jpg")
        assert len(standin.token_calls) == 1
    finally:
        await standin.close()


def ticket_rows(db_url, openid):
    with make_engine(db_url).connect() as conn:
        return conn.execute(select(tickets, ticket_reports.c.photo, ticket_reports.c.channel)
                            .join(ticket_reports, ticket_reports.c.ticket_id == tickets.c.id)
                            .where(ticket_reports.c.sender_id == openid)).mappings().all()


@pytest.mark.asyncio
async def test_the_qr_code_community_is_the_location_of_a_later_complaint(wechat_stack):
    stack, db_url, standin_port, tmp = wechat_stack
    standin = WeChatStandIn(APPID, SECRET)
    await standin.start(port=standin_port)
    try:
        wx = WeChatServer(stack.webhook, TOKEN, APPID, AES_KEY)
        me = Resident(wx, standin, "oE2eResidentScene0000000001")
        said = await me.send(event_msg(me.openid, "subscribe", "qrscene_150102001001"))  # 公主府社区's QR code
        assert "什么问题" in said
        said = await me.send(text_msg(me.openid, "单元门贴满小广告"))
        assert "照片" in said and "在哪里" not in said  # the location is not asked
        said = await me.send(text_msg(me.openid, "1"))  # 跳过 the photo
        assert "联系电话" in said
        said = await me.send(text_msg(me.openid, "1"))  # 跳过 the phone
        assert "请确认您的诉求" in said and "地点：新城区 海拉尔东路街道 公主府社区" in said, said
        assert "扫描的社区二维码" in said
        said = await me.send(text_msg(me.openid, "确认提交"))
        assert "工单号 QC-" in said, said
        [row] = ticket_rows(db_url, me.openid)
        assert (row["category"], row["district_code"], row["street_code"], row["community_code"], row["channel"],
                row["photo"], row["description"]) == \
            ("illegal_ads", "150102", "150102001", "150102001001", "wechat", None, "单元门贴满小广告")
        assert "street:150102001" in list(row["co_queues"])  # routed to that street
    finally:
        await standin.close()


@pytest.mark.asyncio
async def test_a_photo_sent_before_the_complaint_is_filed_with_it(wechat_stack):
    stack, db_url, standin_port, tmp = wechat_stack
    standin = WeChatStandIn(APPID, SECRET)
    await standin.start(port=standin_port)
    try:
        wx = WeChatServer(stack.webhook, TOKEN, APPID, AES_KEY)
        me = Resident(wx, standin, "oE2eResidentPhoto0000000001")
        standin.add_media("MEDIA_e2e_first", JPEG)
        said = await me.send(image_msg(me.openid, "MEDIA_e2e_first"))
        assert "收到您的照片" in said
        said = await me.send(text_msg(me.openid, "新城区公主府社区的路灯坏了好几天了"))
        assert "联系电话" in said and "照片" not in said  # the photo is not asked again
        said = await me.send(text_msg(me.openid, "1"))  # 跳过 the phone
        assert "照片：已上传" in said and "描述问题之前发来的那张" in said, said
        said = await me.send(text_msg(me.openid, "确认提交"))
        assert "工单号 QC-" in said, said
        [row] = ticket_rows(db_url, me.openid)
        assert (row["category"], row["community_code"], row["channel"]) == \
            ("roads_lighting", "150102001001", "wechat")
        m = re.fullmatch(r"/widget/photo/([0-9a-f]{32}\.jpg)", row["photo"] or "")
        assert m, row["photo"]
        assert (tmp / "uploads" / m.group(1)).read_bytes() == clean_photo(JPEG, "jpg")
        # used up: the next complaint asks for a photo again
        said = await me.send(text_msg(me.openid, "新城区公主府社区楼下有人遛狗不牵绳"))
        assert "照片" in said and "1. 跳过" in said
    finally:
        await standin.close()


@pytest.mark.asyncio
async def test_ticket_news_from_the_console_outbox_reaches_the_resident(wechat_stack):
    """The console's notification outbox (RasaChannel: Rasa's trigger_intent, output
    channel "latest") → the WeChat channel: a customer-service message within 48 hours,
    a template message after; a failure is an outbox failure (retried), not lost."""
    stack, db_url, standin_port, tmp = wechat_stack
    standin = WeChatStandIn(APPID, SECRET)
    await standin.start(port=standin_port)
    try:
        wx = WeChatServer(stack.webhook, TOKEN, APPID, AES_KEY)
        me = Resident(wx, standin, "oE2eResidentNews00000000001")
        said = await me.send(text_msg(me.openid, "新城区公主府社区楼道里的垃圾好几天没人清了"))
        assert "照片" in said
        await me.send(text_msg(me.openid, "1"))
        await me.send(text_msg(me.openid, "1"))
        said = await me.send(text_msg(me.openid, "确认提交"))
        number = re.search(r"QC-\d{6}-\d{4}", said).group(0)

        async with aiohttp.ClientSession() as http:
            channel = RasaChannel(stack.rasa_url, API_TOKEN, http, timeout=30)

            def news(n: int) -> OutboxMessage:
                now = datetime.now(timezone.utc)
                return OutboxMessage(n, "resident", "rasa", me.openid, None, "resolved",
                                     {"ticket_number": number, "ticket_event": "resolved", "result": "已清运"},
                                     "pending", 0, now, None, now, None)

            before = len(standin.sent(me.openid))
            await channel.deliver(news(1))
            [pushed] = standin.sent(me.openid)[before:]
            text = pushed["text"]["content"]
            assert f"工单 {number}）已办结" in text and "办理结果：已清运" in text and "1. 已解决，满意" in text

            # 49 hours later: outside the customer-service window → the template message
            with make_engine(db_url).begin() as conn:
                conn.execute(update(wechat_residents).where(wechat_residents.c.openid == me.openid).values(
                    last_inbound_at=datetime.now(timezone.utc) - timedelta(hours=49)))
            await channel.deliver(news(2))
            [template] = standin.sent(me.openid, path=TEMPLATE)
            assert template["template_id"] == TEMPLATE_ID and number in template["data"]["content"]["value"]
            assert len(standin.sent(me.openid)) == before + 1  # no customer-service message outside the window

            # WeChat refuses: the outbox hears it (and keeps the message for a retry)
            standin.fail_next(TEMPLATE, errcode=43004)
            with pytest.raises(DeliveryError, match="HTTP 500"):
                await channel.deliver(news(3))
            assert len(standin.sent(me.openid, path=TEMPLATE)) == 1
    finally:
        await standin.close()

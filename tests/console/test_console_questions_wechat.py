"""A handler's question to a WeChat resident and the answer (issue 17), over the WeChat
stand-in: the console's outbox → a Rasa stand-in that runs the real action_ticket_update and
sends its message through the real WeChat output channel (customer-service API only) → the
stand-in; a closed 48-hour window reported on the ticket page; the resident's text and photo
answers through the real channel attached to the ticket (the photo without its EXIF).
Ticket store and channel tables in one database: SQLite and PostgreSQL. The console's upload
folder is the harness's (tmp_path/uploads), as QC_UPLOAD_DIR makes them one in production."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from actions.followup import ActionTicketUpdate
from bot.channels.wechat.channel import WeChatOutput
from bot.channels.wechat.store import wechat_residents
from bot.console import services as svc
from bot.console.notifier import ConsoleChannel, RasaChannel, drain_once
from bot.console.tables import outbox
from bot.console.uow import ConsoleUnitOfWork
from bot.storage.tables import ticket_events
from bot.uploads import own_photo_name
from tests.console.helpers import file, login, make_users, now, post
from tests.photos import metadata_of
from tests.wechat.conftest import APPID, SECRET, Harness
from tests.wechat.standin import JPEG, WeChatStandIn
from tests.wechat.wxclient import image_msg, text_msg

pytestmark = pytest.mark.asyncio
OPENID = "oResidentAsk0001"
CUSTOM = "/cgi-bin/message/custom/send"
TEMPLATE = "/cgi-bin/message/template/send"


class RasaStandIn:
    """What the Rasa server does with trigger_intent: runs the action, sends its messages
    through the resident's output channel, and answers 500 with the error when that fails."""

    def __init__(self, output: WeChatOutput) -> None:
        self.output = output

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/conversations/{sender}/trigger_intent", self.trigger)
        return app

    async def trigger(self, request: web.Request) -> web.Response:
        body = await request.json()
        sender = request.match_info["sender"]
        latest = {"intent": {"name": body["name"]}, "text": f"EXTERNAL: {body['name']}",
                  "entities": [{"entity": k, "value": v} for k, v in body["entities"].items()]}
        dispatcher = CollectingDispatcher()
        await ActionTicketUpdate().run(dispatcher, Tracker(sender, {}, latest, [], False, None, {}, ""), {})
        try:
            for m in dispatcher.messages:  # Rasa: BotUttered(text, metadata) → send_response
                message = {k: v for k, v in m.items() if v and k not in ("response", "template")}
                await self.output.send_text_message(sender, message.pop("text"), **message)
        except Exception as e:  # noqa: BLE001 - as rasa/server.py's trigger_intent answers
            return web.json_response({"version": "3.6.21", "status": "failure", "reason": "ConversationError",
                                      "message": f"An unexpected error occurred. Error: {e}", "code": 500}, status=500)
        return web.json_response({"tracker": {}, "messages": []})


async def deliver(engine: Engine, rasa: RasaStandIn, at: datetime) -> None:
    svc.process_feed(ConsoleUnitOfWork(engine), at)
    async with TestServer(rasa.app()) as server, aiohttp.ClientSession() as http:
        channels = {"console": ConsoleChannel(), "rasa": RasaChannel(str(server.make_url("")), None, http)}
        await drain_once(lambda: ConsoleUnitOfWork(engine), channels, now=at)


def question_messages(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(outbox).where(outbox.c.event == "question")
                                                       .order_by(outbox.c.id))]


def answers(engine: Engine, ticket_id: int) -> list[tuple[str, dict]]:
    with engine.connect() as conn:
        rows = conn.execute(select(ticket_events.c.reason, ticket_events.c.data).where(
            ticket_events.c.ticket_id == ticket_id, ticket_events.c.kind == "居民补充").order_by(ticket_events.c.seq))
        return [(r.reason, r.data) for r in rows]


async def test_question_answer_and_closed_window_over_wechat(client: TestClient, engine: Engine, db_url: str,
                                                             tmp_path: Path) -> None:
    standin = WeChatStandIn(APPID, SECRET)
    await standin.start()
    h = Harness(standin, db_url, tmp_path)
    try:
        srv = await h.channel()
        wx = h.wechat(srv)
        await wx.post(text_msg(OPENID, "你好"))  # the window opens
        make_users(engine, ("grid",))
        svc.ensure_feed(ConsoleUnitOfWork(engine), now())
        filed = file(engine, "k1", sender=OPENID, channel="wechat")
        rasa = RasaStandIn(WeChatOutput(srv.gateway))
        csrf = await login(client, "grid")

        # 1. inside the 48 hours: a customer-service message, the exact text
        assert (await post(client, f"/console/tickets/{filed.ticket_id}/ask", csrf, question="请拍一张现场照片")).status == 303
        await deliver(engine, rasa, now())
        [question] = standin.sent(OPENID)  # (the bot's 收到 went back in the HTTP response)
        assert question["msgtype"] == "text" and question["text"]["content"] == (
            f"关于您反映的工单 {filed.number}，工作人员想请您补充：请拍一张现场照片\n请直接回复文字，或发送照片。")
        assert question_messages(engine)[0]["status"] == "sent"

        # 2. the resident answers with a photo: attached (cleaned), acknowledged in the passive reply
        standin.add_media("MEDIA-ANSWER-1", JPEG)
        reply = await wx.post(image_msg(OPENID, "MEDIA-ANSWER-1"))
        assert reply.content == f"已收到，您的回复已补充到工单 {filed.number}，工作人员会继续办理。"
        assert h.bot.texts == ["你好"]  # the assistant saw only the greeting
        [(reason, data)] = answers(engine, filed.ticket_id)
        name = own_photo_name(data["photo"])
        assert reason == "（照片）" and name is not None and set(data) == {"question_id", "photo"}
        assert metadata_of((tmp_path / "uploads" / name).read_bytes()) == []  # no GPS, no device
        page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
        assert f'/console/tickets/{filed.ticket_id}/answers/{data["question_id"]}/photo' in page

        # 3. 49 hours later the window is closed: nothing sent, no template, the reason on the page
        with engine.begin() as conn:
            conn.execute(update(wechat_residents).where(wechat_residents.c.openid == OPENID).values(
                last_inbound_at=datetime.now(timezone.utc) - timedelta(hours=49)))
        assert (await post(client, f"/console/tickets/{filed.ticket_id}/ask", csrf, question="狗是什么颜色？")).status == 303
        sent_before = len(standin.sent(OPENID))
        await deliver(engine, rasa, now())
        later = question_messages(engine)[-1]
        assert later["status"] == "failed" and "45015" in later["last_error"]
        assert len(standin.sent(OPENID)) == sent_before and standin.calls_to(TEMPLATE) == []
        page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
        assert ("狗是什么颜色？ — <span class=\"alert delivery\">未送达：居民超过48小时未在微信里发消息，"
                "微信客服消息窗口已关闭；居民再发消息后会自动重发，急事请致电居民</span>") in page

        # 4. the resident writes again: the window opens, the outbox's next try delivers it
        await wx.post(text_msg(OPENID, "在吗"))
        assert h.bot.texts == ["你好", "在吗"]  # no question was open: the assistant's
        await deliver(engine, rasa, now() + timedelta(seconds=6))
        assert question_messages(engine)[-1]["status"] == "sent"
        assert standin.sent(OPENID)[-1]["text"]["content"].startswith(f"关于您反映的工单 {filed.number}，工作人员想请您补充：狗是什么颜色？")
        reply = await wx.post(text_msg(OPENID, "黑色的"))
        assert reply.content == f"已收到，您的回复已补充到工单 {filed.number}，工作人员会继续办理。"
        assert [a[0] for a in answers(engine, filed.ticket_id)] == ["（照片）", "黑色的"]
    finally:
        await h.close()
        await standin.close()

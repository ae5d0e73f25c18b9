"""Issue 19, 查看我的信息 and 删除我的信息 through WeChat: the real Rasa server + action server
with the WeChat channel (safe mode, the API played by the stand-in), the ticket store and the
channel's tables on SQLite and on PostgreSQL, the tracker store beside them (our SQLite store;
Rasa's SQL store as production runs it on PostgreSQL).

A resident (one OpenID) files a complaint with a phone number; 查看我的信息 answers with that
ticket only, the phone masked (exact text, the passive XML byte for byte); another OpenID
typing that phone and ticket number gets nothing of it; 删除我的信息 → 确认删除吗？ → 确认删除
(the button's title, which the channel sends as its payload /affirm) while the ticket is open:
the ticket is withdrawn (撤单 → 已撤单) and anonymised, the units get their notice through
the outbox, the transcript is gone from the tracker store, and the WeChat channel keeps no
earlier answer that quoted the resident (wechat_inbound.reply)."""
from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from contextlib import closing
from datetime import datetime, timezone
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import pytest
from sqlalchemy import create_engine, select, text, update

from actions.status import fmt_time
from bot.channels.wechat.store import wechat_inbound, wechat_residents
from bot.console.services.notices import process_feed
from bot.console.tables import outbox
from bot.console.uow import ConsoleUnitOfWork
from bot.nlu.explain import latest_model
from bot.services.rights import WITHDRAW_NOTE
from bot.services.setup import prepare_store
from bot.storage.engine import make_engine
from bot.storage.tables import ticket_events, ticket_reports, tickets
from tests.conftest import PG_BASE_URL
from tests.wechat.conftest import AES_KEY, APPID, SECRET, TOKEN, free_port
from tests.wechat.stack import start_wechat_stack
from tests.wechat.standin import WeChatStandIn
from tests.wechat.wxclient import ACCOUNT, WeChatServer, text_msg, xml_fields

API_TOKEN = "rights-api-" + uuid.uuid4().hex
ME = "oRightsResident000000000001"
OTHER = "oRightsStranger000000000001"
PHONE = "13847119876"
COMPLAINT = "河边有人偷偷倒化工废液 河水都变色了 新城区海拉尔东路街道公主府社区"


def _pg_schemas():
    admin = create_engine(PG_BASE_URL, future=True, connect_args={"connect_timeout": 5})
    tag = uuid.uuid4().hex[:10]
    names = (f"qc_wxr_tickets_{tag}", f"qc_wxr_tracker_{tag}")
    with admin.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')  # generated names, not input
    return admin, names


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"wechat_rights_{request.param}")
    admin = None
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp / 'tickets.db'}"
        tracker_db = tmp / "trackers.db"
        tracker = ("tracker_store:\n  type: bot.rasa_ext.sqlite_trackerstore.SQLiteTrackerStore\n"
                   f'  db: "{tracker_db}"\n')
        env = {}

        def stored(openid: str) -> int:
            with closing(sqlite3.connect(tracker_db)) as conn:
                return conn.execute("SELECT (SELECT count(*) FROM qc_tracker_events WHERE sender_id = ?)"
                                    " + (SELECT count(*) FROM qc_conversations WHERE sender_id = ?)",
                                    (openid, openid)).fetchone()[0]
    else:
        admin, (ticket_schema, tracker_schema) = _pg_schemas()
        sep = "&" if "?" in PG_BASE_URL else "?"
        db_url = f"{PG_BASE_URL}{sep}options={quote(f'-csearch_path={ticket_schema}')}"
        u = urlsplit(PG_BASE_URL)
        tracker = ("tracker_store:\n  type: bot.rasa_ext.trackerstore.ResilientSQLTrackerStore\n"
                   f'  dialect: postgresql\n  url: "{u.hostname}"\n  port: {u.port or 5432}\n'
                   f'  db: "{unquote(u.path.lstrip("/"))}"\n  username: "{unquote(u.username or "postgres")}"\n')
        env = {"POSTGRESQL_SCHEMA": tracker_schema}  # what Rasa's SQL store reads

        def stored(openid: str) -> int:
            with admin.connect() as conn:
                return conn.execute(text(f'SELECT count(*) FROM "{tracker_schema}".events WHERE sender_id = :s'),
                                    {"s": openid}).scalar_one()
    engine = make_engine(db_url)
    prepare_store(engine)
    standin_port = free_port()
    try:
        s = start_wechat_stack(tmp, free_port(), free_port(), str(latest_model()), api_token=API_TOKEN,
                               passive_budget=4.9, tracker_store=tracker, env={
                                   **env, "QC_DATABASE_URL": db_url, "QC_UPLOAD_DIR": str(tmp / "uploads"),
                                   "QC_WECHAT_TOKEN": TOKEN, "QC_WECHAT_AES_KEY": AES_KEY, "QC_WECHAT_APPID": APPID,
                                   "QC_WECHAT_SECRET": SECRET,
                                   "QC_WECHAT_API_BASE": f"http://127.0.0.1:{standin_port}"},
                               log_name=f"rights-{request.param}")
        try:
            yield s, engine, standin_port, stored
        finally:
            s.stop()
    finally:
        engine.dispose()
        if admin is not None:
            with admin.begin() as conn:
                for name in (ticket_schema, tracker_schema):
                    conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
            admin.dispose()


class Phone:
    """One resident's WeChat: posts as WeChat's servers do; the answer, and the decrypted
    passive XML when the channel answered within the HTTP response (else None: the answer
    came through custom/send)."""

    def __init__(self, wx: WeChatServer, standin: WeChatStandIn, openid: str):
        self.wx, self.standin, self.openid = wx, standin, openid

    async def say(self, content: str) -> tuple[str, bytes | None]:
        before = len(self.standin.sent(self.openid))
        query, body = self.wx.signed(text_msg(self.openid, content), encrypted=True)
        reply = await self.wx.send(query, body)
        assert reply.status == 200, reply.body
        if reply.content:
            outer = xml_fields(reply.body)
            self.wx.open_reply(outer)  # signature and AppID checked as WeChat does
            assert self.wx.aes is not None
            xml, _ = self.wx.aes.open(outer["Encrypt"])
            return reply.content, xml
        assert await self.standin.wait_for(lambda: len(self.standin.sent(self.openid)) > before, timeout=60)
        return "\n".join(m["text"]["content"] for m in self.standin.sent(self.openid)[before:]), None


def passive_xml(openid: str, content: str, xml: bytes) -> bytes:
    """What the channel must have sent, with the CreateTime it chose."""
    created = re.search(rb"<CreateTime>(\d+)</CreateTime>", xml)
    assert created, xml
    return ("<xml>"
            f"<ToUserName><![CDATA[{openid}]]></ToUserName>"
            f"<FromUserName><![CDATA[{ACCOUNT}]]></FromUserName>"
            f"<CreateTime>{created.group(1).decode()}</CreateTime>"
            "<MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content>"
            "</xml>").encode()


def check_passive(openid: str, said: str, xml: bytes | None, expected: str) -> None:
    assert said == expected
    if xml is not None:
        assert xml == passive_xml(openid, expected, xml)


async def tracker_events(rasa_url: str, conversation: str) -> list[dict]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        async with s.get(f"{rasa_url}/conversations/{conversation}/tracker",
                         params={"token": API_TOKEN, "include_events": "ALL"}) as r:
            assert r.status == 200
            return (await r.json())["events"]


def ticket_rows(engine, number: str) -> tuple:
    with engine.connect() as conn:
        t = conn.execute(select(tickets.c.id, tickets.c.state, tickets.c.description)
                         .where(tickets.c.number == number)).one()
        reports = [tuple(r) for r in conn.execute(
            select(ticket_reports.c.sender_id, ticket_reports.c.phone, ticket_reports.c.description,
                   ticket_reports.c.channel).where(ticket_reports.c.ticket_id == t.id))]
        events = [tuple(r) for r in conn.execute(
            select(ticket_events.c.kind, ticket_events.c.from_state, ticket_events.c.to_state, ticket_events.c.actor,
                   ticket_events.c.reason).where(ticket_events.c.ticket_id == t.id).order_by(ticket_events.c.seq))]
    return tuple(t), reports, events


def inbound_replies(engine, openid: str) -> list[str | None]:
    with engine.connect() as conn:
        return list(conn.execute(select(wechat_inbound.c.reply).where(wechat_inbound.c.openid == openid)
                                 .order_by(wechat_inbound.c.id)).scalars())


async def _scenario(stack) -> None:
    wx_stack, engine, standin_port, stored = stack
    standin = WeChatStandIn(APPID, SECRET)
    await standin.start(port=standin_port)
    try:
        wx = WeChatServer(wx_stack.webhook, TOKEN, APPID, AES_KEY)
        me, other = Phone(wx, standin, ME), Phone(wx, standin, OTHER)

        # 1. a complaint filed through WeChat, with a phone number
        assert "照片" in (await me.say(COMPLAINT))[0]
        assert "联系电话" in (await me.say("1"))[0]  # 跳过 the photo
        assert "保密" in (await me.say(PHONE))[0]
        assert "请确认您的诉求" in (await me.say("2"))[0]  # 不需要 保密
        said, _ = await me.say("确认提交")
        m = re.search(r"已为您登记，工单号 (QC-\d{6}-\d{4})", said)
        assert m, said
        number = m.group(1)
        (ticket_id, state, description), reports, events = ticket_rows(engine, number)
        assert (state, reports) == ("派单", [(ME, PHONE, COMPLAINT, "wechat")])
        process_feed(ConsoleUnitOfWork(engine), datetime.now(timezone.utc))  # the filing's notices: not counted below
        with engine.connect() as conn:
            created, place = conn.execute(select(tickets.c.created_at, ticket_reports.c.location_text)
                                          .join(ticket_reports, ticket_reports.c.ticket_id == tickets.c.id)
                                          .where(tickets.c.id == ticket_id)).one()
            outbox_before = conn.execute(select(outbox.c.id)).scalars().all()

        # 2. 查看我的信息: this OpenID's ticket, the phone masked
        said, xml = await me.say("查看我的信息")
        expected = ("以下是我们保存的与您当前微信身份有关的信息（电话只显示后4位）：\n\n"
                    f"工单 {number}（生态环境）当前状态：派单\n受理时间：{fmt_time(created)}\n地点：{place}\n"
                    f"您反映的内容：{COMPLAINT}\n联系电话：138****9876\n照片：无\n保密：否\n\n"
                    "对话记录：本次对话中您发送的 6 条消息（电话、身份证号已隐去）。保存期限：工单办结后按规定期限清除个人信息。"
                    "如需删除以上信息，请发送“删除我的信息”。")
        check_passive(ME, said, xml, expected)
        assert PHONE not in said

        # 3. another OpenID typing the phone and the ticket number: nothing of it
        none = ("您当前微信身份名下没有工单，我们没有保存您的电话或照片。\n\n"
                "对话记录：本次对话中您发送的 1 条消息（电话、身份证号已隐去）。保存期限：工单办结后按规定期限清除个人信息。"
                "如需删除以上信息，请发送“删除我的信息”。")
        said, xml = await other.say(f"查看我的信息 我的电话是{PHONE}")
        check_passive(OTHER, said, xml, none)
        said, _ = await other.say(f"导出我的信息 {number}")
        assert PHONE[-4:] not in said and "河边" not in said and "派单" not in said and "生态环境" not in said, said
        said, _ = await other.say(number)  # a bare ticket number: a status question, not theirs
        assert said == f"没有查到工单 {number}，或该工单不是您提交的。为保护隐私，只能查询本人提交的工单。"
        assert ticket_rows(engine, number) == ((ticket_id, state, description), reports, events)
        assert stored(ME) > 0

        # 4. 删除我的信息 → the question → 确认删除 (the button's title) while the ticket is open
        said, xml = await me.say("删除我的信息")
        check_passive(ME, said, xml, (
            "删除后无法恢复：您名下 1 个工单中的电话、照片和描述中的个人信息将被清除（工单的类别、地点和办理记录保留用于统计）"
            "，其中 1 个尚未办结的工单将撤回并关闭，本对话的聊天记录也会删除。确认删除吗？\n1. 确认删除\n2. 不删除\n\n"
            "（回复数字即可选择）"))
        assert any(r and "138****9876" in r for r in inbound_replies(engine, ME))  # the export's answer, kept for retries
        with engine.begin() as conn:  # as if both had subscribed through 公主府社区's QR code
            conn.execute(update(wechat_residents).values(scene_community="150102001001", scene_at=created))
        said, xml = await me.say("确认删除")
        check_passive(ME, said, xml, "已删除您的个人信息：1 个工单已清除个人信息，1 个未办结的工单已撤回关闭，聊天记录已删除。")

        (_, state, description), reports, events = ticket_rows(engine, number)
        assert state == "已撤单"
        assert reports == [(f"anon:{ticket_id}:1", None, COMPLAINT, "wechat")]  # nothing personal in this text
        assert events[-1] == ("撤单", "派单", "已撤单", "resident:erased", WITHDRAW_NOTE)
        assert [e[0] for e in events].count("撤单") == 1

        assert process_feed(ConsoleUnitOfWork(engine), datetime.now(timezone.utc)) >= 1
        with engine.connect() as conn:
            notices = sorted(tuple(r) for r in conn.execute(
                select(outbox.c.ticket_id, outbox.c.kind, outbox.c.recipient, outbox.c.event)
                .where(outbox.c.id.notin_(outbox_before))))
        # the lead unit, the co-handling unit and the street office of the place: 居民撤单
        assert notices == [(ticket_id, "worker", "ecology_environment", "withdrawn"),
                           (ticket_id, "worker", "street:150102001", "withdrawn"),
                           (ticket_id, "worker", "urban_management", "withdrawn")]

        # the transcript: gone from the tracker store, and the channel keeps no answer quoting it
        assert stored(ME) == 0 and stored(OTHER) > 0
        # (read before the HTTP API: Rasa's GET …/tracker starts and stores a new session)
        assert [e for e in await tracker_events(wx_stack.rasa_url, ME) if e.get("event") == "user"] == []
        replies = inbound_replies(engine, ME)
        assert [r for r in replies if r is not None] == [
            "已删除您的个人信息：1 个工单已清除个人信息，1 个未办结的工单已撤回关闭，聊天记录已删除。"], replies
        with engine.connect() as conn:
            scenes = dict(conn.execute(select(wechat_residents.c.openid, wechat_residents.c.scene_community)).all())
        assert scenes == {ME: None, OTHER: "150102001001"}
        # the other resident's conversation stays
        assert len([e for e in await tracker_events(wx_stack.rasa_url, OTHER) if e.get("event") == "user"]) == 3

        # asked again: nothing is left
        said, _ = await me.say("查看我的信息")
        assert said.startswith("您当前微信身份名下没有工单"), said
    finally:
        await standin.close()


def test_export_and_erasure_of_an_open_ticket_over_wechat(stack) -> None:
    asyncio.run(_scenario(stack))

"""The conversation behind a ticket (issue 17): the chat that produced it on the ticket page
(masked per role, escaped), a handler's question to the resident through the outbox, and
the resident's answer — text or photo — attached to the ticket before the assistant sees
it, over the real REST channel. SQLite + PostgreSQL ticket stores."""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from rasa.core.channels.channel import UserMessage
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sanic import Sanic
from sqlalchemy import select
from sqlalchemy.engine import Engine

from actions.followup import ActionTicketUpdate
from bot.channels.answers import AnswerDesk
from bot.channels.rest import RestInput
from bot.console import services as svc
from bot.console.config import ConsoleConfig
from bot.console.notifier import ConsoleChannel, RasaChannel, drain_once
from bot.console.tables import outbox
from bot.console.uow import ConsoleUnitOfWork
from bot.rasa_ext.sqlite_trackerstore import SQLiteTrackerStore
from bot.security.ratelimit import RateLimiter
from bot.services.questions import question_message
from bot.storage.questions import questions
from bot.storage.tables import ticket_events
from bot.uploads import save_photo
from tests.console.helpers import another_client, file, login, make_users, now, post
from tests.console.test_console_notify import FakeRasa
from tests.console.test_console_web import png_bytes
from tests.security.test_rate_limits import close, serve
from tests.wechat.conftest import free_port

pytestmark = pytest.mark.asyncio
SENDER = "rest:resident-1"  # the REST front-end's resident-1 (bot/security/identity.py)


@pytest.fixture
def trackers(tmp_path: Path) -> Path:
    return tmp_path / "trackers-5005.db"


@pytest.fixture
def console_config(upload_dir: Path, trackers: Path) -> ConsoleConfig:
    return ConsoleConfig(notifier=False, upload_dir=upload_dir, tracker_files=str(trackers.parent / "trackers-*.db"))


class Bot:
    """Rasa's on_new_message: records what reached the assistant."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, message: UserMessage) -> None:
        self.texts.append(message.text)
        await message.output_channel.send_text_message(message.sender_id, "助手的回答")


async def record_conversation(path: Path, sender: str, turns: list[Any]) -> None:
    """The conversation as the embedded Rasa server stores it (masked at rest)."""
    store = SQLiteTrackerStore(db=str(path))
    try:
        await store.save(DialogueStateTracker.from_events(sender, turns))
    finally:
        store.close()


def chat(at: float) -> list[Any]:
    return [
        ActionExecuted("action_session_start", timestamp=at),
        SessionStarted(timestamp=at),
        ActionExecuted("action_listen", timestamp=at),
        UserUttered("楼下有人遛狗不牵绳 <b>咬人</b> 我是王小明 电话13847112345", timestamp=at + 1),
        BotUttered("有现场照片吗？", {"buttons": [{"title": "跳过", "payload": "/deny"}]}, timestamp=at + 2),
        UserUttered("/deny", timestamp=at + 3),
        BotUttered("已为您登记，工单号见下。", timestamp=at + 4),
    ]


def turns_html(page: str) -> list[str]:
    return re.findall(r'<li class="turn (\w+)"><span class="who">(.+?)</span> <time>[^<]+</time><p>(.*?)</p></li>',
                      page, re.S)


async def test_the_ticket_page_shows_the_conversation_masked_per_role(
        client: TestClient, engine: Engine, trackers: Path) -> None:
    make_users(engine, ("grid", "root"))
    await record_conversation(trackers, SENDER, chat(time.time() - 60))
    filed = file(engine, "k1", sender=SENDER, confidential=True)
    await login(client, "grid")
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    # a unit on a 保密 ticket: the resident's name masked too; every line escaped, never markup
    assert turns_html(page) == [
        ("resident", "居民", "楼下有人遛狗不牵绳 &lt;b&gt;咬人&lt;/b&gt; 我是*** 电话138****2345"),
        ("assistant", "助手", "有现场照片吗？\n［按钮：跳过］"),
        ("resident", "居民", "［点击：跳过］"),
        ("assistant", "助手", "已为您登记，工单号见下。"),
    ]
    assert "<b>咬人</b>" not in page
    async with another_client(client) as admin:
        await login(admin, "root")
        page = await (await admin.get(f"/console/tickets/{filed.ticket_id}")).text()
    # the admin may see a 保密 resident: the name; the phone stays as stored (masked at rest)
    assert turns_html(page)[0] == ("resident", "居民", "楼下有人遛狗不牵绳 &lt;b&gt;咬人&lt;/b&gt; 我是王小明 电话138****2345")


async def test_a_phone_ticket_has_no_conversation_and_no_question(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid",))
    filed = file(engine, "k1", sender="phone:tok1", channel="phone")
    csrf = await login(client, "grid")
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    assert "电话登记的工单，没有对话记录。" in page and 'name="question"' not in page
    resp = await post(client, f"/console/tickets/{filed.ticket_id}/ask", csrf, question="请补充材料")
    assert resp.status == 409 and "没有可以联系的对话" in await resp.text()
    with engine.connect() as conn:
        assert conn.execute(select(questions)).all() == []


def outbox_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(outbox).where(outbox.c.kind == "resident"))]


def events(engine: Engine, ticket_id: int) -> list[tuple[str, str, str, dict]]:
    with engine.connect() as conn:
        rows = conn.execute(select(ticket_events).where(ticket_events.c.ticket_id == ticket_id)
                            .order_by(ticket_events.c.seq)).all()
    return [(r.kind, r.actor, r.reason, r.data) for r in rows]


async def ask_and_deliver(client: TestClient, engine: Engine, ticket_id: int, question: str,
                          rasa: FakeRasa) -> str:
    """A handler asks on the ticket page; the notifier's feed queues it and delivers it."""
    csrf = await login(client, "grid")
    resp = await post(client, f"/console/tickets/{ticket_id}/ask", csrf, question=question)
    assert resp.status == 303 and resp.headers["Location"] == f"/console/tickets/{ticket_id}?done=ask"
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    async with TestServer(rasa.app()) as server, aiohttp.ClientSession() as http:
        channels = {"console": ConsoleChannel(), "rasa": RasaChannel(str(server.make_url("")), "s3cret", http)}
        await drain_once(lambda: ConsoleUnitOfWork(engine), channels)
    return csrf


async def rest_resident(engine: Engine, bot: Bot):  # noqa: ANN201
    channel = RestInput(limiter=RateLimiter(100, 60, f"rest-{uuid.uuid4().hex}", redis_url=""),
                        answers=AnswerDesk(engine))
    return await serve(channel, bot, "/webhooks/rest")


async def say(base: str, text: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(base + "/webhooks/rest/webhook",
                                                     json={"sender": "resident-1", "message": text}) as r:
        return r.status, await r.json()


async def test_a_question_reaches_the_resident_and_the_text_answer_is_attached(
        client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid",))
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    filed = file(engine, "k1", sender=SENDER)
    rasa = FakeRasa()
    await ask_and_deliver(client, engine, filed.ticket_id, "请拍一张<现场>照片", rasa)
    [message] = outbox_rows(engine)
    assert (message["channel"], message["recipient"], message["event"], message["status"]) == (
        "rasa", SENDER, "question", "sent")
    assert message["payload"] == {"ticket_number": filed.number, "ticket_event": "question", "question": "请拍一张<现场>照片"}
    with engine.connect() as conn:
        [q] = conn.execute(select(questions)).all()
    assert (q.ticket_id, q.sender_id, q.question, q.outbox_id, q.answered_at) == (
        filed.ticket_id, SENDER, "请拍一张<现场>照片", message["id"], None)
    # the Rasa server was asked to tell the resident (trigger_intent, like every resident notice)
    assert rasa.calls[-1]["body"] == {"name": "EXTERNAL_ticket_update", "entities": {
        "ticket_number": filed.number, "ticket_event": "question", "question": "请拍一张<现场>照片"}}
    # ... and the assistant's action says it, only inside WeChat's window (no template message)
    dispatcher = CollectingDispatcher()
    latest = {"intent": {"name": "EXTERNAL_ticket_update"}, "text": "EXTERNAL: EXTERNAL_ticket_update",
              "entities": [{"entity": k, "value": v} for k, v in rasa.calls[-1]["body"]["entities"].items()]}
    assert await ActionTicketUpdate().run(dispatcher, Tracker(SENDER, {}, latest, [], False, None, {}, ""), {}) == []
    [said] = dispatcher.messages
    assert said["text"] == question_message(filed.number, "请拍一张<现场>照片") == (
        f"关于您反映的工单 {filed.number}，工作人员想请您补充：请拍一张<现场>照片\n请直接回复文字，或发送照片。")
    assert said["qc_window_only"] is True

    bot = Bot()
    server, base = await rest_resident(engine, bot)
    try:
        reply = f"已收到，您的回复已补充到工单 {filed.number}，工作人员会继续办理。"
        assert await say(base, "狗在3号楼门口 我电话13900001111") == (200, [{"recipient_id": "resident-1", "text": reply}])
        # the front-end's retry of the same message: the same answer, attached once
        assert await say(base, "狗在3号楼门口 我电话13900001111") == (200, [{"recipient_id": "resident-1", "text": reply}])
        assert bot.texts == []  # the assistant never read it as a new complaint
        assert await say(base, "谢谢") == (200, [{"recipient_id": "resident-1", "text": "助手的回答"}])
        assert bot.texts == ["谢谢"]
    finally:
        await close(server)
    answers = [e for e in events(engine, filed.ticket_id) if e[0] == "居民补充"]
    assert answers == [("居民补充", f"resident:{SENDER}", "狗在3号楼门口 我电话139****1111", {"question_id": q.id})]
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    assert '<p class="why">狗在3号楼门口 我电话139****1111</p>' in page
    assert '<p class="why">请拍一张&lt;现场&gt;照片</p>' in page  # the 询问居民 event, escaped
    assert "请拍一张&lt;现场&gt;照片 — <span class=\"muted delivery\">居民已回复</span>" in page


async def test_a_photo_answer_is_attached_and_shown(client: TestClient, engine: Engine, upload_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_UPLOAD_DIR", str(upload_dir))
    make_users(engine, ("grid", "other"))
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    filed = file(engine, "k1", sender=SENDER)
    await ask_and_deliver(client, engine, filed.ticket_id, "请拍一张现场照片", FakeRasa())
    # the widget / REST front-end uploaded it in this conversation (cleaned: bot/uploads.py)
    name = save_photo(png_bytes(), "png", upload_dir, owner=SENDER)
    bot = Bot()
    server, base = await rest_resident(engine, bot)
    try:
        status, body = await say(base, f'/inform{{"photo": "/widget/photo/{name}"}}')
    finally:
        await close(server)
    assert status == 200 and body[0]["text"].startswith(f"已收到，您的回复已补充到工单 {filed.number}")
    assert bot.texts == []
    with engine.connect() as conn:
        [q] = conn.execute(select(questions)).all()
    assert [e for e in events(engine, filed.ticket_id) if e[0] == "居民补充"] == [
        ("居民补充", f"resident:{SENDER}", "（照片）", {"question_id": q.id, "photo": f"/widget/photo/{name}"})]
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    link = f"/console/tickets/{filed.ticket_id}/answers/{q.id}/photo"
    assert f'<img src="{link}" alt="居民补充的照片"' in page
    photo = await client.get(link)
    assert photo.status == 200 and photo.headers["Content-Type"] == "image/png"
    assert await photo.read() == (upload_dir / name).read_bytes()
    async with another_client(client) as other:  # a street with nothing to do with the ticket
        await login(other, "other")
        assert (await other.get(link)).status == 404


async def test_two_open_questions_the_answer_goes_to_the_latest(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid",))
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    first = file(engine, "k1", sender=SENDER)
    second = file(engine, "k2", sender=SENDER, description="单元门贴满小广告", category="illegal_ads")
    await ask_and_deliver(client, engine, first.ticket_id, "狗是什么颜色？", FakeRasa())
    client.session.cookie_jar.clear()
    await ask_and_deliver(client, engine, second.ticket_id, "小广告贴在几单元？", FakeRasa())
    bot = Bot()
    server, base = await rest_resident(engine, bot)
    try:
        one = await say(base, "2单元")
        two = await say(base, "黑色的")
    finally:
        await close(server)
    assert one == (200, [{"recipient_id": "resident-1", "text":
                          f"已收到，您的回复已补充到工单 {second.number}，工作人员会继续办理。\n"
                          f"工单 {first.number} 的工作人员也在等您回复：狗是什么颜色？\n请再发一条消息回复。"}])
    assert two == (200, [{"recipient_id": "resident-1", "text":
                          f"已收到，您的回复已补充到工单 {first.number}，工作人员会继续办理。"}])
    assert [e[2] for e in events(engine, second.ticket_id) if e[0] == "居民补充"] == ["2单元"]
    assert [e[2] for e in events(engine, first.ticket_id) if e[0] == "居民补充"] == ["黑色的"]
    assert bot.texts == []


async def test_a_question_not_yet_delivered_takes_no_answer(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid",))
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    filed = file(engine, "k1", sender=SENDER)
    csrf = await login(client, "grid")
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/ask", csrf, question="请补充材料")).status == 303
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    assert "请补充材料 — <span class=\"muted delivery\">等待发送</span>" in page
    bot = Bot()
    server, base = await rest_resident(engine, bot)
    try:  # the resident has not seen it: their message is the assistant's
        assert await say(base, "暖气不热") == (200, [{"recipient_id": "resident-1", "text": "助手的回答"}])
    finally:
        await close(server)
    assert bot.texts == ["暖气不热"]


async def test_who_may_ask(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "disp", "other"))
    filed = file(engine, "k1", sender=SENDER, at=now() - timedelta(days=10))
    svc.sweep_overdue(ConsoleUnitOfWork(engine), now())  # overdue: the dispatch centre sees it, with nothing to do
    csrf = await login(client, "disp")
    page = await (await client.get(f"/console/tickets/{filed.ticket_id}")).text()
    assert 'name="question"' not in page
    resp = await post(client, f"/console/tickets/{filed.ticket_id}/ask", csrf, question="请补充材料")
    assert resp.status == 403 and "只有承办本工单的单位、派单中心或管理员可以询问居民" in await resp.text()
    client.session.cookie_jar.clear()
    csrf = await login(client, "other")
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/ask", csrf, question="请补充材料")).status == 404
    client.session.cookie_jar.clear()
    csrf = await login(client, "grid")
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/ask", csrf, question="")).status == 400
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/ask", csrf, question="问" * 501)).status == 400
    assert (await client.post(f"/console/tickets/{filed.ticket_id}/ask", data={"question": "无令牌"},
                              allow_redirects=False)).status == 403  # CSRF
    with engine.connect() as conn:
        assert conn.execute(select(questions)).all() == []
        assert conn.execute(select(ticket_events).where(ticket_events.c.kind == "询问居民")).all() == []


async def test_a_rest_resident_gets_the_question_at_the_next_poll(engine: Engine, trackers: Path) -> None:
    """What the Rasa server keeps after the outbox's trigger_intent (the external intent and the
    action's message) is what GET /webhooks/rest/pushed hands the REST front-end, once."""
    question = question_message("QC-261206-0001", "请拍一张现场照片")
    at = time.time() - 30
    await record_conversation(trackers, SENDER, [
        *chat(at - 100),
        UserUttered("EXTERNAL: EXTERNAL_ticket_update", {"name": "EXTERNAL_ticket_update"}, timestamp=at),
        ActionExecuted("action_ticket_update", timestamp=at),
        BotUttered(question, metadata={"qc_window_only": True}, timestamp=at + 0.5),
    ])
    store = SQLiteTrackerStore(db=str(trackers))
    Sanic.test_mode = True
    app = Sanic(f"pushed_{uuid.uuid4().hex[:12]}")
    app.config.MOTD = False
    app.ctx.agent = SimpleNamespace(tracker_store=store)
    channel = RestInput(limiter=RateLimiter(100, 60, f"rest-{uuid.uuid4().hex}", redis_url=""),
                        answers=AnswerDesk(engine))
    channel.token = "front-end-token"
    app.blueprint(channel.blueprint(Bot()), url_prefix="/webhooks/rest")
    port = free_port()
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False)
    await server.startup()
    url = f"http://127.0.0.1:{port}/webhooks/rest/pushed"
    auth = {"Authorization": "Bearer front-end-token"}
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url, params={"sender": "resident-1"}) as r:
                assert r.status == 401
            async with s.get(url, params={"sender": "resident-1"}, headers=auth) as r:
                first = (r.status, await r.json())
            async with s.get(url, params={"sender": "resident-1", "after": str(first[1][0]["timestamp"])},
                             headers=auth) as r:
                again = (r.status, await r.json())
            async with s.get(url, params={"sender": "bad sender"}, headers=auth) as r:
                assert r.status == 400
    finally:
        await close(server)
        store.close()
    # the answers to the resident's own messages are not repeated; the pushed question is
    assert first == (200, [{"recipient_id": "resident-1", "text": question, "timestamp": at + 0.5}])
    assert again == (200, [])


async def test_retention_removes_the_questions_and_the_answer_photo(client: TestClient, engine: Engine,
                                                                     upload_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No conversation id stays with a closed ticket's questions: the log never held one, the
    question rows and resident notices go, the photo the resident answered with is listed for deletion."""
    from bot.services.questions import take_answer
    from bot.services.tickets import record_follow_up
    from bot.storage.retention import anonymise_ticket
    from bot.storage.uow import SqlAlchemyUnitOfWork
    from bot.text import mask_personal_data
    from bot.uploads import own_photo_name

    monkeypatch.setenv("QC_UPLOAD_DIR", str(upload_dir))
    make_users(engine, ("grid",))
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    filed = file(engine, "k1", sender=SENDER)
    csrf = await ask_and_deliver(client, engine, filed.ticket_id, "请拍一张现场照片", FakeRasa())
    name = save_photo(png_bytes(), "png", upload_dir, owner=SENDER)
    assert take_answer(SqlAlchemyUnitOfWork(engine), SENDER, f'/inform{{"photo": "/widget/photo/{name}"}}', now())
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/accept", csrf)).status == 303
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/resolve", csrf, result="已处理")).status == 303
    assert record_follow_up(SqlAlchemyUnitOfWork(engine), filed.number, SENDER, True, "满意", now()).status == "closed"
    with engine.begin() as conn:
        done = anonymise_ticket(conn, filed.ticket_id, now(), lambda t, a: mask_personal_data(t, True, a),
                                own_photo_name, lambda s: s)
    assert done is not None and done.photos == [name]
    with engine.connect() as conn:
        assert conn.execute(select(questions)).all() == []
        assert conn.execute(select(outbox).where(outbox.c.kind == "resident")).all() == []
    assert all(SENDER not in str(data) for _, actor, _, data in events(engine, filed.ticket_id))

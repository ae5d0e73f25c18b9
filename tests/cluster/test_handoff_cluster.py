"""转人工 in the production cluster: the assistant stays silent while a person holds the
conversation, whichever of the two Rasa servers a message reaches, and after a restart.

A REST resident asks for a person through nginx; an agent (a user this test creates on the
cluster's database) takes the conversation in the console through nginx. The resident's
next messages go straight to each Rasa server (both ports, past nginx): none is answered by
the assistant, the PostgreSQL tracker store gets no user event, handoff_messages keeps each
once, in order. The agent's messages reach the resident once, whichever server is polled.
Rasa server 1 is killed (SIGKILL) and started again, and the web server too, while the
conversation is held: still silent, the agent's console session still works. After the
hand-back the assistant answers again on both servers. Names are unique per run (the
cluster, its queues and tables are shared with the other cluster tests)."""
from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timezone

import aiohttp
from sqlalchemy import func, select

from bot.console import services as csvc
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.handoff import HANDED_BACK_NOTICE, TAKEN_NOTICE
from bot.storage.engine import make_engine
from bot.storage.handoff import handoff_events, handoff_messages, handoffs
from tests.cluster.helpers import check_conversation, stored_events

PASSWORD = "cluster-handoff-" + uuid.uuid4().hex[:12]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Resident:
    """A REST front-end talking for one resident: to nginx or straight to one Rasa server."""

    def __init__(self, session: aiohttp.ClientSession, sender: str) -> None:
        self.session, self.sender = session, sender

    async def say(self, base: str, message: str) -> list[dict]:
        async with self.session.post(f"{base}/webhooks/rest/webhook",
                                     json={"sender": self.sender, "message": message}) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def poll(self, base: str) -> list[dict]:
        async with self.session.get(f"{base}/webhooks/rest/messages", params={"sender": self.sender}) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    def texts(self, texts: list[str]) -> list[dict]:
        return [{"recipient_id": self.sender, "text": t} for t in texts]


class Agent:
    """A 坐席 in the console through nginx: logs in through the form, acts with its CSRF token."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base, self.csrf = session, base, ""

    async def log_in(self, username: str) -> None:
        async with self.session.get(f"{self.base}/console/login") as page:
            token = _CSRF.search(await page.text()).group(1)
        async with self.session.post(f"{self.base}/console/login", allow_redirects=False,
                                     data={"csrf": token, "username": username, "password": PASSWORD}) as r:
            assert r.status == 303, await r.text()
        self.csrf = await self.token()

    async def token(self) -> str:
        async with self.session.get(f"{self.base}/console/handoff", allow_redirects=False) as r:
            assert r.status == 200, await r.text()
            return _CSRF.search(await r.text()).group(1)

    async def act(self, handoff_id: int, action: str, **data: str) -> None:
        async with self.session.post(f"{self.base}/console/handoff/{handoff_id}/{action}", allow_redirects=False,
                                     data={"csrf": self.csrf, **data}) as r:
            assert r.status == 303, (action, r.status, await r.text())

    async def page(self, handoff_id: int) -> str:
        async with self.session.get(f"{self.base}/console/handoff/{handoff_id}") as r:
            assert r.status == 200, await r.text()
            return await r.text()


def _user_texts(env, sender: str) -> list[str]:
    return [e["data"].get("text") for e in stored_events(env, sender) if e["event"] == "user"]


def test_a_person_holds_the_conversation_on_both_rasa_servers_across_restarts(cluster, production_env):
    tag = uuid.uuid4().hex[:8]
    sender, agent_name = f"cluster-handoff-{tag}", f"hoagent{tag}"
    conversation = "rest:" + sender
    engine = make_engine(production_env["QC_DATABASE_URL"])
    csvc.create_user(ConsoleUnitOfWork(engine), agent_name, "小赵", PASSWORD, "agent", (), datetime.now(timezone.utc))
    rasa1, rasa2 = cluster.rasa_urls
    held = [f"暖气不热-{tag}-{i}" for i in range(1, 9)]  # the resident's words while held, unique to this run

    def kept() -> list[tuple[str, str]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(handoff_messages.c.author, handoff_messages.c.text)
                .where(handoff_messages.c.sender_id == conversation, handoff_messages.c.outgoing.is_(False))
                .order_by(handoff_messages.c.id))]

    async def go() -> None:
        jar = aiohttp.CookieJar(unsafe=True)  # the console is on 127.0.0.1: keep its cookies
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as rs, \
                aiohttp.ClientSession(timeout=timeout, cookie_jar=jar) as cs:
            resident, agent = Resident(rs, sender), Agent(cs, cluster.proxy_url)
            with engine.connect() as conn:  # the shared cluster's other tests may have left some waiting
                ahead = conn.execute(select(func.count()).select_from(handoffs).where(
                    handoffs.c.state == "waiting", handoffs.c.language == "")).scalar_one()
            asked = await resident.say(cluster.proxy_url, "我要找人工客服")
            assert asked[0]["text"].startswith(f"正在为您转接人工客服，请稍候。您前面还有 {ahead} 位"), asked
            with engine.connect() as conn:
                [(hid, state, channel, reason)] = conn.execute(
                    select(handoffs.c.id, handoffs.c.state, handoffs.c.channel, handoffs.c.reason)
                    .where(handoffs.c.sender_id == conversation)).all()
            assert (state, channel, reason) == ("waiting", "rest", "asked")
            assert _user_texts(production_env, sender) == ["我要找人工客服"]

            # waiting: each server keeps the message for a person and stays silent
            assert await resident.say(rasa1, held[0]) == []
            assert await resident.say(rasa2, held[1]) == []

            await agent.log_in(agent_name)
            await agent.act(hid, "take")
            taken = TAKEN_NOTICE.format(name="小赵")
            assert await resident.poll(rasa2) == resident.texts([taken])
            assert await resident.poll(rasa1) == []  # delivered once
            await agent.act(hid, "say", text="请问您住哪个小区？")
            assert await resident.poll(rasa1) == resident.texts(["请问您住哪个小区？"])
            assert await resident.poll(rasa2) == []
            assert await resident.say(rasa2, held[2]) == []
            assert await resident.say(rasa1, held[3]) == []
            await agent.act(hid, "say", text="好的，已记下")
            # with the reply to the resident's next message, on the other server: once
            assert await resident.say(rasa2, held[4]) == resident.texts(["好的，已记下"])
            assert await resident.poll(rasa1) == []

            # Rasa server 1 killed while the conversation is held: server 2 keeps it silent ...
            await asyncio.to_thread(cluster.kill, "rasa-1")
            try:
                assert await resident.say(rasa2, held[5]) == []
            finally:
                await asyncio.to_thread(cluster.start_process, "rasa-1")
            # ... and the restarted server 1 reads the same hand-off: still silent
            assert await resident.say(rasa1, held[6]) == []
            await agent.act(hid, "say", text="稍等，正在为您查询")
            assert await resident.poll(rasa1) == resident.texts(["稍等，正在为您查询"])
            assert await resident.poll(rasa2) == []

            # the web server (console) restarted: the agent's session and the hand-off are as they were
            await asyncio.to_thread(cluster.kill, "web")
            await asyncio.to_thread(cluster.start_process, "web", 90)
            assert held[6] in await agent.page(hid)
            assert await resident.say(rasa2, held[7]) == []
            assert _user_texts(production_env, sender) == ["我要找人工客服"]  # nothing reached the tracker
            assert kept() == [("resident", t) for t in held]

            await agent.act(hid, "back")
            back = await resident.say(rasa2, "楼下有人遛狗不牵绳")
            assert back[0] == resident.texts([HANDED_BACK_NOTICE])[0] and len(back) >= 2, back
            assert HANDED_BACK_NOTICE not in [m.get("text") for m in back[1:]]  # the assistant itself, once
            again = await resident.say(rasa1, "在海拉尔东路街道")
            assert again and HANDED_BACK_NOTICE not in [m.get("text") for m in again], again

    try:
        asyncio.run(go())
        events = stored_events(production_env, sender)
        users = [e["data"].get("text") for e in events if e["event"] == "user"]
        assert users == ["我要找人工客服", "楼下有人遛狗不牵绳", "在海拉尔东路街道"]
        assert check_conversation(events, users) == []
        assert kept() == [("resident", t) for t in held]  # each once, in order; nothing after the hand-back
        with engine.connect() as conn:
            [hid] = conn.execute(select(handoffs.c.id).where(handoffs.c.sender_id == conversation)).scalars().all()
            state = conn.execute(select(handoffs.c.state).where(handoffs.c.id == hid)).scalar_one()
            out = conn.execute(select(handoff_messages.c.text, handoff_messages.c.delivered_at.is_not(None))
                               .where(handoff_messages.c.handoff_id == hid, handoff_messages.c.outgoing.is_(True))
                               .order_by(handoff_messages.c.id)).all()
            steps = conn.execute(select(handoff_events.c.kind, handoff_events.c.actor)
                                 .where(handoff_events.c.handoff_id == hid).order_by(handoff_events.c.id)).all()
        assert state == "returned"
        assert [tuple(r) for r in out] == [(TAKEN_NOTICE.format(name="小赵"), True), ("请问您住哪个小区？", True),
                                           ("好的，已记下", True), ("稍等，正在为您查询", True),
                                           (HANDED_BACK_NOTICE, True)]
        actor = f"user:{agent_name}"
        assert [tuple(s) for s in steps] == [("转人工", "system"), ("接入", actor), ("交还", actor)]
    finally:
        engine.dispose()


def test_a_message_queued_behind_the_request_for_a_person_is_kept_for_the_person(cluster, production_env):
    """The resident writes again while 我要找人工客服 is still being answered (the two messages on
    the two Rasa servers): the second one passed the hand-off check before the hand-off existed
    and waited for the conversation's lock. Made deterministic by holding the lock (the Redis
    lock store's ticket) until both messages queue behind it. Checked: the second message is
    kept for the person, the assistant silent; the tracker store holds only the first."""
    from urllib.parse import urlsplit

    from bot.rasa_ext.lockstore import AtomicRedisLockStore

    tag = uuid.uuid4().hex[:8]
    sender = f"cluster-handoff-queued-{tag}"
    conversation = "rest:" + sender
    u = urlsplit(production_env["QC_REDIS_URL"])
    store = AtomicRedisLockStore(host=u.hostname, port=u.port or 6379, db=int(u.path.lstrip("/") or 1),
                                 key_prefix=production_env["QC_LOCK_PREFIX"])
    engine = make_engine(production_env["QC_DATABASE_URL"])
    rasa1, rasa2 = cluster.rasa_urls

    async def queued(n: int) -> None:
        while len(store.get_or_create_lock(conversation).tickets) < n:
            await asyncio.sleep(0.05)

    async def go():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            resident = Resident(s, sender)
            ticket = store.issue_ticket(conversation, 60)
            try:
                first = asyncio.ensure_future(resident.say(rasa1, "我要找人工客服"))
                await asyncio.wait_for(queued(2), 60)
                second = asyncio.ensure_future(resident.say(rasa2, f"快点来人-{tag}"))
                await asyncio.wait_for(queued(3), 60)
            finally:
                store.finish_serving(conversation, ticket)
            return await first, await second

    try:
        asked, then = asyncio.run(go())
        assert asked[0]["text"].startswith("正在为您转接人工客服"), asked
        assert then == [], then
        assert _user_texts(production_env, sender) == ["我要找人工客服"]
        with engine.connect() as conn:
            kept = conn.execute(select(handoff_messages.c.text).where(
                handoff_messages.c.sender_id == conversation, handoff_messages.c.outgoing.is_(False))
                .order_by(handoff_messages.c.id)).scalars().all()
        assert kept == [f"快点来人-{tag}"]
    finally:
        engine.dispose()

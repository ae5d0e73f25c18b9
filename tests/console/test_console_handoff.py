"""转人工 in the console over HTTP, on SQLite and PostgreSQL: the queue (longest-waiting first,
with the reason), 12 agents taking one conversation at once with one winner, the chat both
ways through the resident's channel store, masking, hand-back, and an agent's languages."""
from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console import services as csvc
from bot.console.config import ConsoleConfig
from bot.domain.handoff import HANDED_BACK_NOTICE, ServiceHours
from bot.services import handoff
from bot.storage.handoff import handoff_events, handoffs
from bot.storage.uow import SqlAlchemyUnitOfWork
from tests.console.helpers import PASSWORD, another_client, login, make_users, post, uow

pytestmark = pytest.mark.asyncio
ALWAYS = ServiceHours(time(0, 0), time(23, 59, 59), timedelta(minutes=10))


@pytest.fixture(autouse=True)
def always_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(handoff.HOURS_ENV, "00:00-23:59")  # the queue page's 留言 sweep uses the real clock


@pytest.fixture
def console_config(upload_dir: Path) -> ConsoleConfig:
    # 坐席 may not see phones here: the transcript shows them masked
    return ConsoleConfig(notifier=False, upload_dir=upload_dir, phone_roles=frozenset({"admin"}))


def agents(engine: Engine, n: int, languages: str = "zh") -> list[str]:
    names = [f"agent{i}" for i in range(n)]
    for name in names:
        user_id = csvc.create_user(uow(engine), name, f"坐席{name[5:]}", PASSWORD, "agent", (), datetime.now(timezone.utc))
        with engine.begin() as conn:
            from bot.console.tables import users
            conn.execute(users.update().where(users.c.id == user_id).values(languages=languages))
    return names


def ask(engine: Engine, sender: str, reason: str, at: datetime) -> int:
    h, _ = handoff.request(SqlAlchemyUnitOfWork(engine), sender, "rest", reason, at, ALWAYS)
    assert h.id is not None
    return h.id


def resident(engine: Engine, sender: str, text: str) -> handoff.Gate:
    return handoff.resident_message(SqlAlchemyUnitOfWork(engine), sender, text, datetime.now(timezone.utc), ALWAYS)


async def test_queue_take_chat_and_hand_back(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "root"))
    [a0] = agents(engine, 1)
    now = datetime.now(timezone.utc)
    later = ask(engine, "rest:r2", "not_understood", now - timedelta(minutes=1))
    first = ask(engine, "rest:r1", "asked", now - timedelta(minutes=3))
    mongolian = ask(engine, "rest:m1", "mongolian", now - timedelta(minutes=5))
    assert resident(engine, "rest:r1", "我的电话13847112345，暖气不热") == handoff.Gate(True, [])
    csrf = await login(client, a0)
    page = await (await client.get("/console/handoff")).text()
    rows = re.findall(r'data-handoff="(\d+)"', page)
    assert rows == [str(first), str(later)]  # longest-waiting first; the Mongolian one is not this agent's
    assert "居民要求人工服务" in page and "助手连续两次没听懂" in page
    assert (await client.get(f"/console/handoff/{mongolian}")).status == 404
    assert (await post(client, f"/console/handoff/{mongolian}/take", csrf)).status == 404
    assert (await post(client, f"/console/handoff/{first}/take", csrf)).status == 303
    convo = await (await client.get(f"/console/handoff/{first}")).text()
    assert "138****2345" in convo and "13847112345" not in convo  # masked for a role without phones
    assert (await post(client, f"/console/handoff/{first}/say", csrf, text="您好，请问是哪个小区？")).status == 303
    assert (await post(client, f"/console/handoff/{first}/say", csrf, text="  ")).status == 400
    # the resident's next message: kept for the agent, the agent's words come back, the assistant is silent
    assert resident(engine, "rest:r1", "锦绣小区") == handoff.Gate(
        True, ["工作人员坐席0已接入，请问有什么可以帮您？", "您好，请问是哪个小区？"])
    assert "锦绣小区" in await (await client.get(f"/console/handoff/{first}")).text()
    assert (await post(client, f"/console/handoff/{first}/back", csrf)).status == 303
    assert resident(engine, "rest:r1", "谢谢") == handoff.Gate(False, [HANDED_BACK_NOTICE])
    with engine.connect() as conn:
        steps = conn.execute(select(handoff_events.c.kind, handoff_events.c.actor)
                             .where(handoff_events.c.handoff_id == first).order_by(handoff_events.c.id)).all()
    assert [tuple(s) for s in steps] == [("转人工", "system"), ("接入", f"user:{a0}"), ("交还", f"user:{a0}")]
    # a worker has no such page; an admin sees every language
    async with another_client(client) as other:
        await login(other, "grid")
        assert (await other.get("/console/handoff")).status == 404
        await login(other, "root")
        assert str(mongolian) in re.findall(r'data-handoff="(\d+)"', await (await other.get("/console/handoff")).text())


async def test_twelve_agents_take_one_conversation_at_once(client: TestClient, engine: Engine) -> None:
    names = agents(engine, 12)
    target = ask(engine, "rest:r1", "asked", datetime.now(timezone.utc))
    async with AsyncExitStack() as stack:
        browsers = [await stack.enter_async_context(another_client(client)) for _ in names]
        tokens = [await login(b, name) for b, name in zip(browsers, names)]
        answers = await asyncio.gather(*(post(b, f"/console/handoff/{target}/take", t)
                                         for b, t in zip(browsers, tokens)))
        statuses = [a.status for a in answers]
        bodies = [await a.text() for a in answers]
    assert sorted(statuses) == [303] + [409] * 11
    with engine.connect() as conn:
        holder = conn.execute(select(handoffs.c.agent).where(handoffs.c.id == target)).scalar_one()
        takes = conn.execute(select(handoff_events.c.actor).where(handoff_events.c.kind == "接入")).scalars().all()
    assert takes == [holder]
    for status, body in zip(statuses, bodies):
        if status == 409:
            assert f"该会话已由 {holder[5:]} 接入（人工服务中）。" in body


async def test_an_agent_lands_on_the_handoff_queue(client: TestClient, engine: Engine) -> None:
    """A 坐席's home page is the 转人工 queue (log-in without a next page, and /console/); the
    other roles still land on the ticket queue; a demo 坐席 is seeded with the other demo accounts."""
    make_users(engine, ("grid",))
    agents(engine, 1)
    for user, home in (("agent0", "/console/handoff"), ("grid", "/console/queue")):
        async with another_client(client) as browser:
            page = await browser.get("/console/login")
            token = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
            resp = await browser.post("/console/login", data={"csrf": token, "username": user, "password": PASSWORD},
                                      allow_redirects=False)
            assert (resp.status, resp.headers["Location"]) == (303, home)
            again = await browser.get("/console/", allow_redirects=False)
            assert (again.status, again.headers["Location"]) == (303, home)
            # the header leads only to pages the role has something on: a 坐席 has no ticket queue,
            # no ticket notices and no dashboard of its own (those pages would be empty)
            header = (await (await browser.get(home)).text()).split("</nav>", 1)[0]
            assert re.findall(r'<a (?:class="brand" )?href="([^"]+)"', header) == (
                ["/console/handoff", "/console/handoff"] if user == "agent0"
                else ["/console/queue", "/console/queue", "/console/notices", "/console/dashboard"])
    created = csvc.seed_demo_accounts(uow(engine), datetime.now(timezone.utc))
    assert [(name, role) for name, _, role, _ in created if role == "agent"] == [("agent", "agent")]


async def test_a_phone_role_reads_the_transcript_masked_and_gets_the_number_only_in_the_filing_form(
    client: TestClient, engine: Engine
) -> None:
    """The outside tester: an agent whose role may see phones read the resident's phone and ID
    number in full, with no reveal and no log. The transcript is masked for every role; the
    number the resident gave fills the 代登记 form's phone field (where the ticket keeps it)."""
    [name] = agents(engine, 1)
    with engine.begin() as conn:  # this console lets admins see phones: make the agent an admin
        from bot.console.tables import users
        conn.execute(users.update().where(users.c.username == name).values(role="admin"))
    hid = ask(engine, "rest:r-erin", "asked", datetime.now(timezone.utc))
    resident(engine, "rest:r-erin", "我的电话是13700002222，身份证110101199003071234")
    csrf = await login(client, name)
    assert (await post(client, f"/console/handoff/{hid}/take", csrf)).status == 303
    page = await (await client.get(f"/console/handoff/{hid}")).text()
    assert "13700002222" not in page.replace('name="phone" maxlength="32" inputmode="tel" value="13700002222"', "")
    assert "110101199003071234" not in page
    assert "我的电话是137****2222，身份证110***********1234" in page
    assert 'name="phone" maxlength="32" inputmode="tel" value="13700002222"' in page
    description = re.search(r'<textarea name="description"[^>]*>([^<]*)</textarea>', page)
    assert description and "137****2222" in description.group(1) and "13700002222" not in description.group(1)

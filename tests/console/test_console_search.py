"""Finding any ticket (issue 18): search and filters on the queue pages, server-side and paged,
on SQLite and PostgreSQL alike (the `engine` fixture runs each test on both, and each test
expects the exact same tickets on both), the phone rule, escaping, and the CSV export."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from alembic import command
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console.config import ConsoleConfig
from bot.domain.model import ComplaintDraft, Route
from bot.services.tickets import FilingResult, file_complaint
from bot.storage.engine import alembic_config, init_db
from bot.storage.tables import ticket_search
from tests.console.helpers import OTHER_STREET, STREET, another_client, login, make_users, now, post, route, uow

pytestmark = pytest.mark.asyncio
NUMBER = re.compile(r'<span class="number">([^<]+)</span>')


def file(
    engine: Engine,
    key: str,
    description: str,
    *,
    phone: str | None = "13800000000",
    confidential: bool = False,
    category: str = "dog",
    street: str | None = STREET,
    lead: str = "police_dog",
    days_ago: float = 0,
) -> FilingResult:
    draft = ComplaintDraft(
        sender_id=f"resident-{key}", channel="rest", category=category, description=description,
        location_text="公主府社区3号楼", photo=None, phone=phone, confidential=confidential, idempotency_key=key,
    )
    r = route(street, lead=lead)
    r = Route(r.lead, r.co, r.district_code, r.street_code, None, r.dispatch_class, r.reason)  # never merged
    return file_complaint(uow(engine), draft, r, now() - timedelta(days=days_ago))


async def found(client: TestClient, status: int = 200, **query: str) -> list[str]:
    resp = await client.get("/console/queue?" + urlencode({"view": "all", **query}))
    body = await resp.text()
    assert resp.status == status, body
    return sorted(NUMBER.findall(body))


async def test_words_are_found_by_jieba_on_both_databases(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    dog = file(engine, "a", "小区门口有人遛狗不牵绳，狗还咬人")
    noise = file(engine, "b", "楼上装修噪音扰民", category="noise")
    dog2 = file(engine, "c", "晚上遛狗的人很多")
    file(engine, "d", "路灯不亮", category="roads_lighting")
    await login(client, "root")
    assert await found(client, q="遛狗") == sorted([dog.number, dog2.number])
    assert await found(client, q="牵绳") == [dog.number]  # a part of 不牵绳 (search mode)
    assert await found(client, q="遛狗不牵绳") == [dog.number]  # every word must match
    assert await found(client, q="噪音") == [noise.number]
    assert await found(client, q="小狗") == []
    # The search box and the result count show what was asked.
    page = await (await client.get("/console/queue?view=all&q=遛狗")).text()
    assert 'name="q" value="遛狗"' in page and "找到 2 张工单。" in page


async def test_ticket_numbers_whole_and_partial_within_the_users_queues(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "root"))
    mine = [file(engine, f"m{i}", "遛狗不牵绳") for i in range(3)]
    theirs = file(engine, "t", "遛狗不牵绳", street=OTHER_STREET)
    await login(client, "grid")
    assert await found(client, number=mine[1].number) == [mine[1].number]
    assert await found(client, number=mine[1].number.lower().replace("-", " ")) == [mine[1].number]
    assert await found(client, number=mine[2].number[-4:]) == [mine[2].number]
    assert await found(client, number=mine[0].number[:9]) == sorted(t.number for t in mine)  # QC-YYMMDD
    # A worker never finds another queue's ticket, not even by its exact number, nor by words.
    assert await found(client, number=theirs.number) == []
    assert await found(client, number=theirs.number[-4:]) == []
    assert await found(client, q="遛狗") == sorted(t.number for t in mine)
    async with logged_in(client, "root") as admin:
        assert await found(admin, number=theirs.number) == [theirs.number]


@asynccontextmanager
async def logged_in(client: TestClient, username: str) -> AsyncIterator[TestClient]:
    """A second browser on the same server, logged in as `username`."""
    async with another_client(client) as other:
        await login(other, username)
        yield other


async def test_a_merged_residents_words_are_found(client: TestClient, engine: Engine) -> None:
    # the outside console tester: only the first report's description was searchable
    make_users(engine, ("root",))
    first = file_complaint(uow(engine), ComplaintDraft(
        sender_id="resident-m1", channel="rest", category="dog", description="小区里有人遛狗不牵绳",
        location_text="公主府社区3号楼", photo=None, phone=None, confidential=False, idempotency_key="m1"),
        route(STREET, lead="police_dog"), now())
    merged = file_complaint(uow(engine), ComplaintDraft(
        sender_id="resident-m2", channel="rest", category="dog", description="那条狗在楼道里追着孩子跑",
        location_text="公主府社区", photo=None, phone=None, confidential=False, idempotency_key="m2"),
        route(STREET, lead="police_dog"), now())
    assert merged.merged and merged.number == first.number
    await login(client, "root")
    assert await found(client, q="楼道") == [first.number]
    assert await found(client, q="牵绳") == [first.number]


async def test_phone_search_follows_the_phone_rule(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "dog", "root"))
    plain = file(engine, "p1", "遛狗", phone="13847111234")
    other = file(engine, "p2", "遛狗", phone="13847115678")
    secret = file(engine, "p3", "遛狗", phone="13900001234", confidential=True)
    file(engine, "p4", "遛狗", phone=None)
    await login(client, "grid")
    # 保密: a worker's phone search leaves the ticket out; the department's too; an admin finds it.
    assert await found(client, phone="1234") == [plain.number]
    assert await found(client, phone="5678") == [other.number]
    assert await found(client, phone="0000") == []
    resp = await client.get("/console/queue?view=all&phone=12a4")
    assert resp.status == 400 and "请输入居民手机号的后四位（4 位数字）。" in await resp.text()
    async with logged_in(client, "dog") as dog:
        assert await found(dog, phone="1234") == [plain.number]
    async with logged_in(client, "root") as admin:
        assert await found(admin, phone="1234") == sorted([plain.number, secret.number])


@pytest.mark.parametrize("console_config", [ConsoleConfig(notifier=False, phone_roles=frozenset({"dispatcher", "admin"}))])
async def test_a_phone_search_is_refused_to_a_role_qc_phone_roles_leaves_out(client: TestClient, engine: Engine) -> None:
    # the same rule as showing and revealing phones: a role that may not is refused, never matched silently
    make_users(engine, ("grid",))
    file(engine, "p1", "遛狗", phone="13847111234")
    await login(client, "grid")
    resp = await client.get("/console/queue?view=all&phone=1234")
    body = await resp.text()
    assert resp.status == 403 and "您的角色无权按居民手机号查找工单。" in body
    assert NUMBER.findall(body) == [] and 'name="phone"' not in body


async def test_filters(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "root"))
    old = file(engine, "f1", "遛狗", days_ago=30)
    late = file(engine, "f2", "遛狗", days_ago=20, category="noise")
    svc.sweep_overdue(uow(engine), now())  # 督办 for both
    late_unflagged = file(engine, "f3", "遛狗", days_ago=25)
    fresh = file(engine, "f4", "遛狗", category="noise", lead="urban_management")
    elsewhere = file(engine, "f5", "遛狗", street=OTHER_STREET, category="noise")
    csrf = await login(client, "grid")
    assert (await post(client, f"/console/tickets/{fresh.ticket_id}/accept", csrf)).status == 303
    async with logged_in(client, "root") as admin:
        everyone = sorted(t.number for t in (old, late, late_unflagged, fresh, elsewhere))
        assert await found(admin) == everyone
        assert await found(admin, category="noise") == sorted([late.number, fresh.number, elsewhere.number])
        assert await found(admin, place=OTHER_STREET) == [elsewhere.number]
        assert await found(admin, place=STREET, category="noise") == sorted([late.number, fresh.number])
        assert await found(admin, lead="urban_management") == [fresh.number]
        assert await found(admin, state="签收") == [fresh.number]
        assert await found(admin, overdue="1") == sorted([old.number, late.number, late_unflagged.number])
        assert await found(admin, supervised="1") == sorted([old.number, late.number])
        day = (now() + timedelta(hours=8)).date()  # Hohhot's today
        assert await found(admin, **{"from": str(day - timedelta(days=22))}) == sorted(
            [late.number, fresh.number, elsewhere.number])
        assert await found(admin, **{"from": str(day - timedelta(days=26)), "to": str(day - timedelta(days=21))}) == [
            late_unflagged.number]
        assert await found(admin, status=400, **{"from": str(day), "to": str(day - timedelta(days=1))}) == []
        for bad in ({"category": "nope"}, {"place": "abc"}, {"lead": "nobody"}, {"state": "x"}, {"from": "2026-13-01"},
                    {"to": "9999-12-31"}, {"number": "QC\x00"}, {"q": "遛狗\x00"}):
            assert await found(admin, status=400, **bad) == []
        # The tabs count what the search finds.
        page = await (await admin.get("/console/queue?view=all&category=noise")).text()
        assert re.search(r'category=noise" aria-current="page">全部 <span class="count">3</span>', page)


async def test_paging_keeps_the_search(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    wanted = [file(engine, f"w{i}", f"第{i}次遛狗不牵绳").number for i in range(svc.PAGE_SIZE + 3)]
    file(engine, "other", "噪音扰民", category="noise")
    await login(client, "root")
    first = await (await client.get("/console/queue?view=all&q=遛狗")).text()
    assert "1 / 2" in first and 'href="?view=all&amp;page=2&amp;q=%E9%81%9B%E7%8B%97"' in first
    second = await found(client, q="遛狗", page="2")
    assert len(NUMBER.findall(first)) == svc.PAGE_SIZE and len(second) == 3
    assert sorted(NUMBER.findall(first) + second) == sorted(wanted)


@pytest.mark.parametrize(
    "query",
    [
        {"number": "%"}, {"number": "_"}, {"number": "QC%"}, {"number": "\\"},
        {"q": "%"}, {"q": "_"}, {"q": '"'}, {"q": "*"}, {"q": "遛狗 OR 噪音"}, {"q": "NEAR(遛狗 噪音)"},
        {"q": "words:遛狗"}, {"q": "遛 AND 噪"}, {"q": "'; DROP TABLE tickets; --"},
    ],
)
async def test_like_and_fts_syntax_is_plain_text(client: TestClient, engine: Engine, query: dict) -> None:
    make_users(engine, ("root",))
    file(engine, "x1", "有人遛狗不牵绳")
    file(engine, "x2", "噪音扰民", category="noise")
    await login(client, "root")
    assert await found(client, **query) == []


async def test_fts_operators_around_a_word_do_not_change_it(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    dog = file(engine, "y1", "有人遛狗不牵绳 100%_a")
    file(engine, "y2", "遛弯的老人")
    await login(client, "root")
    for q in ("遛狗*", "^遛狗", '"遛狗"', "(遛狗)", "遛狗:", "100%", "a"):
        assert await found(client, q=q) == [dog.number], q
    page = await (await client.get("/console/queue?" + urlencode({"q": "<script>alert(1)</script>"}))).text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_export_honours_the_search(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root", "grid"))
    dog = file(engine, "e1", "有人遛狗不牵绳")
    file(engine, "e2", "噪音扰民", category="noise")
    dog2 = file(engine, "e3", "遛狗", street=OTHER_STREET)
    await login(client, "root")
    page = await (await client.get("/console/queue?view=all&q=遛狗")).text()
    link = re.search(r'href="(/console/export/tickets\.csv\?[^"]+)"', page)
    assert link and link.group(1).replace("&amp;", "&") == "/console/export/tickets.csv?view=all&q=%E9%81%9B%E7%8B%97"

    async def rows(url: str) -> list[tuple[str, str]]:
        resp = await client.get(url)
        assert resp.status == 200
        table = list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
        return [(r["number"], r["description"]) for r in table]

    assert await rows(link.group(1).replace("&amp;", "&")) == [(dog.number, "有人遛狗不牵绳"), (dog2.number, "遛狗")]
    assert await rows("/console/export/tickets.csv?view=all&q=遛狗&place=" + OTHER_STREET) == [(dog2.number, "遛狗")]
    assert len(await rows("/console/export/tickets.csv")) == 3  # no search: the whole table, as before
    assert (await client.get("/console/export/tickets.csv?category=nope")).status == 400
    async with logged_in(client, "grid") as worker:
        assert (await worker.get("/console/export/tickets.csv?q=遛狗")).status == 404  # admins only, as before


async def test_the_index_follows_the_description_and_is_backfilled(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    dog = file(engine, "i1", "有人遛狗不牵绳")
    with uow(engine) as u:
        ticket = u.tickets.get(dog.ticket_id)
        ticket.description = "井盖丢失"
        u.tickets.save_events(ticket)
        u.commit()
    await login(client, "root")
    assert await found(client, q="井盖") == [dog.number]  # the ticket's new words
    assert await found(client, q="遛狗") == [dog.number]  # and the resident's, in their report
    # Tickets filed before the search existed are indexed by the migration.
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0008_retention")
    init_db(engine)
    with engine.connect() as conn:
        assert conn.execute(select(ticket_search.c.words)).scalars().all() == [["井盖", "丢失"]]
    assert await found(client, q="井盖") == [dog.number]

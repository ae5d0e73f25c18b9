"""来电登记 at the HTTP level, on SQLite and PostgreSQL: the proposal (from a stand-in for the
Rasa server's /model/parse answering what the real model answered, tests/data/parses/intake.json),
filing exactly once per form, the correction reaching the review inbox, the form's refusals,
and who may use the page."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.console.config import ConsoleConfig
from bot.console.http import CONSOLE_CONFIG, CONSOLE_ENGINE
from bot.retraining.tables import review_items
from bot.storage.tables import ticket_events, ticket_reports, tickets
from bot.web.app import init_app
from bot.web.keys import Settings
from tests.console.helpers import another_client, csrf_of, login, make_users, post

pytestmark = pytest.mark.asyncio

REPO = Path(__file__).resolve().parents[2]
PARSES = json.loads((REPO / "tests" / "data" / "parses" / "intake.json").read_text(encoding="utf-8"))["parses"]
NLU_TOKEN = "nlu-token-for-tests"
WORDS = "楼下有人遛狗不牵绳"
PLACE = "新城区公主府社区"
STREET, COMMUNITY = "150102001", "150102001001"  # 海拉尔东路街道, 公主府社区
TOKEN_RE = re.compile(r'name="form_token" value="([^"]+)"')


class StandIn:
    """The Rasa server's /model/parse as far as the console uses it: the recorded answer for
    a recorded text, 404 for any other; what it was asked is kept."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    async def parse(self, request: web.Request) -> web.Response:
        text = (await request.json())["text"]
        self.asked.append((text, request.query.get("token")))
        if request.query.get("token") != NLU_TOKEN:
            return web.json_response({"message": "unauthorized"}, status=401)
        if text == f"{PLACE} 乱码":  # a server answering 200 with something that is no parse
            return web.json_response({"intent": "dog", "entities": "新城区"})
        if text not in PARSES:
            return web.json_response({"message": "not recorded"}, status=404)
        return web.json_response(PARSES[text])


@pytest_asyncio.fixture
async def nlu() -> AsyncIterator[tuple[StandIn, str]]:
    stand_in = StandIn()
    app = web.Application()
    app.router.add_post("/model/parse", stand_in.parse)
    async with TestServer(app) as server:
        yield stand_in, str(server.make_url("")).rstrip("/")


async def _client(engine: Engine, upload_dir: Path, rasa_url: str) -> TestClient:
    app = init_app(Settings(database_url=str(engine.url), rasa_url=rasa_url))
    app[CONSOLE_ENGINE] = engine
    app[CONSOLE_CONFIG] = ConsoleConfig(notifier=False, upload_dir=upload_dir, rasa_token=NLU_TOKEN)
    return TestClient(TestServer(app))


@pytest_asyncio.fixture
async def client(engine: Engine, upload_dir: Path, nlu: tuple[StandIn, str]) -> AsyncIterator[TestClient]:
    async with await _client(engine, upload_dir, nlu[1]) as c:
        make_users(engine, ("disp", "root", "grid", "dog"))
        yield c


async def form_of(client: TestClient) -> tuple[str, str]:
    """(csrf, form token) of a fresh 来电登记 page."""
    page = await client.get("/console/intake")
    assert page.status == 200
    html = await page.text()
    return csrf_of(html), TOKEN_RE.search(html).group(1)


def call(token: str, **overrides: str) -> dict[str, str]:
    values = {"form_token": token, "description": WORDS, "place": PLACE + "3号楼", "phone": "138 4711 5678",
              "category": "dog", "street": STREET, "community": COMMUNITY,
              "proposed_category": "dog", "proposed_street": STREET}
    values.update(overrides)
    return values


def rows(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


# --- the proposal ------------------------------------------------------------------------------


async def test_the_proposal_is_the_explainers_reading_of_the_recorded_parse(
    client: TestClient, nlu: tuple[StandIn, str]
) -> None:
    await login(client, "disp")
    resp = await client.get("/console/intake/proposal", params={"text": f" {WORDS} ", "place": PLACE})
    assert resp.status == 200
    assert await resp.json() == {
        "available": True,
        "category": "dog",
        "category_name": "文明养犬",
        "confidence": round(PARSES[f"{PLACE} {WORDS}"]["intent"]["confidence"], 4),
        "location_status": "resolved",
        "places": ["新城区", "公主府社区"],
        "street": STREET,
        "street_name": "新城区 海拉尔东路街道",
        "community": COMMUNITY,
        "community_name": "公主府社区居委会",
        "lead": "police_dog",
        "lead_name": "市公安局养犬管理",
        "manual": False,
        "co_names": ["市城市管理综合执法局", "海拉尔东路街道"],
        "reason": "类别 文明养犬；主办 市公安局养犬管理；属地 海拉尔东路街道（新城区）；时限 一般 签收1个工作日，办结5个工作日",
    }
    # the place and the words as one message, as a resident writes it; with the console's token
    assert nlu[0].asked == [(f"{PLACE} {WORDS}", NLU_TOKEN)]

    # an answer that is no parse, or an error status: the operator picks by hand
    for words in ("乱码", "没有录制的话"):
        odd = await client.get("/console/intake/proposal", params={"text": words, "place": PLACE})
        assert (odd.status, (await odd.json())["available"]) == (200, False)
    nlu[0].asked[1:] = []

    # nothing typed yet: nothing asked
    empty = await client.get("/console/intake/proposal", params={"text": "  ", "place": PLACE})
    assert (empty.status, await empty.json()) == (200, {"available": True, "category": None})
    assert len(nlu[0].asked) == 1


async def test_without_the_nlu_server_the_page_says_so_and_files_by_hand(
    engine: Engine, upload_dir: Path
) -> None:
    make_users(engine, ("disp",))
    async with await _client(engine, upload_dir, "http://127.0.0.1:9") as client:  # nothing listens there
        await login(client, "disp")
        resp = await client.get("/console/intake/proposal", params={"text": WORDS, "place": PLACE})
        assert (resp.status, await resp.json()) == (
            200, {"available": False, "message": "自动建议暂不可用（模型服务未连接），请手动选择类别和街道。"})
        csrf, token = await form_of(client)
        filed = await post(client, "/console/intake", csrf,
                           **call(token, proposed_category="", proposed_street="", community="", street=""))
        assert filed.status == 303
    [ticket] = rows(engine, tickets)
    # no street chosen: the dispatch centre routes it by hand
    assert (ticket["category"], ticket["lead_queue"], ticket["street_code"], ticket["state"]) == (
        "dog", "dispatch_center", None, "受理")
    assert count(engine, review_items) == 0


# --- filing -----------------------------------------------------------------------------------


async def test_a_call_is_filed_as_one_phone_ticket_on_the_chosen_route(client: TestClient, engine: Engine) -> None:
    await login(client, "disp")
    csrf, token = await form_of(client)

    resp = await post(client, "/console/intake", csrf, **call(token, confidential="1"))

    assert resp.status == 303
    [ticket] = rows(engine, tickets)
    assert resp.headers["Location"] == f"/console/intake?filed={ticket['number']}"
    assert {k: ticket[k] for k in ("category", "description", "location_text", "district_code", "street_code",
                                   "community_code", "lead_queue", "co_queues", "state")} == {
        "category": "dog", "description": WORDS, "location_text": PLACE + "3号楼", "district_code": "150102",
        "street_code": STREET, "community_code": COMMUNITY, "lead_queue": "police_dog",
        "co_queues": ["urban_management", f"street:{STREET}"], "state": "派单"}
    [report] = rows(engine, ticket_reports)
    assert {k: report[k] for k in ("ticket_id", "sender_id", "channel", "phone", "confidential", "idempotency_key",
                                   "photo", "description")} == {
        "ticket_id": ticket["id"], "sender_id": f"phone:{token}", "channel": "phone", "phone": "13847115678",
        "confidential": True, "idempotency_key": f"phone:{token}", "photo": None, "description": WORDS}
    events = rows(engine, ticket_events)
    assert [(e["kind"], e["actor"], e["data"]) for e in events] == [
        ("受理", f"resident:phone:{token}", {"channel": "phone", "taken_by": "user:disp"}),
        ("派单", "system:router", {"lead": "police_dog", "co": ["urban_management", f"street:{STREET}"]}),
    ]
    assert count(engine, review_items) == 0  # the proposal was confirmed: nothing to learn

    page = await (await client.get(resp.headers["Location"])).text()
    assert f"已登记，工单号 <strong>{ticket['number']}</strong>" in page
    assert f"「{ticket['number']} 尾号1234」" in page
    assert TOKEN_RE.search(page).group(1) != token  # the next call is another form
    async with another_client(client) as admin:  # dispatched: out of the dispatcher's queues now
        await login(admin, "root")
        shown = await (await admin.get(f"/console/tickets/{ticket['id']}")).text()
    assert re.search(r'<span class="muted">电话</span>', shown)


async def test_a_double_submit_files_one_ticket(client: TestClient, engine: Engine) -> None:
    await login(client, "disp")
    csrf, token = await form_of(client)
    # two clicks at once (the browser's second request before the first is answered)
    first, second = await asyncio.gather(post(client, "/console/intake", csrf, **call(token, category="noise")),
                                         post(client, "/console/intake", csrf, **call(token, category="noise")))
    assert (first.status, second.status) == (303, 303)
    assert first.headers["Location"] == second.headers["Location"]
    again = await post(client, "/console/intake", csrf, **call(token, category="noise"))  # a reload's re-post
    assert (again.status, again.headers["Location"]) == (303, first.headers["Location"])
    assert (count(engine, tickets), count(engine, ticket_reports), count(engine, ticket_events)) == (1, 1, 2)
    assert count(engine, review_items) == 1  # and one correction (dog → noise), not two

    # another form is another call
    csrf, other = await form_of(client)
    assert (await post(client, "/console/intake", csrf, **call(other, street="", community=""))).status == 303
    assert count(engine, tickets) == 2


async def test_a_changed_category_and_street_reach_the_review_inbox(client: TestClient, engine: Engine) -> None:
    await login(client, "root")
    csrf, token = await form_of(client)
    other_street = "150102002"  # 锡林北路街道
    description = "楼下有人遛狗不牵绳，叫声很大，电话13847115678"
    resp = await post(client, "/console/intake", csrf,
                      **call(token, description=description, category="noise", street=other_street))
    assert resp.status == 303
    [ticket] = rows(engine, tickets)
    assert (ticket["category"], ticket["street_code"], ticket["community_code"], ticket["lead_queue"]) == (
        "noise", other_street, None, "ecology_environment")  # the proposal's community belonged to the other street
    items = rows(engine, review_items)
    assert [{k: i[k] for k in ("source", "text", "predicted_intent", "correction", "ticket_id", "status")}
            for i in items] == [
        {"source": "ticket_category", "text": "楼下有人遛狗不牵绳，叫声很大，电话138****5678", "predicted_intent": "dog",
         "correction": {"intent": "noise", "chosen_by": "operator"}, "ticket_id": ticket["id"], "status": "new"},
        {"source": "ticket_location", "text": f"{PLACE}3号楼 楼下有人遛狗不牵绳，叫声很大，电话138****5678",
         "predicted_intent": "noise",
         "correction": {"street_code": other_street, "was": STREET, "chosen_by": "operator"},
         "ticket_id": ticket["id"], "status": "new"},
    ]
    inbox = await (await client.get("/console/retraining")).text()
    assert "派单纠正类别" in inbox and "派单纠正地点" in inbox


@pytest.mark.parametrize("change, message", [
    ({"description": "  "}, "请填写来电人反映的问题。"),
    ({"place": ""}, "请填写问题发生的地点。"),
    ({"phone": ""}, "请填写正确的联系电话"),
    ({"phone": "12345"}, "请填写正确的联系电话"),
    ({"phone": "13847115678 或 13900000000"}, "请填写正确的联系电话"),
    ({"category": "no_such"}, "请选择诉求类别。"),
    ({"street": "999999999"}, "请选择正确的街道。"),
    ({"form_token": "short"}, "表单已失效，请刷新页面后重新填写。"),
    ({"description": "x" * 2001}, "来电内容过长（最多2000字）"),
])
async def test_a_wrong_form_is_shown_again_with_why_and_files_nothing(
    client: TestClient, engine: Engine, change: dict[str, str], message: str
) -> None:
    await login(client, "disp")
    csrf, token = await form_of(client)
    values = call(token, **{"place": "<script>alert(1)</script>小区", **change})
    resp = await post(client, "/console/intake", csrf, **values)
    assert resp.status == 400
    html = await resp.text()
    assert re.search(r'<p class="alert" role="alert">([^<]*)</p>', html).group(1).startswith(message)
    if "place" not in change:  # what was typed is kept, escaped
        assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;小区"' in html and "<script>alert(1)" not in html
    assert (count(engine, tickets), count(engine, ticket_reports), count(engine, review_items)) == (0, 0, 0)


# --- who may -----------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["grid", "dog"])
async def test_workers_and_departments_cannot_file_calls(client: TestClient, engine: Engine, user: str) -> None:
    """A page a role may not use does not exist for it (the console's 404), whatever it sends."""
    csrf = await login(client, user)
    assert "来电登记" not in await (await client.get("/console/queue")).text()
    assert (await client.get("/console/intake")).status == 404
    assert (await client.get("/console/intake/proposal", params={"text": WORDS})).status == 404
    resp = await post(client, "/console/intake", csrf, **call("a" * 43))
    assert resp.status == 404
    assert count(engine, tickets) == 0


async def test_filing_needs_the_sessions_csrf_token(client: TestClient, engine: Engine) -> None:
    await login(client, "disp")
    _, token = await form_of(client)
    resp = await post(client, "/console/intake", "not-the-token", **call(token))
    assert resp.status == 403
    assert count(engine, tickets) == 0


async def test_a_phone_caller_gets_no_pushed_notices_but_the_units_do(client: TestClient, engine: Engine) -> None:
    """The caller has no conversation to push 签收/办结 to: they ask by number + digits."""
    from bot.console import services as svc
    from bot.console.tables import outbox
    from bot.console.uow import ConsoleUnitOfWork
    from tests.console.helpers import now

    await login(client, "disp")
    csrf, token = await form_of(client)
    assert (await post(client, "/console/intake", csrf, **call(token))).status == 303
    [ticket] = rows(engine, tickets)
    svc.process_feed(ConsoleUnitOfWork(engine), now())  # 派单 → the units (cursor past it)
    async with another_client(client) as worker:
        csrf = await login(worker, "grid")
        assert (await post(worker, f"/console/tickets/{ticket['id']}/accept", csrf)).status == 303
        assert (await post(worker, f"/console/tickets/{ticket['id']}/resolve", csrf, result="已劝导")).status == 303
    assert svc.process_feed(ConsoleUnitOfWork(engine), now()) == 0  # 签收 and 办结 tell no unit
    assert [m for m in rows(engine, outbox) if m["kind"] == "resident"] == []

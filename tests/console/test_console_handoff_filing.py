"""代登记 at the HTTP level, on SQLite and PostgreSQL: a 坐席 holding a conversation files a
ticket for the resident with the 来电登记 form's fields (phone optional) and the routing
explainer's proposal (the Rasa stand-in of tests/console/test_console_intake.py); the ticket
belongs to the resident's conversation (sender, channel: its notices reach the chat), a double
submit files and tells once, the resident reads the number in the chat, and a changed category
reaches the review inbox."""
from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console.tables import outbox
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.handoff import ServiceHours
from bot.retraining.tables import review_items
from bot.services import handoff
from bot.storage.handoff import handoff_events, handoff_messages
from bot.storage.tables import ticket_events, ticket_reports, tickets
from bot.storage.uow import SqlAlchemyUnitOfWork
from tests.console.helpers import PASSWORD, another_client, csrf_of, login, make_users, post
from tests.console.test_console_intake import COMMUNITY, PLACE, STREET, WORDS, StandIn, _client, nlu  # noqa: F401

pytestmark = pytest.mark.asyncio
ALWAYS = ServiceHours(time(0, 0), time(23, 59, 59), timedelta(minutes=10))
SENDER = "rest:resident-7"
TOKEN_RE = re.compile(r'name="form_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def always_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(handoff.HOURS_ENV, "00:00-23:59")


@pytest_asyncio.fixture
async def client(engine: Engine, upload_dir: Path, nlu: tuple[StandIn, str]) -> AsyncIterator[TestClient]:  # noqa: F811
    async with await _client(engine, upload_dir, nlu[1]) as c:
        make_users(engine, ("grid", "disp", "root"))
        for name in ("desk", "desk2"):
            svc.create_user(ConsoleUnitOfWork(engine), name, f"坐席{name}", PASSWORD, "agent", (),
                            datetime.now(timezone.utc))
        yield c


def rows(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]


def taken(engine: Engine, agent: str = "desk") -> int:
    """A REST resident asked for a person, said what is wrong, and `agent` took it."""
    now = datetime.now(timezone.utc)
    h, _ = handoff.request(SqlAlchemyUnitOfWork(engine), SENDER, "rest", "asked", now, ALWAYS)
    assert h.id is not None
    handoff.resident_message(SqlAlchemyUnitOfWork(engine), SENDER, WORDS, now, ALWAYS)
    handoff.take(SqlAlchemyUnitOfWork(engine), h.id, f"user:{agent}", f"坐席{agent}", now)
    return h.id


def resident_reads(engine: Engine) -> list[str]:
    return handoff.pickup(SqlAlchemyUnitOfWork(engine), SENDER, datetime.now(timezone.utc), ALWAYS)


async def form_of(client: TestClient, hid: int) -> tuple[str, str, str]:
    """(csrf, form token, the page) of the conversation page."""
    page = await client.get(f"/console/handoff/{hid}")
    assert page.status == 200
    html = await page.text()
    return csrf_of(html), TOKEN_RE.search(html).group(1), html


def filing(token: str, **overrides: str) -> dict[str, str]:
    values = {"form_token": token, "description": WORDS, "place": PLACE + "3号楼", "phone": "",
              "category": "dog", "street": STREET, "community": COMMUNITY,
              "proposed_category": "dog", "proposed_street": STREET}
    values.update(overrides)
    return values


async def test_the_agent_files_for_the_resident_who_reads_the_number_in_the_chat(
    client: TestClient, engine: Engine, nlu: tuple[StandIn, str]  # noqa: F811
) -> None:
    hid = taken(engine)
    assert resident_reads(engine) == ["工作人员坐席desk已接入，请问有什么可以帮您？"]
    csrf = await login(client, "desk")
    csrf, token, page = await form_of(client, hid)
    # the form starts from the resident's words; the proposal is the 来电登记 one, for a 坐席 too
    assert f">{WORDS}</textarea>" in page and 'data-proposal="/console/intake/proposal"' in page
    proposal = await client.get("/console/intake/proposal", params={"text": WORDS, "place": PLACE})
    assert proposal.status == 200
    assert {k: v for k, v in (await proposal.json()).items() if k in ("category", "street", "community", "lead")} == {
        "category": "dog", "street": STREET, "community": COMMUNITY, "lead": "police_dog"}

    # two clicks at once, then a reload's re-post: one ticket, one notice
    first, second = await asyncio.gather(post(client, f"/console/handoff/{hid}/file", csrf, **filing(token)),
                                         post(client, f"/console/handoff/{hid}/file", csrf, **filing(token)))
    again = await post(client, f"/console/handoff/{hid}/file", csrf, **filing(token))
    [ticket] = rows(engine, tickets)
    where = f"/console/handoff/{hid}?filed={ticket['number']}"
    assert [r.status for r in (first, second, again)] == [303] * 3
    assert {r.headers["Location"] for r in (first, second, again)} == {where}
    assert {k: ticket[k] for k in ("category", "description", "street_code", "community_code", "lead_queue",
                                   "state")} == {
        "category": "dog", "description": WORDS, "street_code": STREET, "community_code": COMMUNITY,
        "lead_queue": "police_dog", "state": "派单"}
    [report] = rows(engine, ticket_reports)
    assert {k: report[k] for k in ("ticket_id", "sender_id", "channel", "phone", "confidential",
                                   "idempotency_key")} == {
        "ticket_id": ticket["id"], "sender_id": SENDER, "channel": "rest", "phone": None, "confidential": False,
        "idempotency_key": f"{SENDER}:handoff:{token}"}
    assert [(e["kind"], e["actor"], e["data"]) for e in rows(engine, ticket_events)] == [
        ("受理", f"resident:{SENDER}", {"channel": "rest", "taken_by": "user:desk"}),
        ("派单", "system:router", {"lead": "police_dog", "co": ["urban_management", f"street:{STREET}"]}),
    ]
    assert [(e["kind"], e["actor"], e["note"]) for e in rows(engine, handoff_events)] == [
        ("转人工", "system", "asked"), ("接入", "user:desk", ""), ("代登记", "user:desk", ticket["number"])]
    notice = f"工作人员已为您登记诉求，工单号 {ticket['number']}。处理进展会通知您，您也可以随时发送工单号查询进度。"
    assert resident_reads(engine) == [notice]
    assert [m["author"] for m in rows(engine, handoff_messages) if m["text"] == notice] == ["user:desk"]
    assert rows(engine, review_items) == []  # the proposal was confirmed: nothing to learn
    shown = await (await client.get(where)).text()
    assert f"已为居民登记，工单号 <strong>{ticket['number']}</strong>" in shown
    assert TOKEN_RE.search(shown).group(1) != token  # the next filing is another form

    # the ticket's notices reach the resident's conversation (not a phone caller's none)
    svc.process_feed(ConsoleUnitOfWork(engine), datetime.now(timezone.utc))
    async with another_client(client) as worker:
        wcsrf = await login(worker, "grid")
        assert (await post(worker, f"/console/tickets/{ticket['id']}/accept", wcsrf)).status == 303
    svc.process_feed(ConsoleUnitOfWork(engine), datetime.now(timezone.utc))
    assert [(m["kind"], m["recipient"]) for m in rows(engine, outbox) if m["kind"] == "resident"] == [
        ("resident", SENDER)]


async def test_a_changed_category_is_a_correction_and_the_phone_is_checked(
    client: TestClient, engine: Engine
) -> None:
    hid = taken(engine)
    await login(client, "desk")
    csrf, token, _ = await form_of(client, hid)
    bad = await post(client, f"/console/handoff/{hid}/file", csrf, **filing(token, phone="12345"))
    assert bad.status == 400
    html = await bad.text()
    assert "请填写正确的联系电话" in html and 'value="12345"' in html
    assert rows(engine, tickets) == []
    resp = await post(client, f"/console/handoff/{hid}/file", csrf,
                      **filing(token, category="noise", phone="13847115678", confidential="1"))
    assert resp.status == 303
    [ticket] = rows(engine, tickets)
    [report] = rows(engine, ticket_reports)
    assert (ticket["category"], report["phone"], report["confidential"]) == ("noise", "13847115678", True)
    assert [{k: i[k] for k in ("source", "text", "predicted_intent", "correction", "ticket_id", "dedupe_key")}
            for i in rows(engine, review_items)] == [
        {"source": "ticket_category", "text": WORDS, "predicted_intent": "dog",
         "correction": {"intent": "noise", "chosen_by": "agent"}, "ticket_id": ticket["id"],
         "dedupe_key": f"ticket_category:{ticket['id']}:handoff"}]


async def test_only_the_holder_files_and_other_roles_have_no_such_action(client: TestClient, engine: Engine) -> None:
    hid = taken(engine, agent="desk2")
    csrf = await login(client, "desk")
    page = await (await client.get(f"/console/handoff/{hid}")).text()
    assert f'action="/console/handoff/{hid}/file"' not in page and "form_token" not in page  # not theirs: no form
    token = "t" * 43
    resp = await post(client, f"/console/handoff/{hid}/file", csrf, **filing(token))
    assert resp.status == 409
    assert "该会话已由 desk2 接入（人工服务中）。" in await resp.text()
    for user in ("grid", "disp"):
        async with another_client(client) as other:
            ocsrf = await login(other, user)
            assert (await post(other, f"/console/handoff/{hid}/file", ocsrf, **filing(token))).status == 404
    assert rows(engine, tickets) == []
    assert [m["text"] for m in rows(engine, handoff_messages) if "工单号" in m["text"]] == []


async def test_a_message_left_at_night_is_filed_or_kept_as_a_question(
    client: TestClient, engine: Engine, nlu: tuple[StandIn, str]  # noqa: F811
) -> None:
    """Outside the service hours (a controlled clock: 23:00 in Hohhot) the resident is offered a
    留言. The console reads each 留言 once: a complaint with a place is filed as the resident's
    ticket and they are told the number; anything else stays in the agents' list as a 咨询 item,
    which an agent takes and answers in the chat. A question the knowledge base missed is one
    too. Nothing is dropped."""
    hours = ServiceHours()  # 08:00–20:00
    night = datetime(2026, 12, 6, 15, 0, tzinfo=timezone.utc)  # 23:00 Asia/Shanghai
    ids = {}
    for sender, words in (("rest:night-1", f"{PLACE} {WORDS}"), ("rest:night-2", WORDS)):
        h, notice = handoff.request(SqlAlchemyUnitOfWork(engine), sender, "rest", "asked", night, hours)
        assert (h.state.value, notice.startswith("现在不在人工服务时间（每天 08:00–20:00）")) == ("offered", True)
        gate = handoff.resident_message(SqlAlchemyUnitOfWork(engine), sender, words, night + timedelta(minutes=1),
                                        hours)
        assert gate == handoff.Gate(True, ["已收到您的留言，工作人员会尽快答复您。您也可以继续在这里描述问题，我来帮您登记。"])
        ids[sender] = h.id
    question = handoff.record_question(SqlAlchemyUnitOfWork(engine), "rest:night-3", "rest", "公积金贷款利率是多少", night)

    await login(client, "desk")
    page = await (await client.get("/console/handoff")).text()
    # the 留言 with a place is a ticket now, out of the list; the other and the question wait for a person
    assert re.findall(r'data-handoff="(\d+)"', page) == [str(ids["rest:night-2"]), str(question)]
    assert "知识库无法答复的咨询" in page
    assert nlu[0].asked == [(f"{PLACE} {WORDS}", "nlu-token-for-tests"), (WORDS, "nlu-token-for-tests")]
    [ticket] = rows(engine, tickets)
    [report] = rows(engine, ticket_reports)
    assert {k: ticket[k] for k in ("category", "street_code", "community_code", "lead_queue", "state")} == {
        "category": "dog", "street_code": STREET, "community_code": COMMUNITY, "lead_queue": "police_dog",
        "state": "派单"}
    first = ids["rest:night-1"]
    assert {k: report[k] for k in ("sender_id", "channel", "description", "location_text", "idempotency_key")} == {
        "sender_id": "rest:night-1", "channel": "rest", "description": f"{PLACE} {WORDS}",
        "location_text": "新城区 公主府社区", "idempotency_key": f"rest:night-1:leave:{first}"}
    steps = [(e["handoff_id"], e["kind"], e["actor"], e["note"]) for e in rows(engine, handoff_events)]
    assert [s[1:] for s in steps if s[0] == first] == [
        ("转人工", "system", "asked"), ("提供留言", "system", ""), ("留言", "resident", ""),
        ("代登记", "system", ticket["number"]), ("结束", "system", "")]
    assert [s[1:] for s in steps if s[0] == ids["rest:night-2"]][-1] == ("转咨询", "system", "")
    assert handoff.pickup(SqlAlchemyUnitOfWork(engine), "rest:night-1", night, hours) == [
        f"工作人员已为您登记诉求，工单号 {ticket['number']}。处理进展会通知您，您也可以随时发送工单号查询进度。"]

    # read once: the next look files nothing and asks nothing
    again = await (await client.get("/console/handoff")).text()
    assert re.findall(r'data-handoff="(\d+)"', again) == [str(ids["rest:night-2"]), str(question)]
    assert (len(rows(engine, tickets)), len(nlu[0].asked)) == (1, 2)

    # an agent takes the 咨询 item and answers in the chat
    csrf = csrf_of(again)
    second = ids["rest:night-2"]
    assert (await post(client, f"/console/handoff/{second}/take", csrf)).status == 303
    assert (await post(client, f"/console/handoff/{second}/say", csrf, text="请问是哪个小区？")).status == 303
    assert handoff.pickup(SqlAlchemyUnitOfWork(engine), "rest:night-2", night, hours) == [
        "工作人员坐席desk已接入，请问有什么可以帮您？", "请问是哪个小区？"]


async def test_a_summary_refused_twice_comes_with_the_form_the_agent_files(
    client: TestClient, engine: Engine, nlu: tuple[StandIn, str]  # noqa: F811
) -> None:
    """The complaint form's answers kept with the hand-off (actions/complaint.py, 诉求表单) are
    shown and prefill 代登记: the held number for a role that may see phones, 保密 checked."""
    from bot.storage.pending_phones import keep_phone

    now = datetime.now(timezone.utc)
    kept = {"category": "dog", "location": f"{PLACE}居委会 3号楼", "street": STREET, "community": COMMUNITY,
            "description": f"{WORDS}<b>", "photo": "", "phone": "138****5678", "confidential": True}
    h, _ = handoff.request(SqlAlchemyUnitOfWork(engine), SENDER, "rest", "summary_refused", now, ALWAYS, kept=kept)
    assert h.id is not None
    with engine.begin() as conn:
        keep_phone(conn, SENDER, "13812345678", now)
    handoff.resident_message(SqlAlchemyUnitOfWork(engine), SENDER, "地点不对", now, ALWAYS)
    handoff.take(SqlAlchemyUnitOfWork(engine), h.id, "user:desk", "坐席desk", now)
    await login(client, "desk")
    csrf, token, page = await form_of(client, h.id)
    assert "原因 居民两次否认诉求摘要" in page and "居民未确认的诉求表单" in page
    assert f">{WORDS}&lt;b&gt;；地点不对</textarea>" in page  # escaped, then what the resident said since
    assert f'name="place" maxlength="200" required value="{PLACE}居委会 3号楼"' in page
    assert '<option value="dog" selected>' in page and f'<option value="{STREET}" selected>' in page
    assert f'name="community" value="{COMMUNITY}"' in page
    assert 'name="phone" maxlength="32" inputmode="tel" value="13812345678"' in page
    assert 'name="confidential" value="1" checked' in page

    form = filing(token, description=f"{WORDS}；地点不对", place=f"{PLACE}居委会 3号楼", phone="13812345678",
                  confidential="1")
    assert (await post(client, f"/console/handoff/{h.id}/file", csrf, **form)).status == 303
    [ticket] = rows(engine, tickets)
    [report] = rows(engine, ticket_reports)
    assert (ticket["category"], ticket["street_code"], report["phone"], report["confidential"]) == (
        "dog", STREET, "13812345678", True)
    assert [(e["kind"], e["actor"]) for e in rows(engine, handoff_events)] == [
        ("转人工", "system"), ("诉求表单", "resident"), ("接入", "user:desk"), ("代登记", "user:desk")]

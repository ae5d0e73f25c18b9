"""来电人信息 (issue 19): an admin looks up and erases a phone caller's data (来电登记 reports,
channel 电话) by their full number, with a required reason; each look-up and erasure is a row
of the append-only view log with the number masked, and the log page never shows the number.
At the HTTP level, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console.tables import personal_data_views
from bot.domain.model import ComplaintDraft
from bot.services.rights import WITHDRAW_NOTE
from bot.services.tickets import file_complaint
from bot.storage.tables import ticket_events, ticket_reports, tickets
from tests.console.helpers import another_client, file, login, make_users, post, route, uow

pytestmark = pytest.mark.asyncio

LANDLINE = "0471-3316789"  # as 来电登记 stores it (find_phone)
MOBILE = "13904711234"


def call(engine: Engine, key: str, phone: str, description: str = "小区门口垃圾三天没人清运，我是张桂兰") -> int:
    draft = ComplaintDraft(sender_id=f"phone:{key}", channel="phone", category="dog", description=description,
                           location_text="公主府社区3号楼", photo=None, phone=phone, confidential=False,
                           idempotency_key=f"phone:{key}")
    return file_complaint(uow(engine), draft, route(None), datetime.now(timezone.utc)).ticket_id


def log_rows(engine: Engine) -> list[tuple]:
    v = personal_data_views
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(v.c.username, v.c.role, v.c.ticket_id, v.c.field, v.c.caller, v.c.reason, v.c.denied)
            .order_by(v.c.id))]


def reports(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(ticket_reports.c.ticket_id, ticket_reports.c.channel, ticket_reports.c.sender_id,
                   ticket_reports.c.phone, ticket_reports.c.description).order_by(ticket_reports.c.id))]


async def test_an_admin_looks_up_a_caller_by_the_full_number_with_a_reason(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    mine = call(engine, "a1", LANDLINE)
    call(engine, "b1", MOBILE, description="楼上漏水")
    file(engine, "chat-1")  # a chat resident with the number 13847112345: not a caller
    csrf = await login(client, "root")

    page = await (await client.get("/console/privacy/callers")).text()
    assert 'action="/console/privacy/callers"' in page and f'name="csrf" value="{csrf}"' in page

    resp = await post(client, "/console/privacy/callers", csrf, phone=" 0471-3316789 ", reason="  来电人要求\n查看 ")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    body = await resp.text()
    with engine.connect() as conn:
        number = conn.execute(select(tickets.c.number).where(tickets.c.id == mine)).scalar_one()
    assert number in body and "小区门口垃圾三天没人清运，我是张桂兰" in body and "047****6789" in body
    assert "楼上漏水" not in body  # another caller's
    assert 'action="/console/privacy/callers/erase"' in body
    assert log_rows(engine) == [("root", "admin", None, "caller_export", "047****6789", "来电人要求 查看", False)]

    # a chat resident's number is nobody's caller number; a look-up that finds nothing is logged too
    body = await (await post(client, "/console/privacy/callers", csrf, phone="13847112345", reason="核对")).text()
    assert "没有该号码的来电登记工单" in body and "/privacy/callers/erase" not in body
    assert len(log_rows(engine)) == 2


async def test_bad_numbers_and_missing_reasons_are_refused_and_log_nothing(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    call(engine, "a1", LANDLINE)
    csrf = await login(client, "root")
    for path in ("/console/privacy/callers", "/console/privacy/callers/erase"):
        for phone, reason in (("", "理由"), ("6925678", "理由"), ("0471-3316789 张", "理由"), ("1" * 40, "理由"),
                              (LANDLINE, ""), (LANDLINE, "   "), (LANDLINE, "理" * (svc.MAX_REASON + 1))):
            resp = await post(client, path, csrf, phone=phone, reason=reason)
            assert resp.status == 400, (path, phone, reason)
            body = await resp.text()
            assert "小区门口垃圾" not in body and ("理由" in body or "电话号码" in body)
    assert log_rows(engine) == []
    assert reports(engine)[0][3] == LANDLINE  # nothing erased


async def test_an_admin_erases_a_caller_with_a_reason_recorded(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root", "disp"))
    mine = call(engine, "a1", LANDLINE)
    other = call(engine, "b1", MOBILE, description="楼上漏水")
    before_other = [r for r in reports(engine) if r[0] == other]
    csrf = await login(client, "root")
    resp = await post(client, "/console/privacy/callers/erase", csrf, phone=LANDLINE, reason=" 本人来电要求删除，已核实 ")
    assert resp.status == 200
    body = await resp.text()
    assert "1 个工单中该来电人的个人信息已清除" in body and "1 个未办结的工单已撤回关闭" in body
    assert LANDLINE not in body

    assert reports(engine) == [(mine, "phone", f"anon:{mine}:1", None, "小区门口垃圾三天没人清运，我是***"),
                               *before_other]
    with engine.connect() as conn:
        state = conn.execute(select(tickets.c.state).where(tickets.c.id == mine)).scalar_one()
        last = conn.execute(select(ticket_events.c.kind, ticket_events.c.actor, ticket_events.c.reason)
                            .where(ticket_events.c.ticket_id == mine).order_by(ticket_events.c.seq.desc())
                            .limit(1)).one()
    assert (state, tuple(last)) == ("已撤单", ("撤单", "user:root", WITHDRAW_NOTE))
    assert log_rows(engine) == [("root", "admin", None, "caller_erasure", "047****6789", "本人来电要求删除，已核实", False)]

    # a retry (the button pressed twice) finds nothing more to erase, and is recorded as such
    body = await (await post(client, "/console/privacy/callers/erase", csrf, phone=LANDLINE, reason="重试")).text()
    assert "0 个工单" in body
    assert [r[3] for r in log_rows(engine)] == ["caller_erasure", "caller_erasure"]

    # the log page names the admin, the kind and the reason, never the number
    page = await (await client.get("/console/privacy/views")).text()
    assert "来电人信息删除 来电 047****6789" in page and "本人来电要求删除，已核实" in page
    assert LANDLINE not in page and "04713316789" not in page

    # only admins: the dispatcher who files 来电登记 cannot
    async with another_client(client) as c:
        disp_csrf = await login(c, "disp")
        assert (await post(c, "/console/privacy/callers/erase", disp_csrf, phone=MOBILE, reason="x")).status == 404
        assert (await post(c, "/console/privacy/callers", disp_csrf, phone=MOBILE, reason="x")).status == 404
        assert (await c.get("/console/privacy/callers")).status == 404
    assert [r for r in reports(engine) if r[0] == other] == before_other
    assert len(log_rows(engine)) == 2


async def test_without_the_csrf_token_nothing_is_erased_or_logged(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    call(engine, "a1", LANDLINE)
    await login(client, "root")
    for path in ("/console/privacy/callers", "/console/privacy/callers/erase"):
        assert (await post(client, path, "", phone=LANDLINE, reason="理由")).status == 403
    assert log_rows(engine) == [] and reports(engine)[0][3] == LANDLINE


async def test_the_services_refuse_anyone_but_an_admin(engine: Engine, tmp_path) -> None:
    make_users(engine, ("disp",))
    call(engine, "a1", LANDLINE)
    disp = svc.Principal(1, "disp", "disp的名字", "dispatcher", frozenset())
    with pytest.raises(svc.NotPermitted):
        svc.caller_data(uow(engine), disp, LANDLINE, "x", datetime.now(timezone.utc))
    with pytest.raises(svc.NotPermitted):
        svc.erase_caller(uow(engine), disp, LANDLINE, "x", tmp_path, datetime.now(timezone.utc))
    assert reports(engine)[0][3] == LANDLINE

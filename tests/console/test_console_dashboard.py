"""Dashboard figures (三率, 月排比 with weights) and the CSV export of every table."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console import stats
from bot.console.repository import TicketFilter
from bot.console.uow import ConsoleUnitOfWork
from tests.console.helpers import OTHER_STREET, STREET, another_client, csrf_of, file, login, make_users, now, post

pytestmark = pytest.mark.asyncio


def principal(engine: Engine, name: str) -> svc.Principal:
    with ConsoleUnitOfWork(engine) as uow:
        return svc.Principal.of(uow.console.get_user_by_username(name))


MONTH = "2026-06"
T0 = datetime(2026, 6, 10, 2, 0, tzinfo=timezone.utc)  # Wednesday 10:00 in Hohhot


def scenario(engine: Engine) -> None:
    """June 2026. Street A: 2 tickets, both accepted in time, resolved, rated 满意 / not solved.
    Street B: 1 ticket accepted late (after its deadline), resolved, rated 基本满意."""
    make_users(engine, ("grid", "other", "root"))
    grid, other = principal(engine, "grid"), principal(engine, "other")
    a1 = file(engine, "a1", sender="r1", at=T0)
    a2 = file(engine, "a2", sender="r2", at=T0 + timedelta(hours=1))
    b1 = file(engine, "b1", sender="r3", street=OTHER_STREET, at=T0)
    for ticket, who, at in ((a1, grid, T0 + timedelta(hours=2)), (a2, grid, T0 + timedelta(hours=2)),
                            (b1, other, T0 + timedelta(days=5))):
        svc.perform(ConsoleUnitOfWork(engine), who, ticket.ticket_id, "accept", {}, at)
        svc.perform(ConsoleUnitOfWork(engine), who, ticket.ticket_id, "resolve", {"result": "已处理"}, at)
    t = T0 + timedelta(days=6)
    svc.record_follow_up(ConsoleUnitOfWork(engine), a1.number, "r1", True, "满意", t)
    svc.record_follow_up(ConsoleUnitOfWork(engine), a2.number, "r2", False, None, t)
    svc.record_follow_up(ConsoleUnitOfWork(engine), b1.number, "r3", True, "基本满意", t)


async def test_three_rates_and_ranking(engine: Engine) -> None:
    scenario(engine)
    board = stats.dashboard(ConsoleUnitOfWork(engine), TicketFilter(all_tickets=True), MONTH, stats.DEFAULT_WEIGHTS, now())
    streets = {u.unit: u for u in board.units["street"]}
    a, b = streets[STREET], streets[OTHER_STREET]
    assert (a.tickets, a.rates) == (2, {"response": 1.0, "solve": 0.5, "satisfy": 0.5})
    assert (b.tickets, b.rates) == (1, {"response": 0.0, "solve": 1.0, "satisfy": 1.0})
    assert a.score == pytest.approx(0.3 * 1 + 0.4 * 0.5 + 0.3 * 0.5)
    assert b.score == pytest.approx(0.7)
    assert [u.unit for u in board.units["street"]] == [b.unit, a.unit]  # b wins by default weights
    # Weighting response only turns the ranking around.
    only_response = stats.parse_weights({"w_response": "1", "w_solve": "0", "w_satisfy": "0"})
    board = stats.dashboard(ConsoleUnitOfWork(engine), TicketFilter(all_tickets=True), MONTH, only_response, now())
    assert [u.unit for u in board.units["street"]][0] == STREET
    dept = {u.unit: u for u in board.units["department"]}
    assert dept["police_dog"].tickets == 3
    assert board.total == 3 and board.open_now == 1  # the not-solved ticket was re-opened
    assert sum(sum(s["data"]) for s in board.per_day["series"]) == 3


async def test_dashboard_page_renders_tables_and_chart_data(client: TestClient, engine: Engine) -> None:
    scenario(engine)
    await login(client, "root")
    resp = await client.get(f"/console/dashboard?month={MONTH}&w_response=1&w_solve=0&w_satisfy=0")
    assert resp.status == 200
    page = await resp.text()
    assert "三率与月排比" in page and "海拉尔东路街道" in page and "100.0%" in page
    data = json.loads(re.search(r'<script type="application/json" id="dashboard-data">(.*?)</script>', page, re.S).group(1))
    assert set(data) == {"perDay", "perStreet", "openVsOverdue"}
    assert "dashboard.js" in page and "cdn" not in page.lower()
    # A street worker's dashboard covers their own queue only.
    async with another_client(client) as c:
        await login(c, "other")
        page = await (await c.get(f"/console/dashboard?month={MONTH}")).text()
        assert "锡林北路街道" in page and "海拉尔东路街道" not in page


async def test_month_bounds_and_weights() -> None:
    label, start, end = stats.month_bounds("2026-02", now().date())
    assert (label, start.isoformat(), end.isoformat()) == ("2026-02", "2026-02-01T00:00:00+08:00", "2026-03-01T00:00:00+08:00")
    assert stats.month_bounds("garbage", now().date())[0] == now().strftime("%Y-%m")
    assert stats.month_bounds("2026-12", now().date())[2].isoformat() == "2027-01-01T00:00:00+08:00"
    assert stats.parse_weights({"w_response": "-5", "w_solve": "x"}) == {"response": 0.0, "solve": 0.4, "satisfy": 0.3}
    assert stats.parse_weights({"w_response": "0", "w_solve": "0", "w_satisfy": "0"}) == stats.DEFAULT_WEIGHTS


async def test_csv_export_of_every_table_without_secrets(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root", "grid"))
    file(engine, "k1", description="=HYPERLINK(\"http://evil\")")
    csrf = await login(client, "root")
    index = await (await client.get("/console/export")).text()
    for name in stats.exportable_tables():
        assert f"/console/export/{name}.csv" in index
        resp = await client.get(f"/console/export/{name}.csv")
        assert resp.status == 200, name
        assert resp.headers["Content-Type"].startswith("text/csv")
        body = (await resp.read()).decode("utf-8-sig")
        header = next(csv.reader(io.StringIO(body)))
        assert header, name
    users = list(csv.DictReader(io.StringIO((await (await client.get("/console/export/users.csv")).read()).decode("utf-8-sig"))))
    assert {u["password_hash"] for u in users} == {stats.REDACTED}
    sessions = list(csv.DictReader(io.StringIO((await (await client.get("/console/export/sessions.csv")).read()).decode("utf-8-sig"))))
    assert sessions and all(s["id"] == stats.REDACTED and s["csrf_token"] == stats.REDACTED for s in sessions)
    assert csrf not in (await (await client.get("/console/export/sessions.csv")).text())
    tickets_csv = (await (await client.get("/console/export/tickets.csv")).read()).decode("utf-8-sig")
    [row] = list(csv.DictReader(io.StringIO(tickets_csv)))
    assert row["description"].startswith("'=")  # no formula injection into spreadsheets
    assert (await client.get("/console/export/nope.csv")).status == 404
    async with another_client(client) as c:
        await login(c, "grid")
        assert (await c.get("/console/export/tickets.csv")).status == 404  # admins only
        assert (await c.get("/console/export")).status == 404


async def test_csv_exports_leave_out_confidential_tickets_and_never_carry_their_phone(client: TestClient, engine: Engine) -> None:
    from bot.domain.model import ComplaintDraft
    from bot.services.tickets import file_complaint
    from tests.console.helpers import route

    def report(sender: str, phone: str, confidential: bool) -> int:
        draft = ComplaintDraft(sender_id=sender, channel="socketio", category="dog",
                               description=f"楼下狗叫，回电{phone}" + ("，身份证110101199003071234" if confidential else ""),
                               location_text="公主府社区3号楼",
                               photo=None, phone=phone, confidential=confidential, idempotency_key=f"{sender}:1")
        r = route()
        r = type(r)(r.lead, r.co, r.district_code, r.street_code, None, r.dispatch_class, r.reason)  # no 并单
        return file_complaint(ConsoleUnitOfWork(engine), draft, r, now()).ticket_id

    secret_id = report("r-secret", "13811112222", True)  # 保密
    open_id = report("r-open", "13933334444", False)
    make_users(engine, ("root",))
    await login(client, "root")
    exported = {}
    for name in stats.exportable_tables():
        resp = await client.get(f"/console/export/{name}.csv")
        assert resp.status == 200, name
        exported[name] = (await resp.read()).decode("utf-8-sig")
    everything = "\n".join(exported.values())
    assert "13811112222" not in everything and "110101199003071234" not in everything
    # 保密 tickets are left out of every table (tests/console/test_console_privacy.py: with a reason)
    reports = {r["ticket_id"]: r for r in csv.DictReader(io.StringIO(exported["ticket_reports"]))}
    assert list(reports) == [str(open_id)]
    assert reports[str(open_id)]["phone"] == "13933334444"  # not confidential: the admin's export keeps it
    tickets_rows = {r["id"]: r for r in csv.DictReader(io.StringIO(exported["tickets"]))}
    assert list(tickets_rows) == [str(open_id)]
    assert "13933334444" in tickets_rows[str(open_id)]["description"]
    # with a reason they are there, their phone withheld and their texts masked
    csrf = csrf_of(await (await client.get("/console/export")).text())
    with_reason = await post(client, "/console/export", csrf, table="tickets", reason="审计")
    tickets_rows = {r["id"]: r for r in csv.DictReader(io.StringIO((await with_reason.read()).decode("utf-8-sig")))}
    assert tickets_rows[str(secret_id)]["description"] == "楼下狗叫，回电138****2222，身份证110***********1234"


async def test_response_rate_counts_only_tickets_whose_response_is_due(engine: Engine) -> None:
    file(engine, "p1", at=T0)  # not signed for; its limit passed long ago → a miss
    file(engine, "p2", sender="r2", at=T0 + timedelta(hours=1))  # not signed for either
    board = stats.dashboard(ConsoleUnitOfWork(engine), TicketFilter(all_tickets=True), MONTH, stats.DEFAULT_WEIGHTS,
                            T0 + timedelta(hours=2))
    [street] = board.units["street"]
    assert (street.tickets, street.dispatched, street.rates["response"]) == (2, 0, None)  # both still within the limit
    board = stats.dashboard(ConsoleUnitOfWork(engine), TicketFilter(all_tickets=True), MONTH, stats.DEFAULT_WEIGHTS, now())
    [street] = board.units["street"]
    assert (street.dispatched, street.rates["response"]) == (2, 0.0)


@pytest.mark.parametrize("month", ["9999-12", "0000-01", "2026-13", "-1-05", "99999999999999999999-01"])
async def test_a_month_out_of_range_shows_this_month(client: TestClient, engine: Engine, month: str) -> None:
    """Outside test (issue 16 round): month=9999-12 was a 500 (year 10000 while finding the next
    month). A month that cannot be shown is treated like any bad month: this month's board."""
    make_users(engine, ("root",))
    await login(client, "root")
    resp = await client.get(f"/console/dashboard?month={month}")
    assert resp.status == 200
    label = stats.month_bounds(None, now().date())[0]
    assert stats.month_bounds(month, now().date())[0] == label

"""The 节假日安排 console page (issue 14), over HTTP on SQLite and PostgreSQL: preview as
twelve month grids and a diff, saving moves open deadlines with a 时限调整 event by the
admin, bad rows refused whole naming the row, the 暂按周一至周五计算 mark on the ticket
page, the next-year warning for admins from 1 November. (Admin-only and CSRF: the
authorization sweep in tests/security covers these routes.)

Schedules here are invented for the test (测试用通知（虚构）): nobody may guess a real one.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.console import calendar as calendar_page
from bot.domain.clock import SHANGHAI
from bot.storage.tables import holiday_days, holiday_years, ticket_events, tickets
from tests.console.helpers import csrf_of, file, login, make_users

pytestmark = pytest.mark.asyncio
NOTICE = "测试用通知（虚构）"


def hohhot(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=SHANGHAI)


def form(csrf: str, year: object, rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str]]:
    data = [("csrf", csrf), ("year", str(year))]
    for start, end, kind, source in rows:
        data += [("from", start), ("to", end), ("kind", kind), ("source", source)]
    return data


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()  # type: ignore[return-value]
                     for t in (holiday_days, holiday_years, ticket_events))


SPRING = [("2030-02-04", "2030-02-10", "休", NOTICE), ("2030-02-02", "", "班", NOTICE)]


async def test_preview_shows_twelve_months_and_the_diff_and_saves_nothing(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    csrf = await login(client, "root")
    before = counts(engine)
    resp = await client.post("/console/calendar/preview", data=form(csrf, 2030, SPRING), allow_redirects=False)
    html = await resp.text()
    assert resp.status == 200
    assert len(re.findall(r'<table class="month" aria-label="\d+月">', html)) == 12
    assert '<td class="cal-day makeup" title="2030-02-02">2</td>' in html
    assert '<td class="cal-day holiday" title="2030-02-04">4</td>' in html
    assert '<td class="cal-day holiday" title="2030-02-09">9</td>' in html  # a Saturday inside the holiday
    assert '<td class="cal-day rest" title="2030-02-16">16</td>' in html
    assert "变化（6 天）" in html  # 2 Feb a working day, 4–8 Feb days off (9–10 Feb stay days off)
    assert "<tr><td>2030-02-02</td><td>休息日（周一至周五）</td><td>工作日（市里安排）</td></tr>" in html
    assert 'formaction="/console/calendar/save"' in html
    assert counts(engine) == before


async def test_saving_moves_open_deadlines_with_the_admins_event(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    moved = file(engine, "m", at=hohhot(2030, 2, 1, 10)).ticket_id  # Friday: due Monday 4 Feb 10:00 (Mon–Fri)
    csrf = await login(client, "root")
    resp = await client.post("/console/calendar/save", data=form(csrf, 2030, SPRING), allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/console/calendar?year=2030&saved=1")
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.deadline_at).where(tickets.c.id == moved)).scalar_one() == \
            hohhot(2030, 2, 2, 10)
        assert conn.execute(select(ticket_events.c.actor, ticket_events.c.reason)
                            .where(ticket_events.c.kind == "时限调整")).all() == [
            ("user:root", "时限随节假日安排调整：2030-02-04 10:00 → 2030-02-02 10:00")]
        assert [(r.day.isoformat(), r.kind, r.source, r.entered_by) for r in conn.execute(
            select(holiday_days).order_by(holiday_days.c.day))][:2] == [
            ("2030-02-02", "班", NOTICE, "user:root"), ("2030-02-04", "休", NOTICE, "user:root")]
    page = await client.get("/console/calendar?year=2030&saved=1")
    html = await page.text()
    assert "已保存；1 张在办工单的时限随节假日安排调整。" in html
    assert 'value="2030-02-04"' in html and 'value="2030-02-10"' in html
    # Saving the same again: nothing changes.
    before = counts(engine)
    csrf = csrf_of(html)
    resp = await client.post("/console/calendar/save", data=form(csrf, 2030, SPRING), allow_redirects=False)
    assert resp.headers["Location"] == "/console/calendar?year=2030&saved=0"
    assert counts(engine) == before


async def test_bad_rows_are_refused_whole_naming_the_row(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    csrf = await login(client, "root")
    before = counts(engine)
    for rows, message in (
        ([("2030-02-04", "2030-02-10", "休", NOTICE), ("2030-02-10", "2030-02-11", "休", NOTICE)],
         "第2行：与第1行的日期范围重叠（2030-02-10）"),
        ([("2030-02-04", "", "休", NOTICE), ("2030-02-04", "", "班", NOTICE)], "同一天既是休又是班"),
        ([("2030-02-04", "", "休", NOTICE), ("2031-01-01", "", "休", NOTICE)], "第2行：日期不在2030年内"),
        ([("2030-02-04", "", "假", NOTICE)], "第1行：未知的类型"),
        ([("2030-02-04", "", "休", " ")], "第1行：须注明来源"),
    ):
        for action in ("preview", "save"):
            resp = await client.post(f"/console/calendar/{action}", data=form(csrf, 2030, rows), allow_redirects=False)
            assert resp.status == 400, (action, message)
            assert message in await resp.text()
    assert counts(engine) == before


async def test_ticket_page_marks_a_deadline_counted_monday_to_friday(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    unknown = file(engine, "u", at=hohhot(2030, 3, 5, 10)).ticket_id  # nobody has entered 2030
    known = file(engine, "k", at=hohhot(2026, 3, 5, 10)).ticket_id  # the library knows 2026
    await login(client, "root")
    html = await (await client.get(f"/console/tickets/{unknown}")).text()
    assert "一般 签收 1个工作日，2030-03-06 10:00 前（<span class=\"weekday-only\">暂按周一至周五计算</span>）" in html
    assert "weekday-only" not in await (await client.get(f"/console/tickets/{known}")).text()


async def test_admins_are_warned_from_november_when_next_year_is_missing(
        client: TestClient, engine: Engine, monkeypatch) -> None:
    make_users(engine, ("root", "disp"))
    clock = {"now": datetime(2029, 10, 31, 12, tzinfo=timezone.utc)}
    monkeypatch.setattr(calendar_page, "now_utc", lambda: clock["now"])
    csrf = await login(client, "root")
    warning = "2030 年尚无节假日安排，时限暂按周一至周五计算。"
    assert warning not in await (await client.get("/console/queue")).text()
    clock["now"] += timedelta(days=1)  # 1 November (Hohhot)
    assert warning in await (await client.get("/console/queue")).text()
    assert 'id="calendar-warning">2030 年尚无节假日安排' in await (await client.get("/console/dashboard")).text()
    resp = await client.post("/console/calendar/save", data=form(csrf, 2030, SPRING), allow_redirects=False)
    assert resp.status == 303
    assert warning not in await (await client.get("/console/queue")).text()
    await client.post("/console/logout", data={"csrf": csrf})
    await login(client, "disp")
    clock["now"] = datetime(2030, 11, 2, tzinfo=timezone.utc)  # 2031 missing, but not an admin
    assert "尚无节假日安排" not in await (await client.get("/console/dashboard")).text()

"""The 节假日安排 page with a real notice's size and with hostile input (an outside tester's
findings on issue 14), over HTTP on SQLite and PostgreSQL: as many rows as a notice needs
(more rows on every preview, 增加空行, or a pasted YAML block), an empty year refused, too
many ranges refused whole (never truncated), a row with only 结束 refused, a long source
refused, a 班 on a weekday refused, the diff listing only days that really change, a bad
?year= answered 400, GET on the POST-only routes answered like the page.

Schedules here are invented for the test (测试用通知（虚构）): nobody may guess a real one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.domain.clock import SHANGHAI
from bot.storage.tables import holiday_days, holiday_years, ticket_events
from tests.console.helpers import file, login, make_users

pytestmark = pytest.mark.asyncio
NOTICE = "测试用通知（虚构）"
Row = tuple[str, str, str, str]


def form(csrf: str, year: object, rows: list[Row], **extra: str) -> list[tuple[str, str]]:
    data = [("csrf", csrf), ("year", str(year))]
    for start, end, kind, source in rows:
        data += [("from", start), ("to", end), ("kind", kind), ("source", source)]
    return data + list(extra.items())


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()  # type: ignore[return-value]
                     for t in (holiday_days, holiday_years, ticket_events))


def from_inputs(html: str) -> list[str]:
    return re.findall(r'<input type="date" name="from" value="([^"]*)"', html)


def sixteen_ranges() -> list[Row]:
    """16 single days off, all weekdays of 2030 (a notice's size)."""
    day, rows = date(2030, 3, 4), []
    while len(rows) < 16:
        if day.weekday() < 5:
            rows.append((day.isoformat(), "", "休", NOTICE))
        day += timedelta(days=1)
    return rows


BLANK: Row = ("", "", "休", "")


async def test_a_notice_of_sixteen_ranges_can_be_entered_and_saved(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    csrf = await login(client, "root")
    page = await (await client.get("/console/calendar?year=2030")).text()
    assert from_inputs(page) == [""] * 6
    # 增加空行: the same rows back with ten more empty ones, nothing checked or saved.
    first6 = sixteen_ranges()[:6]
    resp = await client.post("/console/calendar/preview", data=form(csrf, 2030, first6, more="10"))
    html = await resp.text()
    assert resp.status == 200
    assert from_inputs(html) == [r[0] for r in first6] + [""] * 10
    # Preview: the rows submitted (blank ones dropped) plus at least six empty ones.
    rows = sixteen_ranges()
    resp = await client.post("/console/calendar/preview", data=form(csrf, 2030, rows[:10] + [BLANK] * 3 + rows[10:]))
    html = await resp.text()
    assert resp.status == 200, html
    assert from_inputs(html) == [r[0] for r in rows] + [""] * 6
    assert "变化（16 天）" in html
    resp = await client.post("/console/calendar/save", data=form(csrf, 2030, rows + [BLANK] * 6),
                             allow_redirects=False)
    assert resp.status == 303
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(holiday_days)).scalar_one() == 16


async def test_a_pasted_yaml_block_becomes_rows(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    csrf = await login(client, "root")
    paste = (f"year: 2030\nsource: {NOTICE}\nranges:\n  - {{from: 2030-02-04, to: 2030-02-10, kind: 休}}\n"
             "  - {date: 2030-02-02, kind: 班}\n")
    resp = await client.post("/console/calendar/preview", data=form(csrf, 2030, [BLANK] * 6, paste=paste))
    html = await resp.text()
    assert resp.status == 200, html
    assert from_inputs(html) == ["2030-02-04", "2030-02-02"] + [""] * 6
    assert '<td class="cal-day makeup" title="2030-02-02">2</td>' in html
    # The paste is checked like a file: the line is named, nothing saved.
    before = counts(engine)
    resp = await client.post("/console/calendar/save", data=form(
        csrf, 2030, [], paste="year: 2030\nsource: x\nranges:\n  - {date: 2030-02-02, kind: 休, note: y}\n"))
    assert resp.status == 400
    assert "第4行：未知的键 note" in await resp.text()
    assert counts(engine) == before


async def test_an_empty_year_is_refused_and_the_saved_one_kept(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    csrf = await login(client, "root")
    spring = [("2030-02-04", "2030-02-10", "休", NOTICE)]
    assert (await client.post("/console/calendar/save", data=form(csrf, 2030, spring),
                              allow_redirects=False)).status == 303
    before = counts(engine)
    for action in ("preview", "save"):
        resp = await client.post(f"/console/calendar/{action}", data=form(csrf, 2030, [BLANK] * 6),
                                 allow_redirects=False)
        assert resp.status == 400, action
        assert "没有任何日期范围" in await resp.text()
    assert counts(engine) == before


async def test_more_ranges_than_the_limit_are_refused_whole(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    csrf = await login(client, "root")
    day, rows = date(2030, 1, 1), []
    while len(rows) < 130:
        if day.weekday() < 5:
            rows.append((day.isoformat(), "", "休", NOTICE))
        day += timedelta(days=1)
    before = counts(engine)
    for n in (61, 130):
        for action in ("preview", "save"):
            resp = await client.post(f"/console/calendar/{action}", data=form(csrf, 2030, rows[:n]),
                                     allow_redirects=False)
            html = await resp.text()
            assert resp.status == 400, (n, action)
            assert f"共{n}个日期范围，最多60个" in html
            assert len(from_inputs(html)) >= n  # nothing the admin typed is dropped
    assert counts(engine) == before


@pytest.mark.parametrize(("rows", "message"), [
    ([("", "2030-02-05", "休", NOTICE)], "第1行：只填了结束日期"),
    ([("", "", "休", NOTICE)], "第1行：须填开始日期"),
    ([("2030-02-04", "", "休", "通" * 201)], "第1行：来源最长200字"),
    ([("2030-02-05", "", "班", NOTICE)], "第1行：2030-02-05 是星期二，本来就是工作日"),
], ids=["only-end", "only-source", "long-source", "makeup-on-weekday"])
async def test_bad_rows_are_refused(client: TestClient, engine: Engine, rows: list[Row], message: str) -> None:
    make_users(engine, ("root",))
    csrf = await login(client, "root")
    before = counts(engine)
    for action in ("preview", "save"):
        resp = await client.post(f"/console/calendar/{action}", data=form(csrf, 2030, rows), allow_redirects=False)
        assert resp.status == 400, action
        assert message in await resp.text()
    assert counts(engine) == before


async def test_the_diff_lists_only_days_that_change(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    csrf = await login(client, "root")
    rows = [("2030-02-04", "2030-02-10", "休", NOTICE), ("2030-02-02", "", "班", NOTICE)]
    html = await (await client.post("/console/calendar/preview", data=form(csrf, 2030, rows))).text()
    assert "变化（6 天）" in html  # 2 Feb, 4–8 Feb; the weekend 9–10 Feb stays a day off
    assert "<td>2030-02-09</td>" not in html
    assert "休息日（周一至周五）</td><td>休息日" not in html


@pytest.mark.parametrize("year", ["abc", "99999", "2101", "1999"])
async def test_a_bad_year_in_the_address_is_a_400(client: TestClient, engine: Engine, year: str) -> None:
    make_users(engine, ("root",))
    await login(client, "root")
    resp = await client.get(f"/console/calendar?year={year}")
    html = await resp.text()
    assert resp.status == 400
    assert "年份须为2000到2100之间的数字" in html
    assert 'name="from"' not in html  # no other year's rows shown in its place


async def test_get_on_preview_and_save_answers_like_the_page(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root", "disp"))
    csrf = await login(client, "disp")
    for path in ("/console/calendar/preview", "/console/calendar/save"):
        assert (await client.get(path, allow_redirects=False)).status == 404
    await client.post("/console/logout", data={"csrf": csrf})
    await login(client, "root")
    for path in ("/console/calendar/preview", "/console/calendar/save"):
        resp = await client.get(path, allow_redirects=False)
        assert (resp.status, resp.headers.get("Location")) == (303, "/console/calendar")


async def test_the_ticket_log_names_the_cli_user(client: TestClient, engine: Engine, tmp_path) -> None:
    from datetime import datetime

    make_users(engine, ("root",))
    ticket = file(engine, "m", at=datetime(2030, 2, 1, 10, tzinfo=SHANGHAI)).ticket_id
    path = tmp_path / "y.yml"
    path.write_text(f"year: 2030\nsource: {NOTICE}\nranges:\n  - {{date: 2030-02-02, kind: 班}}\n", encoding="utf-8")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root, "RASA_TELEMETRY_ENABLED": "false",
           "QC_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    run = subprocess.run([sys.executable, "-m", "bot", "calendar", "import", str(path), "--by", "tester"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    await login(client, "root")
    html = await (await client.get(f"/console/tickets/{ticket}")).text()
    assert '<div class="who">命令行（tester）</div>' in html
    assert "时限随节假日安排调整：2030-02-04 10:00 → 2030-02-02 10:00" in html

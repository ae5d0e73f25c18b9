"""The handling figures beside the 三率 (按时办结率, 退单率, 重办率, 平均办理时长) on the
dashboard and its CSV, on a generated June whose figures are worked out by hand below."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console import stats
from bot.console.uow import ConsoleUnitOfWork
from tests.console.helpers import OTHER_STREET, STREET, another_client, file, login, make_users

pytestmark = pytest.mark.asyncio

MONTH = "2026-06"
T0 = datetime(2026, 6, 10, 2, 0, tzinfo=timezone.utc)  # Wednesday 10 June, 10:00 in Hohhot
H = timedelta(hours=1)
D = timedelta(days=1)


def act(engine: Engine, user: str, ticket_id: int, action: str, at: datetime, **form: str) -> None:
    with ConsoleUnitOfWork(engine) as uow:
        p = svc.Principal.of(uow.console.get_user_by_username(user))
    svc.perform(ConsoleUnitOfWork(engine), p, ticket_id, action, form, at)


def june(engine: Engine) -> None:
    """All led by police_dog; 办结 limit 5 working days: filed 10 June 10:00 → due 17 June 10:00.

    Street A (海拉尔东路):
      a1  resolved after 24 h                                → on time
      a2  resolved after 240 h (20 June), then 重办            → late, re-opened
      a3  退单, 改派, 延期 3 working days granted (→ 23 June: 19 June is 端午), resolved after
          216 h (19 June)                                    → on time thanks to the extension, returned
      a4  never signed for, still open, long past its limit  → a miss, not resolved
    Street B (锡林北路):
      b1  resolved after 2 h                                 → on time
    """
    make_users(engine, ("grid", "other", "disp", "root"))
    a1 = file(engine, "a1", sender="r1", at=T0).ticket_id
    a2 = file(engine, "a2", sender="r2", at=T0).ticket_id
    a3 = file(engine, "a3", sender="r3", at=T0).ticket_id
    file(engine, "a4", sender="r4", at=T0)
    b1 = file(engine, "b1", sender="r5", street=OTHER_STREET, at=T0).ticket_id
    for tid in (a1, a2, a3):
        act(engine, "grid", tid, "accept", T0 + 2 * H)
    act(engine, "grid", a1, "resolve", T0 + 24 * H, result="已处理")
    act(engine, "grid", a2, "resolve", T0 + 240 * H, result="已处理")
    act(engine, "root", a2, "reopen", T0 + 250 * H, reason="居民反映仍未解决")
    act(engine, "grid", a3, "return", T0 + 3 * H, reason="不属于本街道")
    act(engine, "disp", a3, "redispatch", T0 + 4 * H, lead="police_dog", street=STREET)
    act(engine, "grid", a3, "accept", T0 + 5 * H)
    act(engine, "grid", a3, "extend", T0 + 6 * H, reason="需协调物业", days="3")
    act(engine, "disp", a3, "approve_extension", T0 + 7 * H)
    act(engine, "grid", a3, "resolve", T0 + 216 * H, result="已处理")
    act(engine, "other", b1, "accept", T0 + H)
    act(engine, "other", b1, "resolve", T0 + 2 * H, result="已处理")


def row_cells(page: str, name: str) -> list[str]:
    """The cells of the dashboard table row of one unit (the first table that has it: streets first)."""
    row = re.search(r"<tr><td class=\"num\">[^<]*</td><td>" + re.escape(name) + r"</td>(.*?)</tr>", page, re.S)
    assert row, name
    return [re.sub(r"\s+", " ", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]


async def test_handling_rates_on_the_page_and_in_its_csv(client: TestClient, engine: Engine) -> None:
    june(engine)
    await login(client, "root")
    page = await (await client.get(f"/console/dashboard?month={MONTH}")).text()
    # cells: 工单 响应率 解决率 满意率 综合得分 按时办结率 退单率 重办率 平均办理时长
    street_a = row_cells(page, "新城区 海拉尔东路街道")
    assert street_a[0] == "4"
    assert street_a[5:] == ["50.0%", "25.0%", "33.3%", "160.0 小时"]  # 2/4, 1/4, 1/3, (24+240+216)/3
    assert row_cells(page, "新城区 锡林北路街道")[5:] == ["100.0%", "0.0%", "0.0%", "2.0 小时"]
    dept = row_cells(page, "市公安局养犬管理")
    assert dept[0] == "5" and dept[5:] == ["60.0%", "20.0%", "25.0%", "120.5 小时"]  # 3/5, 1/5, 1/4, 482/4
    # each definition is on the page
    for words in ("按时办结率", "首次办结在当时的办结时限内（含批准的延期）的工单 / 应已办结的工单",
                  "退单率", "至少退单一次的工单 / 已派单到承办单位的工单",
                  "重办率", "至少重办一次的工单 / 至少办结一次的工单",
                  "平均办理时长", "从受理到首次办结的自然时长（小时）的平均值"):
        assert words in page
    assert f'href="/console/dashboard.csv?month={MONTH}&amp;' in page

    resp = await client.get(f"/console/dashboard.csv?month={MONTH}")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="rates-2026-06-')
    rows = {(r["类型"], r["单位代码"]): r for r in csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig")))}
    assert set(rows) == {("街道", STREET), ("街道", OTHER_STREET), ("部门", "police_dog")}
    figures = ("按时办结率%", "退单率%", "重办率%", "平均办理时长（小时）",
               "按时办结", "应已办结", "退单工单", "已派单", "重办工单", "已办结")
    assert [rows[("街道", STREET)][k] for k in figures] == ["50.0", "25.0", "33.3", "160.0", "2", "4", "1", "4", "1", "3"]
    assert [rows[("街道", OTHER_STREET)][k] for k in figures] == ["100.0", "0.0", "0.0", "2.0", "1", "1", "0", "1", "0", "1"]
    assert [rows[("部门", "police_dog")][k] for k in figures] == ["60.0", "20.0", "25.0", "120.5", "3", "5", "1", "5", "1", "4"]
    # the 三率 are in the CSV too: street A 响应率 3/4 (a4 never signed for), 解决率/满意率 without 回访
    assert [rows[("街道", STREET)][k] for k in ("工单", "响应率%", "解决率%", "满意率%", "按时签收", "应已响应")] == \
        ["4", "75.0", "", "", "3", "4"]

    # a street worker's CSV holds their own street only, like their page
    async with another_client(client) as c:
        await login(c, "other")
        resp = await c.get(f"/console/dashboard.csv?month={MONTH}")
        body = (await resp.read()).decode("utf-8-sig")
        keys = {(r["类型"], r["单位代码"]) for r in csv.DictReader(io.StringIO(body))}
        assert keys == {("街道", OTHER_STREET), ("部门", "police_dog")}
        assert "海拉尔东路" not in body


async def test_a_month_without_tickets_has_no_rates(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    await login(client, "root")
    page = await (await client.get("/console/dashboard?month=2026-01")).text()
    assert "本月没有工单。" in page
    body = (await (await client.get("/console/dashboard.csv?month=2026-01")).read()).decode("utf-8-sig")
    assert body.splitlines() == [",".join(stats.RATES_CSV_HEADER)]

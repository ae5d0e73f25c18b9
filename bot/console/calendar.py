"""Admin page: the holiday calendar (节假日安排).

    GET  /console/calendar?year=Y          the year's ranges (editable), as the store / library has them
    POST /console/calendar/preview         twelve month grids and what changes; nothing saved
    POST /console/calendar/save            checked again, saved whole; open deadlines it moves are adjusted

Admins only (other roles get 404, like every admin page); the session middleware checks CSRF.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from aiohttp import web

from bot.console.web import CONSOLE, PREFIX, now_utc, principal_of, render
from bot.domain.workcal import SHANGHAI, default_calendar
from bot.storage import holidays as hol
from bot.storage.repository import StaleTicket

BLANK_ROWS = 6
MAX_ROWS = 120


def _require_admin(request: web.Request) -> Any:
    p = principal_of(request)
    if p.role != "admin":
        raise web.HTTPNotFound()
    return p


def _rows_from_form(form: Any) -> list[dict[str, str]]:
    columns = {k: [str(v) for v in form.getall(k, [])][:MAX_ROWS] for k in ("from", "to", "kind", "source")}
    count = max((len(v) for v in columns.values()), default=0)
    return [{k: (columns[k][i] if i < len(columns[k]) else "") for k in columns} for i in range(count)]


def _rows_of(ranges: list[hol.DayRange]) -> list[dict[str, str]]:
    return [{"from": str(r.start), "to": str(r.end), "kind": r.kind, "source": r.source} for r in ranges]


def missing_year_warning() -> int | None:
    """Next year with no schedule (from 1 November), for the header and the dashboard."""
    calendar = default_calendar()
    if not isinstance(calendar, hol.CityWorkCalendar):
        return None
    return hol.missing_next_year(calendar, now_utc())


async def calendar_page(request: web.Request) -> web.Response:
    _require_admin(request)
    today = now_utc().astimezone(SHANGHAI).date()
    raw = request.query.get("year", "")
    year = int(raw) if raw.isdigit() and 2000 <= int(raw) <= 2100 else today.year + (1 if today.month >= 11 else 0)
    engine = request.app[CONSOLE].engine
    found = await asyncio.to_thread(hol.export_year, engine, year)
    source, ranges = found if found else ("weekday", [])
    rows = _rows_of(ranges) + [{"from": "", "to": "", "kind": "休", "source": ""} for _ in range(BLANK_ROWS)]
    return await render(request, "calendar.html", year=year, rows=rows, source=source, saved=request.query.get("saved"),
                        title="节假日安排")


def _check(engine: Any, year_text: str, rows: list[dict[str, str]]) -> tuple[int, dict[date, hol.DayRange]]:
    year, ranges = hol.parse_rows(year_text, rows)
    return year, hol.validate(year, ranges)


async def calendar_preview(request: web.Request) -> web.Response:
    _require_admin(request)
    form = request["form"]
    rows = _rows_from_form(form)
    engine = request.app[CONSOLE].engine
    try:
        year, days = _check(engine, str(form.get("year") or ""), rows)
    except hol.CalendarInputError as exc:
        return await render(request, "calendar.html", status=400, year=str(form.get("year") or ""), rows=rows,
                            error=str(exc), source=None, title="节假日安排")
    after, changes = await asyncio.to_thread(hol.preview, engine, year, days)
    months = [(m, hol.month_grid(after, year, m)) for m in range(1, 13)]
    return await render(request, "calendar.html", year=year, rows=rows, months=months, changes=changes,
                        preview=True, source=None, title="节假日安排")


async def calendar_save(request: web.Request) -> web.StreamResponse:
    p = _require_admin(request)
    form = request["form"]
    rows = _rows_from_form(form)
    engine = request.app[CONSOLE].engine
    try:
        year, days = _check(engine, str(form.get("year") or ""), rows)
    except hol.CalendarInputError as exc:
        return await render(request, "calendar.html", status=400, year=str(form.get("year") or ""), rows=rows,
                            error=str(exc), source=None, title="节假日安排")
    try:
        result = await asyncio.to_thread(hol.save_year, engine, year, days, p.actor, now_utc())
    except StaleTicket:  # a ticket changed while its deadline was being moved: nothing was saved
        return await render(request, "calendar.html", status=409, year=year, rows=rows, source=None,
                            error="保存时有工单正被处理，安排未保存，请再保存一次", title="节假日安排")
    raise web.HTTPSeeOther(f"{PREFIX}/calendar?year={year}&saved={len(result.moved)}")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/calendar", calendar_page)
    r.add_post(f"{PREFIX}/calendar/preview", calendar_preview)
    r.add_post(f"{PREFIX}/calendar/save", calendar_save)

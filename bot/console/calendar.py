"""Admin page: the holiday calendar (节假日安排).

    GET  /console/calendar?year=Y          the year's ranges (editable), as the store / library has them
                                           (a year not 2000–2100: 400)
    POST /console/calendar/preview         twelve month grids and what changes; nothing saved
    POST /console/calendar/save            checked again, saved whole; open deadlines it moves are adjusted
    GET  /console/calendar/preview|save    303 to the page (a reload after a POST)

The rows are never truncated: every preview gives back the rows filled in plus BLANK_ROWS
empty ones, 增加空行 adds MORE_ROWS, and a block in the file format can be pasted.

Admins only (other roles get 404, like every admin page); the session middleware checks CSRF.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from aiohttp import web

from bot.console.http import CONSOLE, PREFIX, form_text, render, require
from bot.domain.clock import SHANGHAI, now_utc
from bot.domain.workcal import default_calendar
from bot.storage import holidays as hol
from bot.storage.repository import StaleTicket

BLANK_ROWS = 6  # empty rows after the ones filled in, on the page and after every preview
MORE_ROWS = 10  # what 增加空行 adds
MAX_BLANK_ROWS = 60
FIELDS = ("from", "to", "kind", "source")
BAD_YEAR = "年份须为2000到2100之间的数字 / the year must be a number from 2000 to 2100"


def _blank() -> dict[str, str]:
    return {"from": "", "to": "", "kind": "休", "source": ""}


def _is_blank(row: dict[str, str]) -> bool:
    return not any(str(row.get(k) or "").strip() for k in ("from", "to", "source"))


def _rows_from_form(form: Any) -> list[dict[str, str]]:
    """Every row submitted, never truncated (validate refuses more than hol.MAX_RANGES)."""
    columns = {k: [str(v) for v in form.getall(k, [])] for k in FIELDS}
    count = max((len(v) for v in columns.values()), default=0)
    return [{k: (columns[k][i] if i < len(columns[k]) else "") for k in columns} for i in range(count)]


def _rows_of(ranges: list[hol.DayRange]) -> list[dict[str, str]]:
    return [{"from": str(r.start), "to": str(r.end), "kind": r.kind, "source": r.source} for r in ranges]


def _pasted(year_text: str, text: str) -> list[dict[str, str]]:
    """A pasted block in the file format (docs/holidays.md) → rows; checked like a file."""
    if len(text.encode("utf-8")) > hol.MAX_TEXT_BYTES:
        raise hol.CalendarInputError(f"粘贴的内容超过 {hol.MAX_TEXT_BYTES // 1024} KB / the pasted block is too large")
    try:
        year, ranges = hol.parse_yaml(text)
    except hol.CalendarInputError as exc:
        raise hol.CalendarInputError(f"粘贴的内容{exc}") from None
    if str(year) != str(year_text).strip():
        raise hol.CalendarInputError(f"粘贴的内容是{year}年的，本页是{year_text}年 / the pasted year differs")
    return [{"from": str(r.start), "to": "" if r.end == r.start else str(r.end), "kind": r.kind,
             "source": r.source} for r in ranges]


def missing_year_warning() -> int | None:
    """Next year with no schedule (from 1 November), for the header and the dashboard."""
    calendar = default_calendar()
    if not isinstance(calendar, hol.CityWorkCalendar):
        return None
    return hol.missing_next_year(calendar, now_utc())


async def calendar_page(request: web.Request) -> web.Response:
    require(request, "admin")
    today = now_utc().astimezone(SHANGHAI).date()
    raw = request.query.get("year")
    if raw is None or raw == "":
        year = today.year + (1 if today.month >= 11 else 0)
    elif raw.isascii() and raw.isdigit() and 2000 <= int(raw) <= 2100:
        year = int(raw)
    else:  # never another year's rows in place of the one asked for
        return await render(request, "calendar.html", status=400, year="", rows=None, error=BAD_YEAR,
                            source=None, title="节假日安排")
    engine = request.app[CONSOLE].engine
    found = await asyncio.to_thread(hol.export_year, engine, year)
    source, ranges = found if found else ("weekday", [])
    rows = _rows_of(ranges) + [_blank() for _ in range(BLANK_ROWS)]
    return await render(request, "calendar.html", year=year, rows=rows, source=source, saved=request.query.get("saved"),
                        title="节假日安排")


def _submitted(form: Any) -> tuple[str, list[dict[str, str]]]:
    """The form's year and rows: the filled rows, then a pasted block's (blank rows dropped)."""
    year_text = form_text(form, "year")
    rows = [r for r in _rows_from_form(form) if not _is_blank(r)]
    paste = form_text(form, "paste")
    if paste.strip():
        try:
            rows += _pasted(year_text, paste)
        except hol.CalendarInputError as exc:
            raise _Refused(str(exc), rows, paste) from None
    return year_text, rows


class _Refused(Exception):
    def __init__(self, message: str, rows: list[dict[str, str]], paste: str = "") -> None:
        super().__init__(message)
        self.rows, self.paste = rows, paste


def _check(year_text: str, rows: list[dict[str, str]]) -> tuple[int, dict[date, hol.DayRange]]:
    """The same rule as the CLI: hol.validate (never empty, at most hol.MAX_RANGES, …)."""
    try:
        year, ranges = hol.parse_rows(year_text, rows)
        return year, hol.validate(year, ranges)
    except hol.CalendarInputError as exc:
        raise _Refused(str(exc), rows) from None


def _padded(rows: list[dict[str, str]], blanks: int = BLANK_ROWS) -> list[dict[str, str]]:
    return rows + [_blank() for _ in range(blanks)]


async def _refused(request: web.Request, year_text: str, exc: _Refused) -> web.Response:
    return await render(request, "calendar.html", status=400, year=year_text, rows=_padded(exc.rows),
                        paste=exc.paste, error=str(exc), source=None, title="节假日安排")


async def calendar_preview(request: web.Request) -> web.Response:
    require(request, "admin")
    form = request["form"]
    engine = request.app[CONSOLE].engine
    year_text = form_text(form, "year")
    try:
        if form.get("more"):  # 增加空行: the rows back with more empty ones, nothing checked
            rows = [r for r in _rows_from_form(form) if not _is_blank(r)]
            blanks = sum(1 for r in _rows_from_form(form) if _is_blank(r))
            return await render(request, "calendar.html", year=year_text, rows=_padded(
                rows, min(blanks + MORE_ROWS, MAX_BLANK_ROWS)), paste=form_text(form, "paste"), source=None,
                title="节假日安排")
        year_text, rows = _submitted(form)
        year, days = _check(year_text, rows)
    except _Refused as exc:
        return await _refused(request, year_text, exc)
    after, changes = await asyncio.to_thread(hol.preview, engine, year, days)
    months = [(m, hol.month_grid(after, year, m)) for m in range(1, 13)]
    return await render(request, "calendar.html", year=year, rows=_padded(rows), months=months, changes=changes,
                        preview=True, source=None, title="节假日安排")


async def calendar_save(request: web.Request) -> web.StreamResponse:
    p = require(request, "admin")
    form = request["form"]
    engine = request.app[CONSOLE].engine
    year_text = form_text(form, "year")
    try:
        year_text, rows = _submitted(form)
        year, days = _check(year_text, rows)
    except _Refused as exc:
        return await _refused(request, year_text, exc)
    try:
        result = await asyncio.to_thread(hol.save_year, engine, year, days, p.actor, now_utc())
    except StaleTicket:  # a ticket changed while its deadline was being moved: nothing was saved
        return await render(request, "calendar.html", status=409, year=year, rows=_padded(rows), source=None,
                            error="保存时有工单正被处理，安排未保存，请再保存一次", title="节假日安排")
    raise web.HTTPSeeOther(f"{PREFIX}/calendar?year={year}&saved={len(result.moved)}")


async def calendar_get_post_route(request: web.Request) -> web.StreamResponse:
    """GET on preview/save (a reload, a bookmark): the page for admins, 404 like the page for others."""
    require(request, "admin")
    raise web.HTTPSeeOther(f"{PREFIX}/calendar")


def setup(app: web.Application) -> None:
    app[CONSOLE].missing_year = missing_year_warning
    r = app.router
    r.add_get(f"{PREFIX}/calendar", calendar_page)
    r.add_post(f"{PREFIX}/calendar/preview", calendar_preview)
    r.add_post(f"{PREFIX}/calendar/save", calendar_save)
    r.add_get(f"{PREFIX}/calendar/preview", calendar_get_post_route)
    r.add_get(f"{PREFIX}/calendar/save", calendar_get_post_route)

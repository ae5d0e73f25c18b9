"""Dashboard and CSV export pages (GET /console/dashboard, /console/export/…)."""

from __future__ import annotations

from aiohttp import web

from bot.console import services as svc
from bot.console import stats
from bot.console.http import CONSOLE, PREFIX, STATIC, error_html, form_text, principal_of, render, require
from bot.console.repository import TicketFilter
from bot.domain.clock import now_utc


def dashboard_scope(p: svc.Principal) -> TicketFilter:
    # The dispatch centre and admins watch the whole city; others their own queues.
    if p.role in ("admin", "dispatcher"):
        return TicketFilter(all_tickets=True)
    return TicketFilter(queues=tuple(sorted(p.queues)))


async def dashboard_page(request: web.Request) -> web.Response:
    p = principal_of(request)
    console = request.app[CONSOLE]
    weights = stats.parse_weights(request.query)
    board = await console.run(stats.dashboard, dashboard_scope(p), request.query.get("month"), weights, now_utc())
    chart_data = {
        "perDay": board.per_day,
        "perStreet": {"names": [n for n, _ in board.per_street], "counts": [c for _, c in board.per_street]},
        "openVsOverdue": {
            "names": [n for n, _, _ in board.open_vs_overdue],
            "open": [o for _, o, _ in board.open_vs_overdue],
            "overdue": [d for _, _, d in board.open_vs_overdue],
        },
    }
    return await render(
        request,
        "dashboard.html",
        board=board,
        chart_data=chart_data,
        rate_names=stats.RATE_NAMES,
        handling_names=stats.HANDLING_NAMES,
        definitions=stats.HANDLING_DEFINITIONS,
        echarts=(STATIC / "vendor" / "echarts.min.js").is_file(),
        title="看板",
    )


async def dashboard_csv(request: web.Request) -> web.StreamResponse:
    """The page's per-street and per-department figures as CSV, for the same month and scope
    as the page (no personal data: counts and rates only)."""
    p = principal_of(request)
    weights = stats.parse_weights(request.query)
    board = await request.app[CONSOLE].run(stats.dashboard, dashboard_scope(p), request.query.get("month"), weights,
                                           now_utc())
    headers = _csv_headers(f"rates-{board.month}")
    if request.method == "HEAD":
        return web.Response(headers=headers)
    return web.Response(body=stats.rates_csv(board), headers=headers)


async def export_index(request: web.Request, error: str = "", status: int = 200, reason: str = "") -> web.Response:
    require(request, "admin")
    return await render(request, "export.html", status=status, tables=stats.exportable_tables(), error=error,
                        reason=reason, max_reason=svc.MAX_REASON, title="导出")


def _csv_headers(name: str) -> dict[str, str]:
    return {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{name}-{now_utc():%Y%m%d}.csv"',
    }


async def export_table(request: web.Request) -> web.StreamResponse:
    """A table as CSV without 保密 tickets (logged); tickets.csv with a queue's view or search
    (/console/queue's parameters) holds only the tickets that queue page finds."""
    p = require(request, "admin")
    name = request.match_info["table"]
    console = request.app[CONSOLE]
    if name not in stats.exportable_tables():
        raise web.HTTPNotFound()
    ids = None
    if name == "tickets" and ("view" in request.query or svc.search_params(request.query)):
        try:
            search = svc.parse_search(request.query, p, now_utc(), console.config.phone_roles)
            ids = await console.run(svc.matching_ticket_ids, p, request.query.get("view") or "all", search, now_utc())
        except svc.NotFound:
            raise web.HTTPNotFound() from None
        except svc.ConsoleError as exc:
            return error_html(console, exc.status, "无法导出", exc.message)
    if request.method == "HEAD":
        return web.Response(headers=_csv_headers(name))  # nothing read, nothing to log
    body = await console.run(svc.export, p, name, None, now_utc(), ids)
    return web.Response(body=body, headers=_csv_headers(name))


async def export_confidential(request: web.Request) -> web.StreamResponse:
    """POST (the form): a table with 保密 tickets, for an admin who gives a reason (logged with it)."""
    p = require(request, "admin")
    form = request["form"]
    name = form_text(form, "table")
    raw = form_text(form, "reason")
    if name not in stats.exportable_tables():
        return await export_index(request, error="请选择要导出的表。", status=400, reason=raw[: svc.MAX_REASON])
    try:
        reason = svc.export_reason(raw)
    except svc.ConsoleError as exc:
        return await export_index(request, error=exc.message, status=exc.status, reason=raw[: svc.MAX_REASON])
    body = await request.app[CONSOLE].run(svc.export, p, name, reason, now_utc())
    return web.Response(body=body, headers=_csv_headers(name))


def setup(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/dashboard", dashboard_page)
    app.router.add_get(f"{PREFIX}/dashboard.csv", dashboard_csv)
    app.router.add_get(f"{PREFIX}/export", export_index)
    app.router.add_get(f"{PREFIX}/export/{{table}}.csv", export_table)
    app.router.add_post(f"{PREFIX}/export", export_confidential)

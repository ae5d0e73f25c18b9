"""Dashboard and CSV export pages (GET /console/dashboard, /console/export/…)."""

from __future__ import annotations

from aiohttp import web

from bot.console import services as svc
from bot.console import stats
from bot.console.http import CONSOLE, PREFIX, STATIC, error_html, principal_of, render, require
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
        echarts=(STATIC / "vendor" / "echarts.min.js").is_file(),
        title="看板",
    )


async def export_index(request: web.Request) -> web.Response:
    require(request, "admin")
    return await render(request, "export.html", tables=stats.exportable_tables(), title="导出")


async def export_table(request: web.Request) -> web.StreamResponse:
    """A table as CSV; tickets.csv with a queue's view or search (/console/queue's parameters)
    holds only the tickets that queue page finds."""
    p = require(request, "admin")
    name = request.match_info["table"]
    console = request.app[CONSOLE]
    ids = None
    if name == "tickets" and ("view" in request.query or svc.search_params(request.query)):
        try:
            search = svc.parse_search(request.query, p, now_utc())
            ids = await console.run(svc.matching_ticket_ids, p, request.query.get("view") or "all", search, now_utc())
        except svc.NotFound:
            raise web.HTTPNotFound() from None
        except svc.ConsoleError as exc:
            return error_html(console, exc.status, "无法导出", exc.message)
    try:
        body = await console.run(stats.export_csv, name, ids)
    except KeyError:
        raise web.HTTPNotFound() from None
    stamp = now_utc().strftime("%Y%m%d")
    return web.Response(
        body=body,
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"',
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/dashboard", dashboard_page)
    app.router.add_get(f"{PREFIX}/export", export_index)
    app.router.add_get(f"{PREFIX}/export/{{table}}.csv", export_table)

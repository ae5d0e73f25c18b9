"""个人信息查看记录: the personal-data view log, newest first, for admins
(GET /console/privacy/views?page=N). What is logged: bot/console/services/privacy.py."""

from __future__ import annotations

from aiohttp import web

from bot.console import services as svc
from bot.console.http import CONSOLE, PREFIX, render, require

FIELD_LABELS = {"phone": "电话", "description": "描述原文", "export": "导出 CSV",
                "caller_export": "来电人信息查询", "caller_erasure": "来电人信息删除"}


async def view_log_page(request: web.Request) -> web.Response:
    require(request, "admin")
    raw = request.query.get("page", "1")
    if not raw.isdigit() or len(raw) > 6:
        raise web.HTTPBadRequest()
    found = await request.app[CONSOLE].run(svc.view_log, int(raw))
    return await render(request, "viewlog.html", log=found, labels=FIELD_LABELS, title="个人信息查看记录")


def setup(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/privacy/views", view_log_page)

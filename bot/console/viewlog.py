"""Personal-data pages for admins: 个人信息查看记录, the view log, newest first
(GET /console/privacy/views?page=N), and 来电人信息, a phone caller's data looked up and
erased by their full number with a reason (/console/privacy/callers; the number travels
only in POST bodies, never in a URL). What is logged: bot/console/services/privacy.py."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.console import services as svc
from bot.console.http import CONSOLE, PREFIX, form_text, render, require
from bot.domain.clock import now_utc
from bot.text import mask_phone

FIELD_LABELS = {"phone": "电话", "description": "描述原文", "export": "导出 CSV",
                "caller_export": "来电人信息查询", "caller_erasure": "来电人信息删除"}


async def view_log_page(request: web.Request) -> web.Response:
    require(request, "admin")
    raw = request.query.get("page", "1")
    if not raw.isdigit() or len(raw) > 6:
        raise web.HTTPBadRequest()
    found = await request.app[CONSOLE].run(svc.view_log, int(raw))
    return await render(request, "viewlog.html", log=found, labels=FIELD_LABELS, title="个人信息查看记录")


async def _callers(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    return await render(request, "callers.html", status=status, max_reason=svc.MAX_REASON, title="来电人信息",
                        **context)


async def callers_page(request: web.Request) -> web.Response:
    require(request, "admin")
    return await _callers(request)


def _checked(form: Any, missing: str) -> tuple[str, str]:
    return svc.caller_phone(form_text(form, "phone").strip()), svc.export_reason(form_text(form, "reason"), missing)


async def callers_look_up(request: web.Request) -> web.Response:
    """POST: the caller's reports (what 查看我的信息 shows a resident), logged with the reason."""
    p = require(request, "admin")
    form = request["form"]
    try:
        phone, reason = _checked(form, "查询来电人信息须填写理由。")
    except svc.ConsoleError as exc:
        return await _callers(request, status=exc.status, error=exc.message, phone=form_text(form, "phone")[:32],
                              reason=form_text(form, "reason")[: svc.MAX_REASON])
    held = await request.app[CONSOLE].run(svc.caller_data, p, phone, reason, now_utc())
    return await _callers(request, held=held, phone=phone, masked=mask_phone(phone))


async def callers_erase(request: web.Request) -> web.Response:
    """POST: erase the caller's data (one transaction with its log row), with a reason."""
    p = require(request, "admin")
    form = request["form"]
    console = request.app[CONSOLE]
    try:
        phone, reason = _checked(form, "删除来电人信息须填写理由。")
    except svc.ConsoleError as exc:
        return await _callers(request, status=exc.status, error=exc.message, phone=form_text(form, "phone")[:32])
    erased = await console.run(svc.erase_caller, p, phone, reason, console.config.upload_dir, now_utc())
    return await _callers(request, erased=erased)


def setup(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/privacy/views", view_log_page)
    app.router.add_get(f"{PREFIX}/privacy/callers", callers_page)
    app.router.add_post(f"{PREFIX}/privacy/callers", callers_look_up)
    app.router.add_post(f"{PREFIX}/privacy/callers/erase", callers_erase)

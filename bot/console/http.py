"""The console's toolkit: what every page uses (the Console state under its AppKey,
rendering with the shared templates, error pages, reading forms, who is asking).
Pages import this module, never bot.console.app (the wiring), so no import circle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from markupsafe import Markup
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console.config import ConsoleConfig
from bot.console.names import category_label, channel_label, queue_label, street_label
from bot.console.notifier import Notifier
from bot.console.throttle import LoginThrottle
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.clock import SHANGHAI
from bot.domain.model import EVENT_KINDS
from bot.text import display_text, unstorable

log = logging.getLogger(__name__)


HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PREFIX = "/console"
SESSION_COOKIE = "qc_session"
LOGIN_CSRF_COOKIE = "qc_login_csrf"
PUBLIC_PATHS = (f"{PREFIX}/login", f"{PREFIX}/static/")


class Console:
    """Everything the console's handlers share (under the CONSOLE app key)."""

    def __init__(self, config: ConsoleConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine
        self.owns_engine = engine is None
        self.notifier: Notifier | None = None
        self.notifier_task: asyncio.Task | None = None
        self.throttle = LoginThrottle()
        # the header's "next year has no holiday schedule" check, set by the calendar page
        self.missing_year: Callable[[], int | None] | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=True,  # every template, whatever its file name
            trim_blocks=True,
            lstrip_blocks=True,
            # stored text shows invisible formatting (bidi overrides…) as ‹U+202E›, never applies it
            finalize=lambda v: display_text(v) if isinstance(v, str) and not isinstance(v, Markup) else v,
        )
        self.templates.filters.update(
            when=fmt_time,
            day=lambda dt: dt.astimezone(SHANGHAI).strftime("%Y-%m-%d") if dt else "",
            left=fmt_left,
            queue=queue_label,
            street=street_label,
            category=category_label,
            channel=channel_label,
            oneline=lambda v: display_text(str(v or ""), one_line=True),
        )
        self.templates.globals.update(EVENT_KINDS=EVENT_KINDS, PREFIX=PREFIX)

    def uow(self) -> ConsoleUnitOfWork:
        assert self.engine is not None, "console engine not started"
        return ConsoleUnitOfWork(self.engine)

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A synchronous service call with a fresh unit of work, in a worker thread."""
        return await asyncio.to_thread(fn, self.uow(), *args, **kwargs)


CONSOLE = web.AppKey("console", Console)
CONSOLE_CONFIG = web.AppKey("console_config", ConsoleConfig)  # set before start to override the environment
CONSOLE_ENGINE = web.AppKey("console_engine", Engine)  # set before start to share an engine (tests)


def fmt_time(dt: datetime | None, full: bool = False) -> str:
    if dt is None:
        return ""
    return dt.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M" if full else "%m-%d %H:%M")


def fmt_left(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    late = seconds < 0
    minutes = abs(seconds) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        text = f"{days}天{hours}小时"
    elif hours:
        text = f"{hours}小时{mins}分"
    else:
        text = f"{mins}分钟"
    return f"超期 {text}" if late else f"剩余 {text}"




# --- rendering -----------------------------------------------------------------


async def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    console = request.app[CONSOLE]
    principal: svc.Principal | None = request.get("principal")
    unread = 0
    missing_year = None
    if principal is not None and principal.role == "admin":
        if console.missing_year is not None:
            missing_year = await asyncio.to_thread(console.missing_year)
    if principal is not None:
        try:
            unread = await console.run(svc.unread_notices, principal)
        except Exception:  # noqa: BLE001 - a badge must never break a page
            log.exception("unread notice count failed")
    html = console.templates.get_template(template).render(
        principal=principal,
        csrf=request.get("csrf", ""),
        unread=unread,
        missing_year=missing_year,
        path=request.path,
        **context,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def error_html(console: Console, status: int, title: str, message: str, login: bool = False) -> web.Response:
    html = console.templates.get_template("error.html").render(
        status=status, title=title, message=message, login=login, principal=None, csrf="", unread=0, path=""
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


ERROR_TITLES = {
    400: ("请求有误", "提交的内容不完整或格式不对，请返回修改后再试。"),
    403: ("无法提交", "表单已失效或来源不明（安全校验未通过）。请返回刷新页面后重新提交。"),
    404: ("页面不存在", "没有这个页面，或您没有查看它的权限。"),
    405: ("不支持的操作", "这个地址不接受这种请求。"),
    409: ("操作未完成", "工单状态已变化，请刷新后再试。"),
    413: ("文件太大", "上传的内容超过了限制：照片不能超过 5 MB。"),
    500: ("系统出错了", "服务器处理请求时出错，已记录日志。请稍后再试。"),
}




def is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def unstorable_values(values: Any) -> bool:
    return any(isinstance(v, str) and unstorable(v) for v in values)



async def read_form(request: web.Request) -> Any:
    """The request's form; a body that is not one (undecodable bytes, broken multipart) → 400."""
    try:
        return await request.post()
    except web.HTTPException:
        raise  # e.g. 413 from aiohttp's size limit
    except Exception:  # not UTF-8, broken multipart (bad boundary or part headers): the client's fault
        raise web.HTTPBadRequest() from None



def form_text(form: Any, name: str) -> str:
    """A form field as text; "" when it is missing or empty."""
    return str(form.get(name) or "")


def same_origin(request: web.Request) -> bool:
    """A browser's Origin/Referer must name this host (SameSite=Lax does the rest)."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host



def forbidden(console: Console) -> web.Response:
    title, message = ERROR_TITLES[403]
    return error_html(console, 403, title, message)



def principal_of(request: web.Request) -> svc.Principal:
    return request["principal"]


def require(request: web.Request, *roles: str) -> svc.Principal:
    """The signed-in principal if its role is one of `roles`; pages a role may not use
    do not exist for it (404)."""
    p = principal_of(request)
    if p.role not in roles:
        raise web.HTTPNotFound()
    return p

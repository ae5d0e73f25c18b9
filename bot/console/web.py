"""The console's HTTP side: server-rendered pages under /console/ (jinja2, autoescape on
for every template), the session and CSRF middleware, clean error pages, and the
background notifier started with the app (cleanup_ctx).

    GET  /console/                      → the queue
    GET  /console/login, POST /console/login, POST /console/logout
    GET  /console/queue?view=open|done|all|dispatch|returned|overdue|extension&page=N
    GET  /console/tickets/{id}          timeline + the actions this user may take
    POST /console/tickets/{id}/{action} accept|work|return|extend|resolve|dispatch|redispatch|
                                        recategorise|reject_return|approve_extension|reopen
    GET  /console/attachments/{id}      an after-photo (permission-checked)
    GET  /console/tickets/{id}/photos/{report_id}  a resident's photo (permission-checked)
    GET  /console/notices               worker notices (the badge)
    GET  /console/dashboard, /console/export/… , /console/outbox, /console/users
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import jinja2
from markupsafe import Markup
from aiohttp import web
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console.config import ConsoleConfig
from bot.console.names import category_label, department_choices, queue_label, street_choices, street_label
from bot.console.notifier import Notifier, channels_for
from bot.console.throttle import LoginThrottle
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.model import EVENT_KINDS, TicketState, parse_ticket_number
from bot.domain.clock import SHANGHAI, now_utc
from bot.uploads import CONTENT_TYPES, MAX_PHOTO_BYTES, path_of
from bot.text import display_text, unstorable
from bot.web.clientaddr import client_address
from bot.web.keys import SETTINGS

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
        from bot.console.calendar import missing_year_warning

        missing_year = await asyncio.to_thread(missing_year_warning)
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


def _is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """Clean 4xx/5xx pages: never a stack trace. Console and unknown paths get HTML pages,
    Open311 gets its JSON error format; other features keep their own 4xx answers."""
    path = request.path
    ours = _is_console(path) or path.startswith("/open311/")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects
        unmatched = request.match_info.route.resource is None
        if not (ours or unmatched):
            raise  # another feature's own error answer
        if path.startswith("/open311/"):
            from bot.console.open311 import error_response

            return error_response(exc.status, exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason)
        title, message = ERROR_TITLES.get(exc.status, (exc.reason, "请求未能完成。"))
        response = error_html(request.app[CONSOLE], exc.status, title, message)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - logged with its trace; the user sees a clean page
        log.exception("unhandled error on %s %s", request.method, path)
        if path.startswith("/open311/"):
            from bot.console.open311 import error_response

            return error_response(500, "internal error")
        title, message = ERROR_TITLES[500]
        return error_html(request.app[CONSOLE], 500, title, message)


def _unstorable_values(values: Any) -> bool:
    return any(isinstance(v, str) and unstorable(v) for v in values)


async def read_form(request: web.Request) -> Any:
    """The request's form; a body that is not one (undecodable bytes, broken multipart) → 400."""
    try:
        return await request.post()
    except web.HTTPException:
        raise  # e.g. 413 from aiohttp's size limit
    except Exception:  # not UTF-8, broken multipart (bad boundary or part headers): the client's fault
        raise web.HTTPBadRequest() from None


@web.middleware
async def input_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """A NUL or a lone surrogate in the query string is refused with a 400 before any
    handler runs, in a path parameter with a 404 (nothing has that name): no store can
    keep them (PostgreSQL refuses NUL), and no person types them. (Form bodies:
    session_middleware and the log-in; Open311 checks its own.)"""
    if _unstorable_values(request.match_info.values()):
        raise web.HTTPNotFound()
    if _unstorable_values(request.query.keys()) or _unstorable_values(request.query.values()):
        raise web.HTTPBadRequest()
    return await handler(request)


CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


@web.middleware
async def headers_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    response = await handler(request)
    if _is_console(request.path):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.path.startswith(f"{PREFIX}/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
    return response


def _same_origin(request: web.Request) -> bool:
    """A browser's Origin/Referer must name this host (SameSite=Lax does the rest)."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


def forbidden(console: Console) -> web.Response:
    title, message = ERROR_TITLES[403]
    return error_html(console, 403, title, message)


@web.middleware
async def session_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    path = request.path
    if not _is_console(path) or path.startswith(PUBLIC_PATHS):
        return await handler(request)
    console = request.app[CONSOLE]
    token = request.cookies.get(SESSION_COOKIE, "")
    try:
        found = await console.run(svc.session_principal, token, now_utc()) if token else None
    except svc.SessionExpired:
        response = web.HTTPSeeOther(f"{PREFIX}/login?expired=1")
        response.del_cookie(SESSION_COOKIE, path=PREFIX)
        raise response from None
    if found is None:
        target = f"{PREFIX}/login"
        if request.method == "GET" and path not in (PREFIX, PREFIX + "/"):
            target += "?next=" + quote(request.path_qs, safe="")
        raise web.HTTPSeeOther(target)
    request["principal"], request["csrf"] = found
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        # Every state-changing request carries the session's CSRF token in its form.
        form = await read_form(request)
        request["form"] = form
        if _unstorable_values(form.keys()) or _unstorable_values(form.values()):
            raise web.HTTPBadRequest()
        if not _same_origin(request) or not svc.auth.same_token(str(form.get("csrf") or ""), request["csrf"]):
            log.warning("CSRF check failed for %s %s (user %s)", request.method, path, request["principal"].username)
            return forbidden(console)
    return await handler(request)


# --- log-in ---------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    # Only our own pages: never an open redirect.
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/queue"


async def login_page(request: web.Request) -> web.Response:
    return await _login_form(request)


async def _login_form(request: web.Request, error: str = "", status: int = 200, username: str = "") -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or svc.auth.new_token()
    message = ""
    if request.query.get("expired"):
        message = "登录已过期，请重新登录。"
    elif request.query.get("out"):
        message = "您已退出登录。"
    response = await render(
        request,
        "login.html",
        status=status,
        login_csrf=token,
        error=error,
        message=message,
        username=username,
        next=_safe_next(request.query.get("next")),
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, path=f"{PREFIX}/login", httponly=True, samesite="Lax",
        secure=request.app[CONSOLE].config.cookie_secure, max_age=3600,
    )
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await read_form(request)
    if _unstorable_values(form.values()):
        raise web.HTTPBadRequest()
    if not _same_origin(request) or not svc.auth.same_token(
        str(form.get("csrf") or ""), request.cookies.get(LOGIN_CSRF_COOKIE)
    ):
        return forbidden(console)
    username = str(form.get("username") or "")[:64]
    password = str(form.get("password") or "")[:256]
    ttl = timedelta(hours=console.config.session_hours)
    client = client_address(request.remote, request.headers.get("X-Forwarded-For", ""),
                            console.config.trusted_proxies)
    key = (client, username.strip().lower())
    if await console.throttle.blocked(key, now_utc()):
        return await _login_form(request, "登录失败次数过多，请 15 分钟后再试。", status=429, username=username)
    session = await console.run(svc.log_in, username, password, now_utc(), ttl)
    if session is None:
        await console.throttle.failed(key, now_utc())
        return await _login_form(request, "用户名或密码错误。", status=401, username=username)
    await console.throttle.succeeded(key)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next") or "")))
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        path=PREFIX,
        httponly=True,
        samesite="Lax",
        secure=console.config.cookie_secure,
        max_age=int(ttl.total_seconds()),
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path=f"{PREFIX}/login")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    await console.run(svc.log_out, request.cookies.get(SESSION_COOKIE, ""))
    response = web.HTTPSeeOther(f"{PREFIX}/login?out=1")
    response.del_cookie(SESSION_COOKIE, path=PREFIX)
    return response


# --- queue and tickets ----------------------------------------------------------


def principal_of(request: web.Request) -> svc.Principal:
    return request["principal"]


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(f"{PREFIX}/queue")


async def queue(request: web.Request) -> web.Response:
    p = principal_of(request)
    console = request.app[CONSOLE]
    views = svc.views_for(p)
    view = request.query.get("view") or ("dispatch" if p.role == "dispatcher" else "open")
    try:
        page = int(request.query.get("page", "1"))
    except ValueError:
        raise web.HTTPBadRequest() from None
    if not -(10**6) < page < 10**6:  # an OFFSET the database can hold
        raise web.HTTPBadRequest()
    try:
        result = await console.run(svc.queue_page, p, view, now_utc(), page)
    except svc.NotFound:
        raise web.HTTPNotFound() from None
    number = parse_ticket_number(request.query.get("ticket", ""))
    done = DONE_MESSAGES.get(request.query.get("done", ""), "")
    flash = f"{number} {done}" if number and done else ""
    return await render(request, "queue.html", page=result, views=views, title=views[view], done=flash)


def _ticket_id(request: web.Request) -> int:
    raw = request.match_info["ticket_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    return int(raw)


DONE_MESSAGES = {
    "accept": "已签收，请及时办理。",
    "work": "办理情况已记录。",
    "return": "已退单，等待派单中心审核。",
    "extend": "延期申请已提交，等待派单中心审批。",
    "resolve": "已办结，系统将通知居民并回访。",
    "dispatch": "已派单。",
    "redispatch": "已改派。",
    "recategorise": "已改类，工单已派给新类别的承办单位。",
    "reject_return": "已驳回退单，工单退回原办理人。",
    "approve_extension": "已批准延期，处理时限已顺延。",
    "reopen": "已重办，工单重新派给原承办单位。",
}


async def ticket_page(request: web.Request, error: str = "", status: int = 200, form: Any = None) -> web.Response:
    p = principal_of(request)
    console = request.app[CONSOLE]
    try:
        view = await console.run(svc.ticket_view, p, _ticket_id(request), now_utc())
    except svc.NotFound:
        raise web.HTTPNotFound() from None
    done = DONE_MESSAGES.get(request.query.get("done", ""), "") if not error else ""
    return await render(
        request,
        "ticket.html",
        status=status,
        v=view,
        t=view.ticket,
        now=now_utc(),
        error=error,
        done=done,
        form=form or {},
        departments=department_choices(),
        streets=street_choices(),
        categories=svc.recategorise_choices() if "recategorise" in view.actions else (),
        max_upload_mb=MAX_PHOTO_BYTES // (1024 * 1024),
        title=view.ticket.number,
    )


async def ticket_get(request: web.Request) -> web.Response:
    return await ticket_page(request)


async def ticket_action(request: web.Request) -> web.StreamResponse:
    p = principal_of(request)
    console = request.app[CONSOLE]
    ticket_id = _ticket_id(request)
    action = request.match_info["action"]
    if action not in svc.ACTIONS:
        raise web.HTTPNotFound()
    form = request["form"]
    photo = None
    field = form.get("photo")
    if isinstance(field, web.FileField):
        photo = field.file.read(MAX_PHOTO_BYTES + 1) or None
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        result = await console.run(svc.perform, p, ticket_id, action, fields, now_utc(), photo, console.config.upload_dir)
    except svc.NotFound:
        raise web.HTTPNotFound() from None
    except svc.ConsoleError as exc:
        return await ticket_page(request, error=exc.message, status=exc.status, form=fields)
    if console.notifier is not None:
        console.notifier.wake.set()  # announce it now rather than at the next tick
    if not result.visible:  # e.g. 派单: the ticket left the dispatcher's queue; its page would be a 404
        raise web.HTTPSeeOther(f"{PREFIX}/queue?done={action}&ticket={quote(result.number)}")
    raise web.HTTPSeeOther(f"{PREFIX}/tickets/{ticket_id}?done={action}")


async def attachment(request: web.Request) -> web.StreamResponse:
    p = principal_of(request)
    console = request.app[CONSOLE]
    raw = request.match_info["attachment_id"]
    if not raw.isdigit():
        raise web.HTTPNotFound()
    try:
        found = await console.run(svc.attachment_for, p, int(raw), now_utc())
        path = path_of(found.stored_name, console.config.upload_dir)
    except (svc.NotFound, ValueError):
        raise web.HTTPNotFound() from None
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        path,
        headers={
            "Content-Type": found.content_type,
            "Content-Disposition": "inline",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=3600",
        },
    )


async def report_photo(request: web.Request) -> web.StreamResponse:
    """A resident's photo (ticket_reports.photo), only to those who may see the ticket."""
    p = principal_of(request)
    console = request.app[CONSOLE]
    raw = request.match_info["report_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    try:
        name = await console.run(svc.report_photo, p, _ticket_id(request), int(raw), now_utc())
        path = path_of(name, console.config.upload_dir)
    except (svc.NotFound, ValueError):
        raise web.HTTPNotFound() from None
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        path,
        headers={
            "Content-Type": CONTENT_TYPES[path.suffix.lstrip(".")],
            "Content-Disposition": "inline",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=3600",
        },
    )


async def notices_page(request: web.Request) -> web.Response:
    p = principal_of(request)
    console = request.app[CONSOLE]
    found = await console.run(svc.notices, p, now_utc(), True)
    return await render(request, "notices.html", notices=found, title="通知")


# --- application wiring -----------------------------------------------------------


async def _console_ctx(app: web.Application) -> AsyncIterator[None]:
    console = app[CONSOLE]
    if CONSOLE_CONFIG in app:
        console.config = app[CONSOLE_CONFIG]
    if CONSOLE_ENGINE in app:
        console.engine, console.owns_engine = app[CONSOLE_ENGINE], False
    if console.engine is None:
        from bot.storage.engine import init_db, make_engine

        console.engine = make_engine(app[SETTINGS].database_url)
        await asyncio.to_thread(init_db, console.engine)
    from bot.storage import holidays

    calendar = holidays.install(console.engine)  # the city's holiday calendar, re-read every QC_CALENDAR_TTL s
    await asyncio.to_thread(svc.ensure_feed, console.uow(), now_utc())
    if console.config.seed_demo:
        created = await asyncio.to_thread(svc.seed_demo_accounts, console.uow(), now_utc())
        print_demo_accounts(created)
    http: aiohttp.ClientSession | None = None
    task: asyncio.Task | None = None
    if console.config.notifier:
        from bot.services.events import publisher_from_env

        http = aiohttp.ClientSession()
        console.notifier = Notifier(
            console.uow,
            channels_for(app[SETTINGS].rasa_url, console.config.rasa_token, http),
            interval=console.config.notifier_interval,
            sweep_every=console.config.sweep_every,
            publisher=publisher_from_env(console.engine),
        )
        task = asyncio.create_task(console.notifier.run(), name="console-notifier")
        console.notifier_task = task
    try:
        yield
    finally:
        await _stop_notifier(app)  # already done by on_shutdown when aiohttp ran it
        if http is not None:
            await http.close()
        holidays.uninstall(calendar)
        if console.owns_engine and console.engine is not None:
            console.engine.dispose()


async def _stop_notifier(app: web.Application) -> None:
    """Stop the notifier (the delivery in flight is finished and recorded) and close its
    RabbitMQ connection. Runs on_shutdown, before aiohttp waits (up to its shutdown_timeout)
    for every task started after start-up: the connection's reader tasks never end on their
    own, so the web server lingered until stop_stack's SIGKILL. Idempotent."""
    console = app[CONSOLE]
    task, console.notifier_task = console.notifier_task, None
    if task is not None and console.notifier is not None:
        await console.notifier.stop(task)
    if console.notifier is not None and console.notifier.publisher is not None:
        await console.notifier.publisher.close()


def print_demo_accounts(created: list[tuple[str, str, str, tuple[str, ...]]]) -> None:
    if not created:
        return
    print("Console demo accounts (passwords shown once; stored hashed — reset with "
          "`python -m bot console passwd USER`):", flush=True)
    for username, password, role, queues in created:
        where = ", ".join(queue_label(q) for q in queues) or "全部"
        print(f"  {username:<11} {password}   {role:<10} {where}", flush=True)


def setup_console(app: web.Application, engine: Engine | None = None, config: ConsoleConfig | None = None) -> None:
    app[CONSOLE] = Console(config or ConsoleConfig.from_env(), engine)
    app.middlewares.append(error_middleware)
    app.middlewares.append(input_middleware)
    app.middlewares.append(headers_middleware)
    app.middlewares.append(session_middleware)
    r = app.router
    r.add_get(PREFIX, home)
    r.add_get(PREFIX + "/", home)
    r.add_get(f"{PREFIX}/login", login_page)
    r.add_post(f"{PREFIX}/login", login_submit)
    r.add_post(f"{PREFIX}/logout", logout)
    r.add_get(f"{PREFIX}/queue", queue)
    r.add_get(f"{PREFIX}/tickets/{{ticket_id}}", ticket_get)
    r.add_post(f"{PREFIX}/tickets/{{ticket_id}}/{{action}}", ticket_action)
    r.add_get(f"{PREFIX}/attachments/{{attachment_id}}", attachment)
    r.add_get(f"{PREFIX}/tickets/{{ticket_id}}/photos/{{report_id}}", report_photo)
    r.add_get(f"{PREFIX}/notices", notices_page)
    r.add_static(f"{PREFIX}/static/", STATIC, follow_symlinks=False, append_version=False)
    from bot.console import admin, calendar, dashboard, open311, retraining

    calendar.setup(app)
    dashboard.setup(app)
    admin.setup(app)
    retraining.setup(app)
    open311.setup(app)
    app.cleanup_ctx.append(_console_ctx)
    app.on_shutdown.append(_stop_notifier)

"""The console's own pages: log-in and out, the queue, one ticket and its actions,
photos (permission-checked) and worker notices."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot.console import auth
from bot.console import services as svc
from bot.console.http import (
    CONSOLE,
    LOGIN_CSRF_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    error_html,
    forbidden,
    form_text,
    principal_of,
    read_form,
    render,
    same_origin,
    unstorable_values,
)
from bot.console.names import department_choices, street_choices
from bot.console.services import phrases
from bot.domain.clock import now_utc
from bot.domain.model import TicketState
from bot.domain.numbers import parse_ticket_number
from bot.uploads import CONTENT_TYPES, MAX_PHOTO_BYTES, path_of
from bot.web.clientaddr import client_address

# --- log-in ---------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    # Only our own pages: never an open redirect. "": the user's home page.
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


def home_of(p: svc.Principal) -> str:
    """Where a user lands: a 坐席 on the 转人工 queue, everyone else on the ticket queue."""
    return f"{PREFIX}/handoff" if p.role == "agent" else f"{PREFIX}/queue"


async def login_page(request: web.Request) -> web.Response:
    return await _login_form(request)


async def _login_form(request: web.Request, error: str = "", status: int = 200, username: str = "") -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or auth.new_token()
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
    if unstorable_values(form.values()):
        raise web.HTTPBadRequest()
    if not same_origin(request) or not auth.same_token(
        form_text(form, "csrf"), request.cookies.get(LOGIN_CSRF_COOKIE)
    ):
        return forbidden(console)
    username = form_text(form, "username")[:64]
    password = form_text(form, "password")[:256]
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
    response = web.Response(status=303, headers={"Location": _safe_next(form_text(form, "next"))
                                                     or home_of(session.principal)})
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
    response = web.Response(status=303, headers={"Location": f"{PREFIX}/login?out=1"})
    response.del_cookie(SESSION_COOKIE, path=PREFIX)
    return response


# --- queue and tickets ----------------------------------------------------------


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(home_of(principal_of(request)))


async def queue(request: web.Request) -> web.Response:
    p = principal_of(request)
    console = request.app[CONSOLE]
    views = svc.views_for(p)
    view = request.query.get("view") or default_view(p)
    try:
        page = int(request.query.get("page", "1"))
    except ValueError:
        raise web.HTTPBadRequest() from None
    if not -(10**6) < page < 10**6:  # an OFFSET the database can hold
        raise web.HTTPBadRequest()
    if view not in views:
        raise web.HTTPNotFound()
    context = {
        "views": views,
        "title": views[view],
        "params": svc.search_params(request.query),
        "query_string": svc.query_string,
        "may_search_phone": svc.may_see_phone(p.role, False, console.config.phone_roles),
        "categories": svc.category_names(),
        "departments": department_choices(),
        "streets": street_choices(),
        "states": [s.value for s in TicketState],
    }
    try:
        search = svc.parse_search(request.query, p, now_utc(), console.config.phone_roles)
        result = await console.run(svc.queue_page, p, view, now_utc(), page, search)
    except svc.NotFound:
        raise web.HTTPNotFound() from None
    except svc.ConsoleError as exc:  # a search that cannot run: the form again, with why
        empty = svc.QueuePage(view, [], {}, 0, 1, 1)
        return await render(request, "queue.html", status=exc.status, page=empty, error=exc.message, **context)
    number = parse_ticket_number(request.query.get("ticket", ""))
    done = DONE_MESSAGES.get(request.query.get("done", ""), "")
    flash = f"{number} {done}" if number and done else ""
    return await render(request, "queue.html", page=result, done=flash, **context)


def default_view(p: svc.Principal) -> str:
    return "dispatch" if p.role == "dispatcher" else "open"


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
    "ask": "问题已提交，将发到居民的对话中；居民的回复会记在处理过程里。",
}


async def ticket_page(request: web.Request, error: str = "", status: int = 200, form: Any = None,
                      revealed: tuple[int, str] | None = None) -> web.Response:
    p = principal_of(request)
    console = request.app[CONSOLE]
    try:
        view = await console.run(svc.ticket_view, p, _ticket_id(request), now_utc(), console.config.phone_roles, revealed)
        conversation = await console.run(svc.conversation_view, p, _ticket_id(request), now_utc(),
                                         console.config.transcript_stores)
    except svc.NotFound:
        raise web.HTTPNotFound() from None
    done = DONE_MESSAGES.get(request.query.get("done", ""), "") if not error else ""
    # 常用语 for the actions this user may take; ?phrase=<id> fills its text box without script
    choices = await console.run(phrases.phrases_for, view.ticket, view.actions)
    prefill = {action: text for action, found in choices.items() for pid, _, text in found
               if str(pid) == request.query.get("phrase")}
    return await render(
        request,
        "ticket.html",
        status=status,
        v=view,
        c=conversation,
        t=view.ticket,
        now=now_utc(),
        error=error,
        done=done,
        form=form or {},
        phrases=choices,
        prefill=prefill,
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
        with field.file:  # aiohttp's spooled temporary file: closed here, not by the garbage collector
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


async def ask(request: web.Request) -> web.StreamResponse:
    """POST 询问居民: the question goes to the resident's chat through the outbox."""
    p = principal_of(request)
    console = request.app[CONSOLE]
    ticket_id = _ticket_id(request)
    fields = {k: v for k, v in request["form"].items() if isinstance(v, str)}
    try:
        await console.run(svc.ask, p, ticket_id, fields, now_utc())
    except svc.NotFound:
        raise web.HTTPNotFound() from None
    except svc.ConsoleError as exc:
        return await ticket_page(request, error=exc.message, status=exc.status, form=fields)
    if console.notifier is not None:
        console.notifier.wake.set()
    raise web.HTTPSeeOther(f"{PREFIX}/tickets/{ticket_id}?done=ask")


async def answer_photo(request: web.Request) -> web.StreamResponse:
    """A resident's photo answer (居民补充), only to those who may see the ticket."""
    p = principal_of(request)
    console = request.app[CONSOLE]
    raw = request.match_info["question_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    try:
        name = await console.run(svc.answer_photo, p, _ticket_id(request), int(raw), now_utc())
        path = path_of(name, console.config.upload_dir)
    except (svc.NotFound, ValueError):
        raise web.HTTPNotFound() from None
    return _photo_file(path, CONTENT_TYPES[path.suffix.lstrip(".")])


async def reveal(request: web.Request) -> web.Response:
    """POST: the ticket's page with one report's phone or description unmasked, for a role
    that may see it; the view is logged first (services/privacy.py). A role that may not: 403."""
    p = principal_of(request)
    console = request.app[CONSOLE]
    ticket_id = _ticket_id(request)
    raw = request.match_info["report_id"]
    field = request.match_info["field"]
    if not raw.isdigit() or len(raw) > 12 or field not in svc.REVEALABLE:
        raise web.HTTPNotFound()
    try:
        await console.run(svc.reveal, p, ticket_id, int(raw), field, console.config.phone_roles, now_utc())
    except svc.NotFound:
        raise web.HTTPNotFound() from None
    except svc.NotPermitted:
        return error_html(console, 403, "无权查看", "您的角色不能查看这位居民的个人信息。")
    return await ticket_page(request, revealed=(int(raw), field))


def _photo_file(path: Path, content_type: str) -> web.FileResponse:
    """A stored photo, inline, never sniffed, cached only by the viewer's browser."""
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": "inline",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=3600",
        },
    )


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
    return _photo_file(path, found.content_type)


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
    return _photo_file(path, CONTENT_TYPES[path.suffix.lstrip(".")])


async def addition_photo(request: web.Request) -> web.StreamResponse:
    """A photo a resident added to their ticket (补充), only to those who may see the ticket."""
    p = principal_of(request)
    console = request.app[CONSOLE]
    raw = request.match_info["index"]
    if not raw.isdigit() or len(raw) > 6:
        raise web.HTTPNotFound()
    try:
        name = await console.run(svc.addition_photo, p, _ticket_id(request), int(raw), now_utc())
        path = path_of(name, console.config.upload_dir)
    except (svc.NotFound, ValueError):
        raise web.HTTPNotFound() from None
    return _photo_file(path, CONTENT_TYPES[path.suffix.lstrip(".")])


async def notices_page(request: web.Request) -> web.Response:
    p = principal_of(request)
    console = request.app[CONSOLE]
    found = await console.run(svc.notices, p, now_utc(), True)
    return await render(request, "notices.html", notices=found, title="通知")

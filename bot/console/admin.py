"""Admin pages: the outbox (every notification with its status, attempts and last error;
retry now) and accounts (create, reset password, disable; Open311 API keys)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.console import auth
from bot.console import services as svc
from bot.console.http import CONSOLE, PREFIX, form_text, render, require
from bot.console.names import department_choices, street_choices
from bot.console.tables import ROLES
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.clock import now_utc
from bot.domain.model import DISPATCH_CENTER


def _outbox(uow: ConsoleUnitOfWork, status: str | None) -> tuple[list[Any], dict[str, int]]:
    with uow:
        return uow.console.list_outbox(status=status or None), uow.console.outbox_counts()


async def outbox_page(request: web.Request) -> web.Response:
    require(request, "admin", "dispatcher")
    status = request.query.get("status") or None
    if status not in (None, "pending", "sent", "failed"):
        raise web.HTTPNotFound()
    messages, counts = await request.app[CONSOLE].run(_outbox, status)
    return await render(request, "outbox.html", messages=messages, counts=counts, shown_status=status, title="发件箱")


def _retry(uow: ConsoleUnitOfWork, message_id: int) -> bool:
    with uow:
        ok = uow.console.retry_now(message_id, now_utc())
        uow.commit()
        return ok


async def outbox_retry(request: web.Request) -> web.StreamResponse:
    require(request, "admin", "dispatcher")
    raw = request.match_info["message_id"]
    if not raw.isdigit():
        raise web.HTTPNotFound()
    console = request.app[CONSOLE]
    await console.run(_retry, int(raw))
    if console.notifier is not None:
        console.notifier.wake.set()
    raise web.HTTPSeeOther(f"{PREFIX}/outbox")


def _users(uow: ConsoleUnitOfWork) -> tuple[list[Any], list[dict[str, Any]]]:
    with uow:
        return uow.console.list_users(), uow.console.list_api_keys()


async def users_page(request: web.Request, error: str = "", shown: dict[str, str] | None = None, status: int = 200) -> web.Response:
    require(request, "admin")
    users, keys = await request.app[CONSOLE].run(_users)
    queues = [(DISPATCH_CENTER, "12345派单中心"), *department_choices(), *((f"street:{c}", n) for c, n in street_choices())]
    return await render(
        request, "users.html", status=status, users=users, keys=keys, roles=ROLES, queues=queues,
        error=error, shown=shown or {}, title="账号",
    )


async def users_create(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    form = request["form"]
    password = auth.random_password()
    queues = [str(q) for q in form.getall("queues", []) if str(q)]
    try:
        await request.app[CONSOLE].run(
            svc.create_user,
            form_text(form, "username"),
            form_text(form, "display_name"),
            password,
            form_text(form, "role"),
            queues,
            now_utc(),
        )
    except svc.ConsoleError as exc:
        return await users_page(request, error=exc.message, status=exc.status)
    return await users_page(request, shown={"用户": str(form.get("username")), "初始密码（只显示这一次）": password})


async def users_password(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    username = request.match_info["username"]
    password = auth.random_password()
    try:
        await request.app[CONSOLE].run(svc.set_password, username, password)
    except svc.ConsoleError as exc:
        return await users_page(request, error=exc.message, status=exc.status)
    return await users_page(request, shown={"用户": username, "新密码（只显示这一次）": password})


def _set_active(uow: ConsoleUnitOfWork, username: str, active: bool, me: int) -> None:
    with uow:
        user = uow.console.get_user_by_username(username)
        if user is None:
            raise svc.ConsoleError("没有这个用户", 404)
        if user.id == me:
            raise svc.ConsoleError("不能停用自己的账号", 400)
        uow.console.set_active(user.id, active)
        if not active:
            uow.console.delete_user_sessions(user.id)
        uow.commit()


async def users_active(request: web.Request) -> web.StreamResponse:
    p = require(request, "admin")
    active = request["form"].get("active") == "1"
    try:
        await request.app[CONSOLE].run(_set_active, request.match_info["username"], active, p.id)
    except svc.ConsoleError as exc:
        return await users_page(request, error=exc.message, status=exc.status)
    raise web.HTTPSeeOther(f"{PREFIX}/users")


API_KEY_SCOPES = ("public", "personal")  # personal: unmasked descriptions (bot/web/open311.py)


def create_api_key(uow: ConsoleUnitOfWork, name: str, scope: str = "public") -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= 128:
        raise svc.ConsoleError("请填写密钥名称（使用方）", 400)
    if scope not in API_KEY_SCOPES:
        raise svc.ConsoleError(f"密钥范围只能是 {' / '.join(API_KEY_SCOPES)}", 400)
    key = auth.new_token()
    with uow:
        uow.console.add_api_key(name, auth.token_hash(key), now_utc(), scope)
        uow.commit()
    return key


async def api_key_create(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    name = form_text(request["form"], "name")
    try:
        key = await request.app[CONSOLE].run(create_api_key, name)
    except svc.ConsoleError as exc:
        return await users_page(request, error=exc.message, status=exc.status)
    return await users_page(request, shown={"Open311 密钥": name, "api_key（只显示这一次）": key})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/outbox", outbox_page)
    r.add_post(f"{PREFIX}/outbox/{{message_id}}/retry", outbox_retry)
    r.add_get(f"{PREFIX}/users", users_page)
    r.add_post(f"{PREFIX}/users", users_create)
    r.add_post(f"{PREFIX}/users/{{username}}/password", users_password)
    r.add_post(f"{PREFIX}/users/{{username}}/active", users_active)
    r.add_post(f"{PREFIX}/api-keys", api_key_create)

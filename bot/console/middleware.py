"""The console's middlewares: clean error pages, refusing unstorable input, security
headers, and the session + CSRF check. Their order is set in bot/web/app.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot.console import auth
from bot.console import services as svc
from bot.console.http import (
    CONSOLE,
    ERROR_TITLES,
    PREFIX,
    PUBLIC_PATHS,
    SESSION_COOKIE,
    error_html,
    forbidden,
    form_text,
    is_console,
    read_form,
    same_origin,
    unstorable_values,
)
from bot.domain.clock import now_utc

log = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """Clean 4xx/5xx pages: never a stack trace. Console and unknown paths get HTML pages;
    other features keep their own answers (Open311 its JSON errors, bot/web/open311.py)."""
    path = request.path
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects
        unmatched = request.match_info.route.resource is None
        if not (is_console(path) or unmatched):
            raise  # another feature's own error answer
        title, message = ERROR_TITLES.get(exc.status, (exc.reason, "请求未能完成。"))
        response = error_html(request.app[CONSOLE], exc.status, title, message)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - logged with its trace; the user sees a clean page
        log.exception("unhandled error on %s %s", request.method, path)
        title, message = ERROR_TITLES[500]
        return error_html(request.app[CONSOLE], 500, title, message)


@web.middleware
async def input_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """A NUL or a lone surrogate in the query string is refused with a 400 before any
    handler runs, in a path parameter with a 404 (nothing has that name): no store can
    keep them (PostgreSQL refuses NUL), and no person types them. (Form bodies:
    session_middleware and the log-in; Open311 checks its own.)"""
    if unstorable_values(request.match_info.values()):
        raise web.HTTPNotFound()
    if unstorable_values(request.query.keys()) or unstorable_values(request.query.values()):
        raise web.HTTPBadRequest()
    return await handler(request)


CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


@web.middleware
async def headers_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    response = await handler(request)
    if is_console(request.path):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.path.startswith(f"{PREFIX}/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def session_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    path = request.path
    if not is_console(path) or path.startswith(PUBLIC_PATHS):
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
        if unstorable_values(form.keys()) or unstorable_values(form.values()):
            raise web.HTTPBadRequest()
        if not same_origin(request) or not auth.same_token(form_text(form, "csrf"), request["csrf"]):
            log.warning("CSRF check failed for %s %s (user %s)", request.method, path, request["principal"].username)
            return forbidden(console)
    return await handler(request)

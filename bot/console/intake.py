"""来电登记 pages (dispatchers and admins; any other role gets 404, as for every page it may not use).

    GET  /console/intake            the form (a fresh form token: the filing's idempotency key)
    GET  /console/intake/proposal   ?text=…&place=… → the routing explainer's proposal (JSON);
                                    坐席 ask it too (filing for a chat resident, bot/console/handoff.py)
    POST /console/intake            file the ticket (channel 电话); a wrong form is shown again

The console holds no NLU model: the proposal asks the Rasa server's /model/parse (its
--enable-api, the console's QC_RASA_TOKEN) with a short timeout. When it does not answer,
the proposal says so and the operator picks category and street by hand.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from bot.console import auth
from bot.console import services as svc
from bot.console.http import CONSOLE, PREFIX, render, require
from bot.console.names import street_choices
from bot.console.services import intake
from bot.domain.clock import now_utc
from bot.domain.numbers import parse_ticket_number
from bot.nlu.explain import explain
from bot.web.keys import SETTINGS

log = logging.getLogger(__name__)

BASE = f"{PREFIX}/intake"
PARSE_TIMEOUT_ENV = "QC_PARSE_TIMEOUT"  # seconds the proposal waits for /model/parse (default 2)
MAX_PARSE_CHARS = intake.MAX_DESCRIPTION + intake.MAX_PLACE + 1
NLU_HTTP = web.AppKey("intake_nlu_http", aiohttp.ClientSession)


def parse_timeout() -> float:
    return float(os.environ.get(PARSE_TIMEOUT_ENV) or 2)


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=parse_timeout()))
    app[NLU_HTTP] = session
    try:
        yield
    finally:
        await session.close()


async def parse_remote(request: web.Request, text: str) -> dict[str, Any] | None:
    """The Rasa server's parse of text, or None when it does not answer (in time, or at all)."""
    url = request.app[SETTINGS].rasa_url.rstrip("/") + "/model/parse"
    token = request.app[CONSOLE].config.rasa_token
    params = {"token": token} if token else {}
    try:
        async with request.app[NLU_HTTP].post(url, params=params, json={"text": text}) as resp:
            if resp.status != 200:
                log.warning("/model/parse answered HTTP %s", resp.status)
                return None
            parsed = await resp.json()
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        log.warning("/model/parse unreachable: %s", type(exc).__name__)
        return None
    return parsed if isinstance(parsed, dict) else None


async def page(request: web.Request, error: str = "", status: int = 200,
               form: dict[str, str] | None = None) -> web.Response:
    require(request, *intake.INTAKE_ROLES)
    values = dict(form or {})
    if not error:
        values = {"form_token": auth.new_token()}  # a new call, a new key
    number = parse_ticket_number(request.query.get("filed", "")) if not error else None
    return await render(
        request, "intake.html", status=status, error=error, form=values,
        filed=number, merged=request.query.get("merged") == "1",
        categories=intake.category_choices(), streets=street_choices(), title="来电登记",
    )


async def page_get(request: web.Request) -> web.Response:
    return await page(request)


async def proposal_get(request: web.Request) -> web.Response:
    require(request, *intake.PROPOSAL_ROLES)  # 坐席 too: the form on a 转人工 conversation
    words = " ".join(request.query.get("text", "").split())
    place = " ".join(request.query.get("place", "").split())
    if not words:
        return web.json_response({"available": True, "category": None})
    proposed = await propose(request, f"{place} {words}")
    return web.json_response(proposed if proposed is not None else intake.UNAVAILABLE)


async def propose(request: web.Request, text: str) -> dict[str, Any] | None:
    """The routing explainer's proposal for text (intake.proposal), or None when the Rasa
    server does not answer or answers something that is no parse."""
    text = text.strip()[:MAX_PARSE_CHARS]
    parsed = await parse_remote(request, text)
    if parsed is None:
        return None
    parsed["text"] = text
    try:
        return await asyncio.to_thread(lambda: intake.proposal(explain(parsed)))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # an answer not shaped like a parse
        log.warning("/model/parse answer unreadable: %s", type(exc).__name__)
        return None


async def submit(request: web.Request) -> web.StreamResponse:
    p = require(request, *intake.INTAKE_ROLES)
    console = request.app[CONSOLE]
    form = request["form"]
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        call = intake.read_call(fields)
        result = await console.run(intake.file_call, p, call, now_utc())
    except svc.ConsoleError as exc:
        return await page(request, error=exc.message, status=exc.status, form=fields)
    log.info("call filed as %s by %s (merged=%s replay=%s)", result.number, p.username, result.merged, result.replay)
    if console.notifier is not None:
        console.notifier.wake.set()
    merged = "&merged=1" if result.merged else ""
    raise web.HTTPSeeOther(f"{BASE}?filed={result.number}{merged}")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(BASE, page_get)
    r.add_post(BASE, submit)
    r.add_get(f"{BASE}/proposal", proposal_get)
    app.cleanup_ctx.append(_http_ctx)

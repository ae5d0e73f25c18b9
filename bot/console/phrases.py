"""常用语 pages (admins): GET /console/phrases lists the reply templates with a form to add
one; POST /console/phrases adds, /console/phrases/{id} changes, /console/phrases/{id}/delete
removes one. Workers use them on a ticket's action forms (views.ticket_page)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.console.http import CONSOLE, PREFIX, render, require
from bot.console.services import phrases as templates
from bot.console.services.access import ConsoleError, NotFound
from bot.domain.clock import now_utc
from bot.domain.model import CATEGORIES


def _template_id(request: web.Request) -> int:
    raw = request.match_info["template_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    return int(raw)


async def phrases_page(request: web.Request, error: str = "", status: int = 200, form: Any = None,
                       editing: int | None = None) -> web.Response:
    require(request, "admin")
    found = await request.app[CONSOLE].run(templates.list_templates)
    return await render(
        request, "phrases.html", status=status, templates=found, error=error, form=form or {}, editing=editing,
        actions=templates.ACTION_LABELS, categories=CATEGORIES, placeholders=templates.PLACEHOLDERS,
        saved=request.query.get("saved", "") if not error else "", title="常用语",
    )


async def _save(request: web.Request, template_id: int | None) -> web.StreamResponse:
    p = require(request, "admin")
    fields = {k: v for k, v in request["form"].items() if isinstance(v, str)}
    try:
        await request.app[CONSOLE].run(templates.save_template, p, template_id, fields, now_utc())
    except NotFound:
        raise web.HTTPNotFound() from None
    except ConsoleError as exc:
        return await phrases_page(request, error=exc.message, status=exc.status, form=fields, editing=template_id)
    raise web.HTTPSeeOther(f"{PREFIX}/phrases?saved=1")


async def phrases_create(request: web.Request) -> web.StreamResponse:
    return await _save(request, None)


async def phrases_update(request: web.Request) -> web.StreamResponse:
    return await _save(request, _template_id(request))


async def phrases_delete(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    await request.app[CONSOLE].run(templates.delete_template, _template_id(request))
    raise web.HTTPSeeOther(f"{PREFIX}/phrases?saved=1")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/phrases", phrases_page)
    r.add_post(f"{PREFIX}/phrases", phrases_create)
    r.add_post(f"{PREFIX}/phrases/{{template_id}}", phrases_update)
    r.add_post(f"{PREFIX}/phrases/{{template_id}}/delete", phrases_delete)

"""转人工 pages for 坐席 (agents) and admins; any other role gets 404, as for every page it may not use.

    GET  /console/handoff                  the conversations waiting for a person, longest-waiting first
    GET  /console/handoff/{id}             one conversation: its messages and steps
    POST /console/handoff/{id}/take        compare-and-set; the loser is told who holds it
    POST /console/handoff/{id}/say         the holder writes to the resident (delivered on their channel)
    POST /console/handoff/{id}/back        hand the conversation back to the assistant
    POST /console/handoff/{id}/close       end it (a waiting one, a 留言 dealt with, or the holder's)
    POST /console/handoff/{id}/file        file a ticket for the resident (代登记, services/handoff_filing.py)
    POST /console/handoff/{id}/knowledge   add the answer to a 咨询 item to the knowledge base
                                           (加入知识库, services/handoff_knowledge.py)

An agent sees the hand-offs in their languages (users.languages; "" = any agent), admins all;
any other hand-off does not exist for them (404). Phone and ID numbers in the messages are
masked unless the role may see phones (access.may_see_phone, QC_PHONE_ROLES).
"""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from bot.console import auth
from bot.console import intake as intake_views
from bot.console import services as svc
from bot.console.http import CONSOLE, PREFIX, form_text, render, require
from bot.console.names import street_choices
from bot.console.retraining import settings_of
from bot.console.services import handoff_filing, handoff_knowledge, intake
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.clock import now_utc
from bot.domain.handoff import REASONS, Handoff, HandoffState
from bot.domain.numbers import parse_ticket_number
from bot.retraining import knowledge
from bot.services import handoff
from bot.storage import pending_phones
from bot.storage.handoff import HandoffRepository
from bot.text import find_phone, mask_personal_data, mask_phone, valid_phone

log = logging.getLogger(__name__)

BASE = f"{PREFIX}/handoff"
AGENT_ROLES = ("agent", "admin")


def _languages(uow: ConsoleUnitOfWork, p: svc.Principal) -> frozenset[str] | None:
    """None: every language (admins)."""
    if p.is_admin:
        return None
    with uow:
        user = uow.console.get_user(p.id)
        return frozenset(user.languages if user else ())


def queue_view(uow: ConsoleUnitOfWork, p: svc.Principal) -> list[tuple[Handoff, int]]:
    languages = _languages(uow, p)
    now = now_utc()
    handoff.expire_waiting(uow, now, handoff.hours_from_env())
    with uow:
        found = HandoffRepository(uow.connection()).queue(languages)
    return [(h, int(h.waited(now).total_seconds() // 60)) for h in found]


def visible(uow: ConsoleUnitOfWork, p: svc.Principal, handoff_id: int) -> Handoff:
    languages = _languages(uow, p)
    with uow:
        h = HandoffRepository(uow.connection()).get(handoff_id)
    if h is None or (languages is not None and h.language and h.language not in languages):
        raise svc.NotFound(handoff_id)
    return h


def conversation_view(uow: ConsoleUnitOfWork, p: svc.Principal, handoff_id: int, phones: bool) -> dict:
    h = visible(uow, p, handoff_id)
    kept = handoff.kept_form(h)
    with uow:
        rows = HandoffRepository(uow.connection()).messages(handoff_id)
        # the form's phone is masked; a role that may see phones gets the number it stands for
        held = pending_phones.held_phone(uow.connection(), h.sender_id, now_utc()) if phones and kept else None
    if kept:
        kept["held_phone"] = held if held and mask_phone(held) == kept.get("phone") else ""
    # resident text is stored masked and shown masked to every role (the outside tester: agents
    # read full phone and ID numbers, unlogged); the words as typed serve only the 代登记 form's
    # phone field, for a role that may see phones — the number goes where a ticket keeps it
    messages = [{"author": r.author, "outgoing": r.outgoing, "at": r.created_at,
                 "text": mask_personal_data(r.text),
                 "undelivered": r.delivery_note if r.delivered_at is None else None} for r in rows]
    typed = [find_phone(r.typed) for r in rows if phones and r.typed and not r.outgoing]
    said_phone = next((n for n in reversed(typed) if n and valid_phone(n)), "")
    return {"handoff": h, "messages": messages, "kept": kept, "said_phone": said_phone}


def _id(request: web.Request) -> int:
    raw = request.match_info["handoff_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    return int(raw)


async def settle_messages(request: web.Request) -> int:
    """Read the 留言 nobody read yet (handoff_filing.settle_left): a complaint with a place is
    filed for the resident, anything else becomes a 咨询 item; a 留言 the Rasa server cannot
    read now stays as it is, in the list, for the next time. How many were filed."""
    console = request.app[CONSOLE]
    filed = 0
    for item in await console.run(handoff_filing.unsettled):
        proposed = await intake_views.propose(request, item.text)
        if proposed is None:
            continue
        if await console.run(handoff_filing.settle_left, item, proposed, now_utc()):
            filed += 1
    if filed and console.notifier is not None:
        console.notifier.wake.set()
    return filed


async def queue_page(request: web.Request) -> web.Response:
    p = require(request, *AGENT_ROLES)
    await settle_messages(request)
    items = await request.app[CONSOLE].run(queue_view, p)
    return await render(request, "handoff_queue.html", items=items, reasons=REASONS, title="转人工")


def _fresh_form(messages: list[dict], kept: dict, said_phone: str = "") -> dict[str, str]:
    """A new 代登记 form: a new token (the filing's idempotency key), the resident's words; or
    the complaint form's answers the resident did not confirm (诉求表单), with their words after."""
    words = "；".join(m["text"] for m in messages if m["author"] == "resident")
    form = {"form_token": auth.new_token(), "description": words[:intake.MAX_DESCRIPTION], "phone": said_phone}
    if kept:
        said = "；".join(w for w in (str(kept.get("description") or ""), words) if w)
        form.update(description=said[:intake.MAX_DESCRIPTION], place=str(kept.get("location") or "")[:intake.MAX_PLACE],
                    category=str(kept.get("category") or ""), street=str(kept.get("street") or ""),
                    community=str(kept.get("community") or ""), phone=str(kept.get("held_phone") or said_phone),
                    confidential="1" if kept.get("confidential") else "")
    return form


async def conversation_page(request: web.Request, error: str = "", status: int = 200,
                            form: dict[str, str] | None = None,
                            knowledge_form: dict[str, str] | None = None) -> web.Response:
    p = require(request, *AGENT_ROLES)
    console = request.app[CONSOLE]
    phones = svc.may_see_phone(p.role, False, console.config.phone_roles)
    try:
        view = await console.run(conversation_view, p, _id(request), phones)
    except svc.NotFound:
        raise web.HTTPNotFound() from None
    h = view["handoff"]
    filed = parse_ticket_number(request.query.get("filed", "")) if not error else None
    consult = handoff_knowledge.is_consult(h)
    if consult and knowledge_form is None:
        knowledge_form = await asyncio.to_thread(handoff_knowledge.fresh_form, h, view["messages"])
    added = request.query.get("topic", "") if not error else ""
    return await render(request, "handoff.html", status=status, error=error, reasons=REASONS, States=HandoffState,
                        mine=h.state is HandoffState.TAKEN and h.agent == p.actor,
                        may_file=handoff_filing.may_file(h, p.actor), form=form or _fresh_form(view["messages"], view["kept"], view["said_phone"]),
                        filed=filed, categories=intake.category_choices(), category_names=dict(intake.category_choices()), streets=street_choices(),
                        consult=consult, knowledge_form=knowledge_form or {},
                        added=added if knowledge.TOPIC_ID.fullmatch(added) else "", title="转人工会话", **view)


async def _file(request: web.Request, p: svc.Principal, handoff_id: int) -> web.StreamResponse:
    console = request.app[CONSOLE]
    fields = {k: v for k, v in request["form"].items() if isinstance(v, str) and k != "csrf"}
    try:
        call = intake.read_call(fields, phone_required=False)
        result = await console.run(handoff_filing.file_for_resident, p, handoff_id, call, now_utc())
    except svc.ConsoleError as exc:
        return await conversation_page(request, error=exc.message, status=exc.status, form=fields)
    log.info("hand-off %s: filed %s by %s (merged=%s replay=%s)", handoff_id, result.number, p.username,
             result.merged, result.replay)
    if console.notifier is not None:
        console.notifier.wake.set()
    raise web.HTTPSeeOther(f"{BASE}/{handoff_id}?filed={result.number}")


async def add_knowledge(request: web.Request) -> web.StreamResponse:
    p = require(request, *AGENT_ROLES)
    console = request.app[CONSOLE]
    handoff_id = _id(request)
    try:
        h = await console.run(visible, p, handoff_id)
    except svc.NotFound:
        raise web.HTTPNotFound() from None
    if not handoff_knowledge.is_consult(h):
        return await conversation_page(request, error="只有居民的咨询问题可以加入知识库。", status=409)
    form = {k: v for k, v in request["form"].items() if isinstance(v, str) and k.startswith("kb_")}
    try:
        topic = knowledge.checked(form.get("kb_id", ""), form.get("kb_title", ""),
                                  knowledge.split_keywords(form.get("kb_keywords", "")), form.get("kb_answer", ""))
        await asyncio.to_thread(knowledge.add_topic, settings_of(request).data_dir, topic)
    except knowledge.KnowledgeError as exc:
        return await conversation_page(request, error=str(exc), status=400, knowledge_form=form)
    # the question as stored (masked), never the words as typed
    view = await console.run(conversation_view, p, handoff_id, False)
    question = next((m["text"] for m in view["messages"] if m["author"] == "resident"), "")
    await console.run(handoff_knowledge.recorded, p, handoff_id, topic.id, question, now_utc())
    log.info("hand-off %s: topic %s added to the knowledge base by %s", handoff_id, topic.id, p.username)
    raise web.HTTPSeeOther(f"{BASE}/{handoff_id}?topic={topic.id}")


def _holder(exc: handoff.AlreadyTaken) -> str:
    if exc.holder:
        return f"该会话已由 {exc.holder.removeprefix('user:')} 接入（{exc.state.label}）。"
    return f"该会话已{exc.state.label}，无法操作。"


async def act(request: web.Request) -> web.StreamResponse:
    p = require(request, *AGENT_ROLES)
    console = request.app[CONSOLE]
    handoff_id, action = _id(request), request.match_info["action"]
    try:
        await console.run(visible, p, handoff_id)
    except svc.NotFound:
        raise web.HTTPNotFound() from None
    now = now_utc()
    try:
        if action == "take":
            await console.run(handoff.take, handoff_id, p.actor, p.display_name, now)
        elif action == "say":
            await console.run(handoff.say, handoff_id, p.actor, form_text(request["form"], "text"), now)
        elif action == "back":
            await console.run(handoff.hand_back, handoff_id, p.actor, now)
        elif action == "close":
            await console.run(handoff.close, handoff_id, p.actor, now)
        elif action == "file":
            return await _file(request, p, handoff_id)
        else:
            raise web.HTTPNotFound()
    except handoff.AlreadyTaken as exc:
        return await conversation_page(request, error=_holder(exc), status=409)
    except ValueError as exc:
        return await conversation_page(request, error=str(exc), status=400)
    log.info("hand-off %s: %s by %s", handoff_id, action, p.username)
    raise web.HTTPSeeOther(f"{BASE}/{handoff_id}")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(BASE, queue_page)
    r.add_get(f"{BASE}/{{handoff_id}}", conversation_page)
    r.add_post(f"{BASE}/{{handoff_id}}/knowledge", add_knowledge)  # before the {action} route: matched first
    r.add_post(f"{BASE}/{{handoff_id}}/{{action}}", act)

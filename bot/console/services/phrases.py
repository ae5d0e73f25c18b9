"""常用语 (reply templates): admins keep them per action (办结, 退单, 延期) and category; a
worker picks one on the action form, it fills the text box with the ticket's values, and
what the worker sends (edited or not) is what is saved — templates are never applied on
the server after the form.

Placeholders are a closed set: a template naming another one is refused when it is saved,
so a worker never sees a raw {something} in a filled text box."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.console.names import category_label, street_label
from bot.console.services.access import ConsoleError, NotFound, Principal
from bot.console.tables import REPLY_ACTIONS, reply_templates
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.clock import SHANGHAI
from bot.domain.model import CATEGORIES, Ticket
from bot.reference.gazetteer import default_gazetteer
from bot.text import mask_personal_data

ACTION_LABELS = {"resolve": "办结", "return": "退单", "extend": "延期"}
assert tuple(ACTION_LABELS) == REPLY_ACTIONS
PLACEHOLDERS = {"ticket_number": "工单编号", "place": "地点", "deadline": "办结时限"}
MAX_TITLE, MAX_BODY = 64, 2000  # the action forms' text boxes take 2000 characters
_BRACED = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class ReplyTemplate:
    id: int
    action: str
    category: str  # '' = every category
    title: str
    body: str
    updated_by: str
    updated_at: datetime


def check_body(body: str) -> None:
    """Refuse a template whose braces are not exactly the known placeholders."""
    unknown = [name for name in _BRACED.findall(body) if name not in PLACEHOLDERS]
    if unknown:
        names = "、".join(f"{{{n}}}" for n in PLACEHOLDERS)
        raise ConsoleError(f"未知的占位符 {'、'.join(f'{{{u}}}' for u in dict.fromkeys(unknown))}：只能使用 {names}", 400)
    if "{" in _BRACED.sub("", body) or "}" in _BRACED.sub("", body):
        raise ConsoleError("花括号只能用于占位符，例如 {ticket_number}", 400)


def place_of(ticket: Ticket) -> str:
    """The ticket's place by its public names (community, else street), else the words the
    resident gave with house numbers and personal data masked."""
    g = default_gazetteer()
    community = g.get(ticket.community_code) if ticket.community_code else None
    street = street_label(ticket.street_code)
    if street:
        return f"{street} {community.name}" if community is not None else street
    return mask_personal_data(ticket.location_text, public=True, address=True)


def render(body: str, ticket: Ticket) -> str:
    """The template's text for one ticket (plain text: the page escapes it like any text)."""
    values = {
        "ticket_number": ticket.number,
        "place": place_of(ticket),
        "deadline": ticket.finish_deadline().astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"),
    }
    return _BRACED.sub(lambda m: values.get(m.group(1), m.group(0)), body)


class ReplyTemplates:
    """The reply_templates table on the unit of work's connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self) -> list[ReplyTemplate]:
        t = reply_templates
        rows = self.conn.execute(select(t).order_by(t.c.action, t.c.category, t.c.title, t.c.id))
        return [ReplyTemplate(**dict(r._mapping)) for r in rows]

    def for_ticket(self, category: str) -> list[ReplyTemplate]:
        return [r for r in self.all() if r.category in ("", category)]

    def get(self, template_id: int) -> ReplyTemplate | None:
        row = self.conn.execute(select(reply_templates).where(reply_templates.c.id == template_id)).first()
        return ReplyTemplate(**dict(row._mapping)) if row is not None else None

    def add(self, values: dict[str, Any]) -> int:
        return int(self.conn.execute(insert(reply_templates).values(**values)).inserted_primary_key[0])

    def change(self, template_id: int, values: dict[str, Any]) -> bool:
        return self.conn.execute(
            update(reply_templates).where(reply_templates.c.id == template_id).values(**values)).rowcount == 1

    def remove(self, template_id: int) -> bool:
        return self.conn.execute(delete(reply_templates).where(reply_templates.c.id == template_id)).rowcount == 1


def _values(form: Mapping[str, Any]) -> dict[str, str]:
    action = str(form.get("action") or "").strip()
    category = str(form.get("category") or "").strip()
    title = str(form.get("title") or "").strip()
    body = str(form.get("body") or "").strip().replace("\r\n", "\n")
    if action not in ACTION_LABELS:
        raise ConsoleError("请选择用于办结、退单还是延期", 400)
    if category and category not in CATEGORIES:
        raise ConsoleError("未知的类别", 400)
    if not title or len(title) > MAX_TITLE:
        raise ConsoleError(f"请填写名称（最多{MAX_TITLE}字）", 400)
    if not body or len(body) > MAX_BODY:
        raise ConsoleError(f"请填写内容（最多{MAX_BODY}字）", 400)
    check_body(body)
    return {"action": action, "category": category, "title": title, "body": body}


def list_templates(uow: ConsoleUnitOfWork) -> list[ReplyTemplate]:
    with uow:
        return ReplyTemplates(uow.connection()).all()


def save_template(uow: ConsoleUnitOfWork, p: Principal, template_id: int | None, form: Mapping[str, Any],
                  now: datetime) -> int:
    """Add (template_id None) or change one template; admins only (the page checks the role)."""
    values = {**_values(form), "updated_by": p.username, "updated_at": now}
    same = f"已有同名常用语：{ACTION_LABELS[values['action']]}·{category_label(values['category']) or '通用'}·{values['title']}"
    try:
        with uow:
            store = ReplyTemplates(uow.connection())
            if template_id is None:
                template_id = store.add(values)
            elif not store.change(template_id, values):
                raise NotFound(template_id)
            uow.commit()
    except IntegrityError:
        raise ConsoleError(same, 409) from None
    return template_id


def delete_template(uow: ConsoleUnitOfWork, template_id: int) -> bool:
    """True when it was there (a second click finds nothing and changes nothing)."""
    with uow:
        gone = ReplyTemplates(uow.connection()).remove(template_id)
        uow.commit()
        return gone


def phrases_for(uow: ConsoleUnitOfWork, ticket: Ticket, actions: list[str]) -> dict[str, list[tuple[int, str, str]]]:
    """For each of `actions` the worker may take: (id, title, the text filled for this ticket)."""
    wanted = [a for a in actions if a in ACTION_LABELS]
    if not wanted:
        return {}
    with uow:
        found = ReplyTemplates(uow.connection()).for_ticket(ticket.category)
    out: dict[str, list[tuple[int, str, str]]] = {a: [] for a in wanted}
    for r in found:
        if r.action in out:
            out[r.action].append((r.id, r.title, render(r.body, ticket)))
    return out

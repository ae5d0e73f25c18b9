"""The conversation behind a ticket: the chat that produced it (Rasa's tracker events,
stored masked) and the handlers' questions to its residents (询问居民 → 居民补充).

Transcripts are shown with the ticket page's masking rule (privacy.masked_description:
phone and ID numbers masked, and for a unit reading a 保密 ticket the resident's names and
house numbers too). Phone (来电登记) and Open311 reports have no conversation."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from bot.console.services.access import ConsoleError, Principal, can_see, get_visible, is_member
from bot.console.services.handling import allowed_actions
from bot.console.services.notices import NO_PUSH_CHANNELS
from bot.console.services.privacy import masked_description
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.model import ASK, InvalidTransition, Ticket
from bot.services.tickets import retry_on_stale
from bot.storage import questions as qs
from bot.storage.repository import StaleTicket
from bot.storage.transcripts import Transcripts
from bot.uploads import own_photo_name

MAX_QUESTION = 500
MAX_TURNS = 300
EXTERNAL_PREFIX = "EXTERNAL: "  # Rasa's text for an intent triggered through its HTTP API
PENDING_KEY = "qc_pending"  # a message kept while the action server was down (replayed later)


@dataclass(frozen=True)
class Turn:
    who: str  # 居民 | 助手
    at: datetime
    text: str


@dataclass(frozen=True)
class Transcript:
    report_id: int
    channel: str
    turns: tuple[Turn, ...]
    note: str  # why there is nothing to show, or ""


def _at(event: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromtimestamp(float(event.get("timestamp") or 0), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(0, timezone.utc)


def _session(events: Sequence[Mapping[str, Any]], filed_at: datetime) -> Sequence[Mapping[str, Any]]:
    """The session the ticket was filed in: from the last session start at or before the
    filing to the next one."""
    starts = [i for i, e in enumerate(events) if e.get("event") == "session_started"]
    cut = filed_at.timestamp()
    begin = max((i for i in starts if float(events[i].get("timestamp") or 0) <= cut), default=0)
    end = min((i for i in starts if i > begin), default=len(events))
    return events[begin:end]


def _resident_text(text: str, offered: Mapping[str, str]) -> str:
    if not text.startswith("/"):
        return text
    if text.startswith("/inform{"):
        try:
            entities = json.loads(text[len("/inform"):])
        except ValueError:
            entities = None
        if isinstance(entities, dict) and own_photo_name(entities.get("photo")):
            return "［照片］"
    title = offered.get(text)
    return f"［点击：{title}］" if title else "［点击按钮］"


def turns_of(events: Sequence[Mapping[str, Any]], filed_at: datetime, limit: int = MAX_TURNS) -> list[Turn]:
    """Resident and assistant turns of the session the ticket was filed in, as stored."""
    out: list[Turn] = []
    offered: dict[str, str] = {}  # the last buttons' payload → title: a click shows its title
    for e in _session(events, filed_at):
        kind = e.get("event")
        text = e.get("text")
        if kind == "user" and isinstance(text, str):
            if text.startswith(EXTERNAL_PREFIX) or (e.get("metadata") or {}).get(PENDING_KEY):
                continue  # a push from the console (its answer is the assistant's turn), or kept for a replay
            out.append(Turn("居民", _at(e), _resident_text(text.strip(), offered)))
        elif kind == "bot":
            buttons = ((e.get("data") or {}).get("buttons") or []) if isinstance(e.get("data"), dict) else []
            titles = [str(b.get("title")) for b in buttons if isinstance(b, dict) and b.get("title")]
            offered = {str(b.get("payload")): str(b.get("title")) for b in buttons
                       if isinstance(b, dict) and b.get("payload")}
            line = text if isinstance(text, str) else ""
            if titles:
                line = f"{line}\n［按钮：{' / '.join(titles)}］" if line else f"［按钮：{' / '.join(titles)}］"
            if line:
                out.append(Turn("助手", _at(e), line))
    return out[-limit:]


def transcripts(reports: Sequence[Any], stores: Callable[[], list[Transcripts]], role: str) -> list[Transcript]:
    """One transcript per resident (report), masked for `role`."""
    confidential = any(r.confidential for r in reports)
    out = []
    opened: list[Transcripts] | None = None
    try:
        for r in reports:
            if r.channel == "phone":
                out.append(Transcript(r.id, r.channel, (), "电话登记的工单，没有对话记录。"))
                continue
            if r.channel in NO_PUSH_CHANNELS:
                out.append(Transcript(r.id, r.channel, (), "通过 Open311 接口提交，没有对话记录。"))
                continue
            if opened is None:
                opened = stores()
            events: list[dict] = []
            for store in opened:
                events += store.events_of(r.sender_id)
            events.sort(key=lambda e: float(e.get("timestamp") or 0))
            turns = tuple(Turn(t.who, t.at, masked_description(t.text, role, confidential))
                          for t in turns_of(events, r.created_at))
            out.append(Transcript(r.id, r.channel, turns, "" if turns else "没有找到对话记录（可能已按保留期限删除）。"))
    finally:
        for store in opened or ():
            store.close()
    return out


# --- questions to the resident ---------------------------------------------------------


def may_ask(p: Principal, ticket: Ticket, now: datetime) -> bool:
    """Whoever may act on the ticket: its units' members, admins, and the dispatch centre
    when it has a move to make on it; a ticket that is open."""
    if not ticket.is_open or not can_see(p, ticket, now):
        return False
    return p.is_admin or is_member(p, ticket) or bool(allowed_actions(p, ticket, now))


def askable(reports: Sequence[Any]) -> list[Any]:
    """The reports whose resident can be reached in a chat: one per conversation."""
    seen: set[str] = set()
    out = []
    for r in reports:
        if r.channel in NO_PUSH_CHANNELS or r.sender_id in seen:
            continue
        seen.add(r.sender_id)
        out.append(r)
    return out


def ask(uow: ConsoleUnitOfWork, p: Principal, ticket_id: int, form: Mapping[str, Any], now: datetime) -> str:
    """询问居民: the question row and the ticket event in one transaction; the notifier's feed
    queues the message. Returns the ticket number."""
    question = str(form.get("question") or "").strip()
    wanted = str(form.get("report_id") or "").strip()

    def once() -> str:
        with uow:
            ticket = get_visible(uow, p, ticket_id, now)
            assert ticket.id is not None
            if not may_ask(p, ticket, now):
                raise ConsoleError("只有承办本工单的单位、派单中心或管理员可以询问居民" if ticket.is_open
                                   else f"工单 {ticket.number} 已{ticket.state.value}，不能再询问居民", 403)
            if not question:  # (after the checks above: a ticket one may not see stays a 404)
                raise ConsoleError("请填写要询问居民的问题", 400)
            if len(question) > MAX_QUESTION:
                raise ConsoleError(f"问题过长（最多{MAX_QUESTION}字）", 400)
            targets = askable(uow.console.reports(ticket.id))
            if not targets:
                raise ConsoleError("这张工单没有可以联系的对话（电话登记或 Open311），请致电居民。", 409)
            report = next((r for r in targets if str(r.id) == wanted), None) if wanted else targets[0]
            if report is None:
                raise ConsoleError("请选择要询问的居民", 400)
            question_id = qs.add(uow.connection(), ticket.id, report.id, report.sender_id, question, p.id, now)
            try:
                # no sender id in the append-only log: the retention job could not remove it
                ticket.apply(ASK, p.actor, question, now, question_id=question_id, report_id=report.id)
            except InvalidTransition as exc:
                raise ConsoleError(str(exc).split(" / ")[0]) from None
            uow.tickets.save_events(ticket)
            uow.commit()
            return ticket.number

    try:
        return retry_on_stale(once)
    except StaleTicket:
        raise ConsoleError("工单刚被他人修改，请刷新后重试") from None


WINDOW_CLOSED_CODES = ("45015", "45047")


def delivery_label(q: qs.Question) -> str:
    """How far the question got, in the words the ticket page shows."""
    if q.answered_at is not None:
        return "居民已回复"
    if q.status == "sent":
        return "已发给居民，等待回复"
    if q.status == "failed":
        error = q.last_error or ""
        if any(code in error for code in WINDOW_CLOSED_CODES):
            return ("未送达：居民超过48小时未在微信里发消息，微信客服消息窗口已关闭；"
                    "居民再发消息后会自动重发，急事请致电居民")
        return f"未送达（已试 {q.attempts} 次，将自动重试）"
    return "等待发送"


@dataclass(frozen=True)
class ShownQuestion:
    id: int
    question: str
    asked_at: datetime
    status: str
    failed: bool


@dataclass(frozen=True)
class ConversationView:
    transcripts: list[Transcript]
    questions: list[ShownQuestion]
    may_ask: bool
    targets: list[Any]  # the reports a question may go to
    answer_photos: dict[int, int]  # event index in ticket.events → question id (a photo answer)


def conversation_view(uow: ConsoleUnitOfWork, p: Principal, ticket_id: int, now: datetime,
                      stores: Callable[[], list[Transcripts]]) -> ConversationView:
    with uow:
        ticket = get_visible(uow, p, ticket_id, now)
        assert ticket.id is not None
        reports = uow.console.reports(ticket.id)
        asked = qs.for_ticket(uow.connection(), ticket.id)
    confidential = any(r.confidential for r in reports)
    shown = [ShownQuestion(q.id, masked_description(q.question, p.role, confidential), q.asked_at, delivery_label(q),
                           q.status == "failed" and q.answered_at is None) for q in asked]
    photos = {i: int(e.data["question_id"]) for i, e in enumerate(ticket.events)
              if e.data.get("photo") and e.data.get("question_id")}
    return ConversationView(transcripts(reports, stores, p.role), shown, may_ask(p, ticket, now), askable(reports),
                            photos)


def answer_photo(uow: ConsoleUnitOfWork, p: Principal, ticket_id: int, question_id: int, now: datetime) -> str:
    """The stored file name of a resident's photo answer on a ticket this user may see."""
    from bot.console.services.access import NotFound

    with uow:
        ticket = get_visible(uow, p, ticket_id, now)
    for e in ticket.events:
        if e.data.get("question_id") == question_id and e.data.get("photo"):
            name = own_photo_name(e.data["photo"])
            if name:
                return name
    raise NotFound(question_id)

"""Console use cases: accounts and sessions, who sees which ticket, the handling cycle,
escalation rules and the notifications they cause. Every function takes a unit of work
(like bot.services.tickets) and the current time; nothing here knows about HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

from sqlalchemy.exc import IntegrityError

from bot.console import auth
from bot.console.names import category_label, is_known_queue, queue_label
from bot.console.repository import Attachment, OutboxMessage, TicketFilter, User
from bot.console.tables import ROLES
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.model import (
    ACCEPT,
    APPROVE_EXTENSION,
    CATEGORIES,
    DISPATCH,
    DISPATCH_CENTER,
    ESCALATE,
    EXTEND,
    FOLLOW_UP,
    MERGE,
    OPEN_STATES,
    RECATEGORISE,
    REDISPATCH,
    REJECT_RETURN,
    REOPEN,
    RESOLVE,
    RETURN,
    ROUTING_KINDS,
    SUPERVISE,
    TRANSITIONS,
    WORK,
    InvalidTransition,
    Ticket,
    TicketState,
)
from bot.domain.workcal import default_calendar
from bot.reference.gazetteer import default_gazetteer
from bot.reference.routing import default_catalogue, street_queue
from bot.storage.repository import StaleTicket
from bot.uploads import (
    StoredFile,
    UploadRejected,
    own_photo_name,
    photo_owner,
    store_image,
    upload_folder,
)

log = logging.getLogger(__name__)

SESSION_TTL = timedelta(hours=8)
FEED = "notifications"
# Report channels a notice cannot be pushed to (the client polls, e.g. Open311).
NO_PUSH_CHANNELS = frozenset({"open311"})
SATISFACTION = ("满意", "基本满意", "不满意")
MAX_ATTEMPTS = 3


# --- errors ------------------------------------------------------------------


class ConsoleError(Exception):
    """A refusal the user should read (bad input, a lost race, a state that changed)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotFound(Exception):
    """No such ticket *for this user*: invisible tickets look exactly like missing ones."""


class SessionExpired(Exception):
    pass


# --- principals and visibility ----------------------------------------------


@dataclass(frozen=True)
class Principal:
    id: int
    username: str
    display_name: str
    role: str
    queues: frozenset[str]

    @classmethod
    def of(cls, user: User) -> Principal:
        return cls(user.id, user.username, user.display_name, user.role, frozenset(user.queues))

    @property
    def actor(self) -> str:
        return f"user:{self.username}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_dispatcher(self) -> bool:
        return self.role in ("dispatcher", "admin")

    def scope(self, now: datetime) -> TicketFilter:
        if self.is_admin:
            return TicketFilter(all_tickets=True)
        if self.role == "dispatcher":
            return TicketFilter(
                queues=tuple(sorted(self.queues | {DISPATCH_CENTER})), returned=True, overdue_before=now, extensions=True
            )
        return TicketFilter(queues=tuple(sorted(self.queues)))

    def notice_queues(self) -> list[str] | None:
        if self.is_admin:
            return None
        queues = set(self.queues)
        if self.role == "dispatcher":
            queues.add(DISPATCH_CENTER)
        return sorted(queues)


def ticket_queues(ticket: Ticket) -> set[str]:
    return {ticket.lead_queue, *ticket.co_queues}


def is_member(p: Principal, ticket: Ticket) -> bool:
    return bool(p.queues & ticket_queues(ticket))


def can_see(p: Principal, ticket: Ticket, now: datetime) -> bool:
    if p.is_admin or is_member(p, ticket):
        return True
    if p.role == "dispatcher":
        return (
            ticket.lead_queue == DISPATCH_CENTER
            or ticket.state is TicketState.RETURNED
            or ticket.is_overdue(now)
            or (
                ticket.state in (TicketState.ACCEPTED, TicketState.IN_PROGRESS)
                and any(e.kind == EXTEND for e in ticket.events)
            )
        )
    return False


# --- accounts and sessions ---------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    token: str  # goes into the cookie; the database keeps only its hash
    csrf_token: str
    principal: Principal
    expires_at: datetime


def validate_username(username: str) -> str:
    username = (username or "").strip()
    if not (2 <= len(username) <= 64) or any(c.isspace() for c in username):
        raise ConsoleError("用户名须为2–64个字符，不含空格", 400)
    return username


def create_user(
    uow: ConsoleUnitOfWork,
    username: str,
    display_name: str,
    password: str,
    role: str,
    queues: Iterable[str],
    now: datetime,
) -> int:
    username = validate_username(username)
    if role not in ROLES:
        raise ConsoleError(f"角色必须是 {', '.join(ROLES)} 之一", 400)
    if len(password) < 10:
        raise ConsoleError("密码至少10个字符", 400)
    queues = [q.strip() for q in queues if q.strip()]
    for q in queues:
        if not is_known_queue(q):
            raise ConsoleError(f"未知的队列 {q}", 400)
    with uow:
        if uow.console.get_user_by_username(username) is not None:
            raise ConsoleError(f"用户名 {username} 已存在", 409)
        user_id = uow.console.add_user(username, display_name.strip() or username, auth.hash_password(password), role, queues, now)
        uow.commit()
    return user_id


def set_password(uow: ConsoleUnitOfWork, username: str, password: str) -> None:
    if len(password) < 10:
        raise ConsoleError("密码至少10个字符", 400)
    with uow:
        user = uow.console.get_user_by_username(username)
        if user is None:
            raise ConsoleError(f"没有用户 {username}", 404)
        uow.console.set_password(user.id, auth.hash_password(password))
        uow.console.delete_user_sessions(user.id)  # a new password logs every device out
        uow.commit()


def log_in(
    uow: ConsoleUnitOfWork, username: str, password: str, now: datetime, ttl: timedelta = SESSION_TTL
) -> NewSession | None:
    """A new session for the right password of an active user; None otherwise (same answer
    and about the same time for a wrong password, an unknown user and a disabled one)."""
    with uow:
        user = uow.console.get_user_by_username((username or "").strip())
        ok = auth.verify_password(user.password_hash if user else None, password or "")
        if user is None or not ok or not user.active:
            return None
        if auth.needs_rehash(user.password_hash):
            uow.console.set_password(user.id, auth.hash_password(password))
        token, csrf = auth.new_token(), auth.new_token()
        uow.console.delete_expired_sessions(now)
        uow.console.add_session(auth.token_hash(token), user.id, csrf, now, now + ttl)
        uow.commit()
        return NewSession(token, csrf, Principal.of(user), now + ttl)


def session_principal(uow: ConsoleUnitOfWork, token: str, now: datetime) -> tuple[Principal, str] | None:
    """(principal, csrf token) of a live session; raises SessionExpired for an expired one,
    None for an unknown token or a disabled user."""
    if not token:
        return None
    with uow:
        session = uow.console.get_session(auth.token_hash(token))
        if session is None:
            return None
        if session.expires_at <= now:
            uow.console.delete_session(session.id)
            uow.commit()
            raise SessionExpired()
        user = uow.console.get_user(session.user_id)
        if user is None or not user.active:
            return None
        return Principal.of(user), session.csrf_token


def log_out(uow: ConsoleUnitOfWork, token: str) -> None:
    with uow:
        uow.console.delete_session(auth.token_hash(token))
        uow.commit()


# --- demo accounts -----------------------------------------------------------

DEMO_ACCOUNTS = (
    # username, display name, role, queues
    ("grid_hld", "海拉尔东路街道网格员（演示）", "worker", ("street:150102001",)),
    ("dept_dog", "市公安局养犬管理（演示）", "department", ("police_dog",)),
    ("dispatcher", "12345派单中心（演示）", "dispatcher", (DISPATCH_CENTER,)),
    ("admin", "系统管理员（演示）", "admin", ()),
)


def seed_demo_accounts(uow: ConsoleUnitOfWork, now: datetime) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Create the missing demo accounts with random passwords; returns (username,
    password, role, queues) of those created now: print them once, they are stored hashed."""
    created = []
    with uow:
        for username, display, role, queues in DEMO_ACCOUNTS:
            if uow.console.get_user_by_username(username) is not None:
                continue
            password = auth.random_password()
            uow.console.add_user(username, display, auth.hash_password(password), role, queues, now)
            created.append((username, password, role, queues))
        uow.commit()
    return created


# --- queues ------------------------------------------------------------------

VIEWS = {
    "open": "待办",
    "done": "已办结",
    "all": "全部",
}
DISPATCHER_VIEWS = {
    "dispatch": "待派单",
    "returned": "退单",
    "overdue": "超期",
    "extension": "延期申请",
}


def views_for(p: Principal) -> dict[str, str]:
    if p.is_dispatcher:
        return {**DISPATCHER_VIEWS, **VIEWS}
    return dict(VIEWS)


@dataclass
class QueueItem:
    ticket: Ticket
    time_left: timedelta
    urgency: str  # overdue | soon | ok | done
    assignee: str | None
    flags: list[str]


@dataclass
class QueuePage:
    view: str
    items: list[QueueItem]
    counts: dict[str, int]
    total: int
    page: int
    pages: int


PAGE_SIZE = 50


def urgency(ticket: Ticket, now: datetime) -> str:
    if not ticket.is_open:
        return "done"
    left = ticket.deadline_at - now
    if left <= timedelta(0):
        return "overdue"
    # Nearly due: the last quarter of the current step's limit (15 min of 1 h; 6 h of 24 h), at least 15 min.
    if left <= max(ticket.step_limit.amount / 4, timedelta(minutes=15)):
        return "soon"
    return "ok"


def assignee(ticket: Ticket) -> str | None:
    """Actor who accepted (签收) the ticket in its current handling round."""
    for e in reversed(ticket.events):
        if e.kind == ACCEPT:
            return e.actor
        if e.kind in ROUTING_KINDS:
            return None
    return None


def signing_unit(p: Principal, ticket: Ticket) -> str | None:
    """The unit a 签收 is made for: the user's queue on the ticket (the lead when it is
    theirs, else their street or co-unit), so the resident is told who really took it."""
    if ticket.lead_queue in p.queues:
        return ticket.lead_queue
    mine = [q for q in ticket.co_queues if q in p.queues]
    return mine[0] if mine else None


def assignee_name(ticket: Ticket) -> str | None:
    for e in reversed(ticket.events):
        if e.kind == ACCEPT:
            return str(e.data.get("by") or e.actor)
        if e.kind in ROUTING_KINDS:
            return None
    return None


def pending_extension(ticket: Ticket) -> dict[str, Any] | None:
    """The open 延期 request (not yet granted), if any."""
    if ticket.state not in (TicketState.ACCEPTED, TicketState.IN_PROGRESS):
        return None
    for e in reversed(ticket.events):
        if e.kind == APPROVE_EXTENSION:
            return None
        if e.kind == EXTEND:
            return {"days": int(e.data.get("days") or 1), "reason": e.reason, "actor": e.actor, "at": e.at}
        if e.kind in ROUTING_KINDS:
            return None
    return None


def flags(ticket: Ticket, now: datetime) -> list[str]:
    out = []
    if ticket.is_overdue(now):
        out.append("超期")
    if ticket.supervised() and ticket.is_open:
        out.append("督办")
    if ticket.escalated:
        out.append("提级")
    if pending_extension(ticket):
        out.append("延期申请")
    if ticket.report_count > 1:
        out.append(f"并单×{ticket.report_count}")
    if any(e.kind == REOPEN for e in ticket.events):
        out.append("重办")
    return out


def _view_query(p: Principal, view: str, now: datetime) -> dict[str, Any]:
    from bot.storage.tables import tickets as t

    open_values = [s.value for s in OPEN_STATES]
    if view == "open":
        return {"states": open_values, "order": "deadline"}
    if view == "done":
        return {"states": [TicketState.RESOLVED.value, TicketState.CLOSED.value], "order": "updated"}
    if view == "all":
        return {"order": "updated"}
    if view == "dispatch":
        return {"states": [TicketState.RECEIVED.value], "extra": [t.c.lead_queue == DISPATCH_CENTER], "order": "deadline"}
    if view == "returned":
        return {"states": [TicketState.RETURNED.value], "order": "deadline"}
    if view == "overdue":
        return {"states": open_values, "extra": [t.c.deadline_at < now], "order": "deadline"}
    if view == "extension":
        return {"states": [TicketState.ACCEPTED.value, TicketState.IN_PROGRESS.value], "order": "deadline"}
    raise NotFound(view)


def queue_page(uow: ConsoleUnitOfWork, p: Principal, view: str, now: datetime, page: int = 1) -> QueuePage:
    views = views_for(p)
    if view not in views:
        raise NotFound(view)
    scope = p.scope(now)
    with uow:
        counts = {}
        for name in views:
            q = _view_query(p, name, now)
            if name == "extension":
                continue  # needs the event log: counted below
            counts[name] = uow.console.count_tickets(scope, q.get("states"), q.get("extra", ()))
        q = _view_query(p, view, now)
        if view == "extension" or "extension" in views:
            candidates = uow.console.ticket_rows(scope, states=_view_query(p, "extension", now)["states"], limit=1000)
            ext = [t for t in candidates if pending_extension(t)]
            counts["extension"] = len(ext)
        page = max(1, page)
        if view == "extension":
            tickets = ext[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            total = len(ext)
        else:
            total = counts[view]
            tickets = uow.console.ticket_rows(
                scope,
                states=q.get("states"),
                extra=q.get("extra", ()),
                order=q["order"],
                limit=PAGE_SIZE,
                offset=(page - 1) * PAGE_SIZE,
            )
    items = [
        QueueItem(t, t.deadline_at - now, urgency(t, now), assignee_name(t), flags(t, now))
        for t in tickets
        if can_see(p, t, now)
    ]
    return QueuePage(view, items, counts, total, page, max(1, -(-total // PAGE_SIZE)))


# --- one ticket --------------------------------------------------------------

ACTIONS: dict[str, str] = {
    "accept": ACCEPT,
    "work": WORK,
    "return": RETURN,
    "extend": EXTEND,
    "resolve": RESOLVE,
    "dispatch": DISPATCH,
    "redispatch": REDISPATCH,
    "reject_return": REJECT_RETURN,
    "approve_extension": APPROVE_EXTENSION,
    "reopen": REOPEN,
    "recategorise": RECATEGORISE,
}
WORKER_ACTIONS = ("accept", "work", "return", "extend", "resolve")
DISPATCHER_ACTIONS = ("dispatch", "redispatch", "recategorise", "reject_return", "approve_extension", "reopen")


def allowed_actions(p: Principal, ticket: Ticket, now: datetime) -> list[str]:
    if not can_see(p, ticket, now):
        return []
    out = []
    s = ticket.state
    handler = p.is_admin or is_member(p, ticket)
    if handler and ticket.lead_queue != DISPATCH_CENTER:
        if s is TicketState.DISPATCHED:
            out.append("accept")
        if s in (TicketState.ACCEPTED, TicketState.IN_PROGRESS) and (p.is_admin or assignee(ticket) == p.actor):
            out += ["work", "return", "extend", "resolve"]
    if p.is_dispatcher:
        if s is TicketState.RECEIVED:
            out.append("dispatch")
        if s is TicketState.RETURNED:
            out.append("redispatch")
            if not ticket.escalated:
                out.append("reject_return")
        if s in TRANSITIONS[RECATEGORISE][0]:  # the states the domain allows 改类 from
            out.append("recategorise")
        if pending_extension(ticket):
            out.append("approve_extension")
        if s in (TicketState.RESOLVED, TicketState.CLOSED):
            out.append("reopen")
    return out


@dataclass
class TicketView:
    ticket: Ticket
    actions: list[str]
    reports: list[Any]
    attachments: list[Attachment]
    assignee: str | None
    urgency: str
    flags: list[str]
    extension: dict[str, Any] | None
    suggested_lead: str | None
    queue_names: dict[str, str] = field(default_factory=dict)
    actor_names: dict[str, str] = field(default_factory=dict)  # event actor → who a worker reads
    photo_reports: frozenset[int] = frozenset()  # reports with a resident photo we stored
    # reports by a resident already on the ticket (one Open311 key counts as one): not counted
    repeat_reports: frozenset[int] = frozenset()
    # The deadline counts a day of a year nobody entered (neither the city nor the library): Mon–Fri.
    weekday_only: bool = False


def counts_weekdays_only(ticket: Ticket) -> bool:
    calendar = default_calendar()
    unknown = getattr(calendar, "unknown_between", None)
    return bool(unknown and unknown(ticket.created_at, ticket.deadline_at))


def _get_visible(uow: ConsoleUnitOfWork, p: Principal, ticket_id: int, now: datetime) -> Ticket:
    ticket = uow.tickets.get(ticket_id)
    if ticket is None or not can_see(p, ticket, now):
        raise NotFound(ticket_id)
    return ticket


def ticket_view(uow: ConsoleUnitOfWork, p: Principal, ticket_id: int, now: datetime) -> TicketView:
    with uow:
        ticket = _get_visible(uow, p, ticket_id, now)
        assert ticket.id is not None
        reports = uow.console.reports(ticket.id)
        files = uow.console.attachments_for(ticket.id)
        actors = {e.actor: actor_label(uow, e.actor) for e in ticket.events}
    rule = default_catalogue().categories.get(ticket.category)
    names = {q: queue_label(q) for q in ticket_queues(ticket)}
    return TicketView(
        ticket=ticket,
        actions=allowed_actions(p, ticket, now),
        reports=reports,
        attachments=files,
        assignee=assignee_name(ticket),
        urgency=urgency(ticket, now),
        flags=flags(ticket, now),
        extension=pending_extension(ticket),
        suggested_lead=rule.lead if rule else None,
        queue_names=names,
        actor_names=actors,
        photo_reports=frozenset(r.id for r in reports if stored_photo_of(r)),
        repeat_reports=repeats_of(reports),
        weekday_only=counts_weekdays_only(ticket),
    )


SYSTEM_ACTORS = {"system:router": "系统（自动派单）", "system:escalation": "系统（督办/提级）"}


def actor_label(uow: ConsoleUnitOfWork, actor: str) -> str:
    """An event's actor as the timeline shows it: a user's display name, 居民 (never the
    resident's sender id), or the system step; never a raw `user:…` key."""
    kind, _, name = actor.partition(":")
    if kind == "user":
        user = uow.console.get_user_by_username(name)
        return user.display_name if user is not None else name
    if kind == "resident":
        return "居民"
    if kind == "cli" and name:  # python -m bot calendar import --by NAME
        return f"命令行（{name}）"
    return SYSTEM_ACTORS.get(actor, "系统")


def report_photo(uow: ConsoleUnitOfWork, p: Principal, ticket_id: int, report_id: int, now: datetime) -> str:
    """The stored file name of a resident's photo on a ticket this user may see."""
    with uow:
        _get_visible(uow, p, ticket_id, now)
        row = next((r for r in uow.console.reports(ticket_id) if r.id == report_id), None)
    name = stored_photo_of(row) if row is not None else None
    if name is None:
        raise NotFound(report_id)
    return name


def repeats_of(reports: list[Any]) -> frozenset[int]:
    """Reports by a resident who reported earlier on the ticket: the page labels them as
    repeats, so its count of residents matches 反映人数 (bot.services.tickets.resident_of)."""
    from bot.services.tickets import resident_of

    seen: set[str] = set()
    out = set()
    for r in reports:
        who = resident_of(r.sender_id if r.channel != "rest" or ":" in r.sender_id else "rest:" + r.sender_id)
        if who in seen:
            out.add(r.id)
        seen.add(who)
    return frozenset(out)


def stored_photo_of(report: Any) -> Optional[str]:
    """The stored photo of a report, only when the resident who filed it uploaded it: never an
    Open311 client's link to our upload endpoint, never a photo another conversation uploaded."""
    name = own_photo_name(report.photo)
    if name is None or report.channel == "open311":
        return None
    owner = photo_owner(upload_folder(), name)  # no record: a WeChat download or an older upload
    return name if owner is None or owner == report.sender_id else None


def attachment_for(uow: ConsoleUnitOfWork, p: Principal, attachment_id: int, now: datetime) -> Attachment:
    with uow:
        found = uow.console.get_attachment(attachment_id)
        if found is None:
            raise NotFound(attachment_id)
        _get_visible(uow, p, found.ticket_id, now)
        return found


# --- the handling cycle ------------------------------------------------------


@dataclass(frozen=True)
class ActionResult:
    ticket_id: int
    number: str
    kind: str
    state: TicketState
    message: str
    visible: bool = True  # the user may still open the ticket (a 派单 takes it out of the dispatch queue)


def _text(form: Mapping[str, Any], name: str, limit: int = 2000) -> str:
    value = str(form.get(name) or "").strip()
    if len(value) > limit:
        raise ConsoleError(f"内容过长（最多{limit}字）", 400)
    return value


def _days(form: Mapping[str, Any]) -> int:
    try:
        days = int(str(form.get("days") or "").strip())
    except ValueError:
        raise ConsoleError("延期天数须为1–30的整数", 400) from None
    if not 1 <= days <= 30:
        raise ConsoleError("延期天数须为1–30的整数", 400)
    return days


def _dispatch_target(ticket: Ticket, form: Mapping[str, Any]) -> dict[str, Any]:
    lead = _text(form, "lead", 64)
    street = _text(form, "street", 12)
    if not lead or lead == DISPATCH_CENTER or not is_known_queue(lead):
        raise ConsoleError("请选择承办单位（主办）", 400)
    co: list[str] = []
    rule = default_catalogue().categories.get(ticket.category)
    if rule is not None and lead == rule.lead:
        co += list(rule.co)
    if street:
        if not is_known_queue(street_queue(street)):
            raise ConsoleError("未知的街道", 400)
        co.append(street_queue(street))
    co = [q for q in dict.fromkeys(co) if q != lead]
    if not street:
        return {"lead": lead, "co": co}
    place = default_gazetteer().get(street)
    return {"lead": lead, "co": co, "street": street, "district": place.district_code if place else None}


def recategorise_choices() -> tuple[tuple[str, str], ...]:
    """Categories a dispatcher may move a ticket to: those of the routing catalogue with a
    lead unit (「其他」 has none: such a ticket is dispatched by hand instead)."""
    return tuple(
        (code, rule.name) for code, rule in default_catalogue().categories.items() if rule.lead != DISPATCH_CENTER
    )


def _recategorise_target(ticket: Ticket, form: Mapping[str, Any]) -> dict[str, Any]:
    """改类: the new category's lead and co-units plus the ticket's street (属地) — the
    queues the router would have chosen for that category — and its dispatch class."""
    code = _text(form, "category", 64)
    catalogue = default_catalogue()
    rule = catalogue.categories.get(code)
    if not code or rule is None:
        raise ConsoleError("请选择正确的类别", 400)
    if code == ticket.category:
        raise ConsoleError(f"工单已是「{category_label(code)}」类，无需改类", 400)
    if rule.lead == DISPATCH_CENTER or not is_known_queue(rule.lead):
        raise ConsoleError(f"「{category_label(code)}」没有主办单位，请改用派单指定承办单位", 400)
    # The street currently co-handling the ticket (a 派单/改派 may have named another one
    # than the filed street), else the street the ticket was filed in.
    streets = [q for q in ticket.co_queues if q.startswith("street:")]
    if not streets and ticket.street_code:
        streets = [street_queue(ticket.street_code)]
    co = [q for q in dict.fromkeys([*rule.co, *streets]) if q != rule.lead]
    dispatch_class, _ = catalogue.dispatch_class_for(code, ticket.description)
    return {"was": ticket.category, "category": code, "lead": rule.lead, "co": co,
            "dispatch_class": dispatch_class.value}


def perform(
    uow: ConsoleUnitOfWork,
    p: Principal,
    ticket_id: int,
    action: str,
    form: Mapping[str, Any],
    now: datetime,
    photo: bytes | None = None,
    upload_folder: Path | None = None,
) -> ActionResult:
    """One console action on one ticket, as one transaction.

    Concurrency: the ticket row is updated with a compare-and-set on its version
    (repository.save_events); a lost race is retried on fresh data, where the move is
    usually no longer legal (two people pressing 签收: the second is told who has it).
    """
    if action not in ACTIONS:
        raise NotFound(action)
    stored: StoredFile | None = None
    if photo:
        if action != "resolve":
            raise ConsoleError("只有办结时可以上传照片", 400)
        try:
            stored = store_image(photo, upload_folder)
        except UploadRejected as exc:
            raise ConsoleError(str(exc), 400) from None
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with uow:
                    result = _perform_once(uow, p, ticket_id, action, form, now, stored)
                    uow.commit()
                    stored = None  # kept
                    return result
            except StaleTicket:
                if attempt == MAX_ATTEMPTS:
                    raise ConsoleError("工单刚被他人修改，请刷新后重试") from None
        raise AssertionError("unreachable")
    finally:
        if stored is not None:  # the action failed: do not keep an orphan file
            stored.path.unlink(missing_ok=True)


def _perform_once(
    uow: ConsoleUnitOfWork,
    p: Principal,
    ticket_id: int,
    action: str,
    form: Mapping[str, Any],
    now: datetime,
    stored: StoredFile | None,
) -> ActionResult:
    ticket = _get_visible(uow, p, ticket_id, now)
    assert ticket.id is not None
    kind = ACTIONS[action]
    if action not in allowed_actions(p, ticket, now):
        raise ConsoleError(_refusal(p, ticket, action))
    data: dict[str, Any] = {}
    reason = _text(form, "reason")
    if action == "accept":
        data = {"by": p.display_name, "unit": signing_unit(p, ticket)}
    elif action == "work":
        if not reason:
            raise ConsoleError("请填写办理情况", 400)
    elif action == "return":
        if not reason:
            raise ConsoleError("退单必须填写原因", 400)
    elif action == "extend":
        if not reason:
            raise ConsoleError("延期申请必须填写原因", 400)
        data = {"days": _days(form)}
    elif action == "resolve":
        reason = _text(form, "result") or reason
        if not reason:
            raise ConsoleError("办结必须填写办理结果", 400)
        if stored is not None:
            attachment_id = uow.console.add_attachment(
                ticket.id, stored.stored_name, stored.content_type, stored.size, stored.sha256, p.id, now
            )
            data = {"attachment_id": attachment_id}
    elif action in ("dispatch", "redispatch"):
        data = _dispatch_target(ticket, form)
        if not reason:
            reason = "人工派单" if action == "dispatch" else "退单改派"
    elif action == "recategorise":
        data = _recategorise_target(ticket, form)
        reason = _text(form, "reason", 500)
        if not reason:
            raise ConsoleError("改类必须说明理由", 400)
    elif action == "reject_return":
        if not reason:
            raise ConsoleError("驳回退单必须说明理由", 400)
    elif action == "approve_extension":
        ext = pending_extension(ticket)
        assert ext is not None  # allowed_actions checked it
        data = {"days": _days(form) if str(form.get("days") or "").strip() else ext["days"]}
        reason = reason or "同意延期"
    elif action == "reopen":
        if not reason:
            raise ConsoleError("重办必须说明理由", 400)
    filed_street = ticket.street_code  # before a 派单 names another one
    try:
        ticket.apply(kind, p.actor, reason, now, **data)
        if kind == RETURN and ticket.needs_escalation():
            ticket.apply(
                ESCALATE,
                "system:escalation",
                f"退单{ticket.return_count}次，提级由派单中心处理",
                now,
                returns=ticket.return_count,
            )
    except InvalidTransition as exc:
        raise ConsoleError(str(exc).split(" / ")[0]) from None
    uow.tickets.save_events(ticket)
    if action in ("dispatch", "redispatch"):
        _collect_correction(uow, ticket, data, form, now, filed_street)
    elif action == "recategorise":
        _collect_recategorisation(uow, ticket, data, now)
    return ActionResult(ticket.id, ticket.number, kind, ticket.state, f"{ticket.number} 已{kind}",
                        visible=can_see(p, ticket, now))


def _collect_correction(uow: ConsoleUnitOfWork, ticket: Ticket, target: dict[str, Any], form: Mapping[str, Any],
                        now: datetime, filed_street: str | None) -> None:
    """A dispatcher sending a ticket elsewhere than its category's lead, or naming another
    street, corrects what the assistant understood: the review inbox gets the description
    (same transaction as the ticket event: both or neither)."""
    from bot.retraining.inbox import Sample, record

    catalogue = default_catalogue()
    rule = catalogue.categories.get(ticket.category)
    street = _text(form, "street", 12)
    conn = uow._connection()
    if street and street != filed_street:
        record(conn, Sample("ticket_location", ticket.description, f"ticket_location:{ticket.id}:{now.isoformat()}",
                            predicted_intent=ticket.category, ticket_id=ticket.id,
                            correction={"street_code": street, "was": filed_street}), now)
    lead = target.get("lead")
    if rule is not None and lead and lead != rule.lead:
        matching = [code for code, r in catalogue.categories.items() if r.lead == lead]
        correction: dict[str, Any] = {"lead": lead}
        if len(matching) == 1:
            correction["intent"] = matching[0]  # the category whose lead that unit is
        record(conn, Sample("ticket_category", ticket.description, f"ticket_category:{ticket.id}:{now.isoformat()}",
                            predicted_intent=ticket.category, ticket_id=ticket.id, correction=correction), now)


def _collect_recategorisation(uow: ConsoleUnitOfWork, ticket: Ticket, data: dict[str, Any], now: datetime) -> None:
    """改类 is the plainest correction of what the assistant understood: the review inbox
    gets the description with the dispatcher's category (same transaction as the event)."""
    from bot.retraining.inbox import Sample, record

    record(uow._connection(),
           Sample("ticket_category", ticket.description, f"ticket_category:{ticket.id}:{now.isoformat()}",
                  predicted_intent=data["was"], ticket_id=ticket.id,
                  correction={"intent": data["category"], "chosen_by": "dispatcher"}), now)


def _refusal(p: Principal, ticket: Ticket, action: str) -> str:
    if action == "accept" and ticket.state in (TicketState.ACCEPTED, TicketState.IN_PROGRESS):
        who = assignee_name(ticket) or "他人"
        return f"工单 {ticket.number} 已被 {who} 签收，无需重复签收"
    if action in WORKER_ACTIONS and ticket.state in (TicketState.ACCEPTED, TicketState.IN_PROGRESS):
        return f"工单 {ticket.number} 由 {assignee_name(ticket) or '他人'} 办理，您不能操作"
    if action in DISPATCHER_ACTIONS and not p.is_dispatcher:
        return "只有派单中心可以执行此操作"
    if action == "reject_return" and ticket.escalated:
        return f"工单 {ticket.number} 已提级，只能改派或改类"
    return f"工单 {ticket.number} 当前为「{ticket.state.value}」，不能{ACTIONS[action]}"


# --- escalation rules --------------------------------------------------------


def sweep_overdue(uow: ConsoleUnitOfWork, now: datetime) -> list[str]:
    """Flag every overdue open ticket once per deadline (督办); returns their numbers."""
    from bot.storage.holidays import missing_next_year, reconcile

    calendar = default_calendar()
    if hasattr(calendar, "city_years"):
        missing_next_year(calendar, now)  # from 1 November: logged once a day while next year is missing
    try:
        reconcile(uow.engine, now)  # deadlines set with another instance's older calendar just after a save
    except StaleTicket:
        pass  # being handled: the next sweep looks again
    with uow:
        ids = uow.console.overdue_unflagged_ids(now)
    flagged = []
    for ticket_id in ids:
        try:
            with uow:
                ticket = uow.tickets.get(ticket_id)
                if ticket is None or not ticket.is_overdue(now) or ticket.supervised_for_current_deadline():
                    continue
                late = now - ticket.deadline_at
                ticket.apply(
                    SUPERVISE,
                    "system:escalation",
                    f"超过处理时限 {_duration(late)}，督办",
                    now,
                    deadline=ticket.deadline_at.isoformat(),
                )
                uow.tickets.save_events(ticket)
                uow.commit()
                flagged.append(ticket.number)
        except StaleTicket:
            continue  # changed meanwhile: the next sweep looks again
    return flagged


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes}分钟"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}小时"
    return f"{hours // 24}天"


# --- notifications: the event feed → the outbox ------------------------------

RESIDENT_EVENTS = {ACCEPT: "accepted", RESOLVE: "resolved", REOPEN: "reopened"}


def process_feed(uow: ConsoleUnitOfWork, now: datetime, batch: int = 500) -> int:
    """Turn new ticket events (whoever wrote them: the assistant, the console, Open311)
    into outbox messages, in the same transaction as the cursor: each event is announced
    exactly once. Returns how many messages were queued."""
    queued = 0
    with uow:
        last = uow.console.cursor(FEED, lock=True)
        if last is None:
            last = uow.console.init_cursor(FEED, now)
        events = uow.console.events_after(last, batch)
        reporters: dict[int, list[Any]] = {}
        for e in events:
            for message in _notices_for(e, lambda tid: reporters.setdefault(tid, uow.console.reporters(tid))):
                uow.console.enqueue(now=now, ticket_id=e.ticket_id, **message)
                queued += 1
            last = e.id
        if events:
            uow.console.set_cursor(FEED, last, now)
        uow.commit()
    return queued


def ensure_feed(uow: ConsoleUnitOfWork, now: datetime) -> None:
    with uow:
        if uow.console.cursor(FEED) is None:
            try:
                uow.console.init_cursor(FEED, now)
                uow.commit()
            except IntegrityError:
                pass  # another process created it first


def _notices_for(e: Any, reporters_of: Any) -> list[dict[str, Any]]:
    number = e.number
    out: list[dict[str, Any]] = []
    data = dict(e.data or {})

    def workers(queues: Iterable[str], event: str, text: str) -> None:
        for q in dict.fromkeys(queues):
            out.append(
                {
                    "kind": "worker",
                    "channel": "console",
                    "recipient": q,
                    "event": event,
                    "payload": {"number": number, "text": text, "reason": e.reason},
                }
            )

    queues_now = [data.get("lead") or e.lead_queue, *(data.get("co") if "co" in data else (e.co_queues or []))]
    if e.kind in ROUTING_KINDS:
        label = {DISPATCH: "新工单", REDISPATCH: "改派工单", REOPEN: "重办工单", RECATEGORISE: "改类工单"}[e.kind]
        event = {DISPATCH: "new", REDISPATCH: "redispatched", REOPEN: "reopened", RECATEGORISE: "recategorised"}[e.kind]
        workers(queues_now, event, f"{label} {number}")
    elif e.kind == RETURN:
        workers([DISPATCH_CENTER], "returned", f"退单待审核 {number}：{e.reason}")
    elif e.kind == ESCALATE:
        workers([DISPATCH_CENTER], "escalated", f"提级 {number}：{e.reason}")
    elif e.kind == SUPERVISE:
        workers([e.lead_queue, *(e.co_queues or []), DISPATCH_CENTER], "overdue", f"超期督办 {number}")
    elif e.kind == EXTEND:
        workers([DISPATCH_CENTER], "extension", f"延期申请 {number}：{e.reason}")
    elif e.kind == REJECT_RETURN:
        workers([e.lead_queue, *(e.co_queues or [])], "return_rejected", f"退单被驳回 {number}：{e.reason}")
    elif e.kind == MERGE:
        workers([e.lead_queue, *(e.co_queues or [])], "merged", f"并单 {number}（又有居民反映）")
    if e.kind in RESIDENT_EVENTS:
        event = RESIDENT_EVENTS[e.kind]
        seen = set()
        for r in reporters_of(e.ticket_id):
            if r.channel in NO_PUSH_CHANNELS or r.sender_id in seen:
                continue
            seen.add(r.sender_id)
            if e.kind == REOPEN and e.actor == f"resident:{r.sender_id}":
                continue  # the resident asked for it in the chat and was answered there
            out.append(
                {
                    "kind": "resident",
                    "channel": "rasa",
                    "recipient": r.sender_id,
                    "event": event,
                    "payload": {
                        "ticket_number": number,
                        "ticket_event": event,
                        "result": e.reason if e.kind == RESOLVE else "",
                    },
                }
            )
    return out


# --- notices in the console --------------------------------------------------


def notices(uow: ConsoleUnitOfWork, p: Principal, now: datetime, mark_seen: bool = False) -> list[OutboxMessage]:
    with uow:
        found = uow.console.worker_notices(p.notice_queues())
        if mark_seen:
            uow.console.set_notices_seen(p.id, now)
            uow.commit()
        return found


def unread_notices(uow: ConsoleUnitOfWork, p: Principal) -> int:
    with uow:
        user = uow.console.get_user(p.id)
        since = user.notices_seen_at if user else None
        return uow.console.unread_notice_count(p.notice_queues(), since)


# --- the resident's answer to 回访 (called by the assistant) ----------------


@dataclass(frozen=True)
class FollowUpResult:
    status: str  # closed | reopened | not_found | not_resolved
    number: str | None
    state: TicketState | None = None


def record_follow_up(
    uow: Any, number: str, sender_id: str, solved: bool, satisfaction: str | None, now: datetime
) -> FollowUpResult:
    """回访: the resident says whether the problem is solved (and how satisfied they are).
    Solved → 回访 (closed); not solved → 重办 (re-opened, back to the same units)."""
    from bot.domain.model import parse_ticket_number

    canonical = parse_ticket_number(number or "")
    if canonical is None:
        return FollowUpResult("not_found", None)
    if satisfaction is not None and satisfaction not in SATISFACTION:
        satisfaction = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with uow:
                ticket = uow.tickets.get_by_number(canonical)
                if ticket is None or not uow.tickets.sender_has_report(ticket.id, sender_id):
                    return FollowUpResult("not_found", canonical)
                if ticket.state is not TicketState.RESOLVED:
                    return FollowUpResult("not_resolved", canonical, ticket.state)
                actor = f"resident:{sender_id}"
                data = {"solved": solved, "satisfaction": satisfaction or ("不满意" if not solved else None)}
                if solved:
                    ticket.apply(FOLLOW_UP, actor, f"居民回访：已解决，{satisfaction or '未评价'}", now, **data)
                else:
                    ticket.apply(REOPEN, actor, "居民回访：问题未解决，重办", now, **data)
                uow.tickets.save_events(ticket)
                uow.commit()
                return FollowUpResult("closed" if solved else "reopened", canonical, ticket.state)
        except StaleTicket:
            if attempt == MAX_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def category_names() -> dict[str, str]:
    return {code: category_label(code) for code in CATEGORIES}


def print_demo_accounts(created: list[tuple[str, str, str, tuple[str, ...]]]) -> None:
    if not created:
        return
    print("Console demo accounts (passwords shown once; stored hashed — reset with "
          "`python -m bot console passwd USER`):", flush=True)
    for username, password, role, queues in created:
        where = ", ".join(queue_label(q) for q in queues) or "全部"
        print(f"  {username:<11} {password}   {role:<10} {where}", flush=True)

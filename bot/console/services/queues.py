"""What a worker reads: the queues (views, counts, pages) and one ticket's page
(timeline, reports, photos, the actions this user may take)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.console.config import DEFAULT_PHONE_ROLES
from bot.console.names import category_label, queue_label
from bot.console.repository import Attachment, TicketSearch
from bot.console.services.access import NotFound, Principal, can_see, get_visible, ticket_queues
from bot.console.services.handling import allowed_actions
from bot.console.services.privacy import ShownReport, masked_description, shown_report
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.history import assignee_name, pending_extension
from bot.domain.model import (
    CATEGORIES,
    DISPATCH_CENTER,
    OPEN_STATES,
    REOPEN,
    Ticket,
    TicketState,
)
from bot.domain.workcal import default_calendar
from bot.reference.routing import default_catalogue
from bot.uploads import (
    own_photo_name,
    photo_owner,
    upload_folder,
)

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
    description: str = ""  # masked (bot/console/services/privacy.py)


@dataclass
class QueuePage:
    view: str
    items: list[QueueItem]
    counts: dict[str, int]
    total: int
    page: int
    pages: int
    search: TicketSearch = field(default_factory=TicketSearch)


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
        return {"states": [TicketState.RESOLVED.value, TicketState.CLOSED.value, TicketState.WITHDRAWN.value], "order": "updated"}
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


def queue_page(
    uow: ConsoleUnitOfWork, p: Principal, view: str, now: datetime, page: int = 1, search: TicketSearch | None = None
) -> QueuePage:
    """One page of a view, narrowed by the search (the tabs count what the search finds in each)."""
    views = views_for(p)
    if view not in views:
        raise NotFound(view)
    search = search or TicketSearch()
    scope = p.scope(now)
    page = max(1, page)
    with uow:
        found = uow.console.search_clauses(search)
        counts = {}
        for name in views:
            if name == "extension":
                continue  # needs the event log: counted below
            q = _view_query(p, name, now)
            counts[name] = uow.console.count_tickets(scope, q.get("states"), [*q.get("extra", ()), *found])
        if "extension" in views:
            ext = _extension_tickets(uow, p, now, found)
            counts["extension"] = len(ext)
        if view == "extension":
            tickets = ext[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            total = len(ext)
        else:
            q = _view_query(p, view, now)
            total = counts[view]
            tickets = uow.console.ticket_rows(
                scope,
                states=q.get("states"),
                extra=[*q.get("extra", ()), *found],
                order=q["order"],
                limit=PAGE_SIZE,
                offset=(page - 1) * PAGE_SIZE,
            )
        confidential = uow.console.confidential_among(t.id for t in tickets if t.id is not None)
    items = [
        QueueItem(t, t.deadline_at - now, urgency(t, now), assignee_name(t), flags(t, now),
                  masked_description(t.description, p.role, t.id in confidential))
        for t in tickets
        if can_see(p, t, now)
    ]
    return QueuePage(view, items, counts, total, page, max(1, -(-total // PAGE_SIZE)), search)


def _extension_tickets(uow: ConsoleUnitOfWork, p: Principal, now: datetime, found: list[Any]) -> list[Ticket]:
    states = _view_query(p, "extension", now)["states"]
    candidates = uow.console.ticket_rows(p.scope(now), states=states, extra=found, limit=1000)
    return [t for t in candidates if pending_extension(t)]


MAX_EXPORT = 50000


def matching_ticket_ids(uow: ConsoleUnitOfWork, p: Principal, view: str, search: TicketSearch, now: datetime) -> list[int]:
    """Every ticket of a view that the search finds and this user may see (the CSV export)."""
    if view not in views_for(p):
        raise NotFound(view)
    with uow:
        found = uow.console.search_clauses(search)
        if view == "extension":
            tickets = _extension_tickets(uow, p, now, found)
        else:
            q = _view_query(p, view, now)
            tickets = uow.console.ticket_rows(
                p.scope(now), states=q.get("states"), extra=[*q.get("extra", ()), *found], order=q["order"],
                limit=MAX_EXPORT,
            )
    return [t.id for t in tickets if t.id is not None and can_see(p, t, now)]


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
    description: str = ""  # the ticket's, masked
    shown: dict[int, ShownReport] = field(default_factory=dict)  # report id → its personal fields as shown
    extension_reason: str = ""  # the pending 延期 request's, masked
    reasons: dict[int, str] = field(default_factory=dict)  # event index → its reason, masked like the description


def counts_weekdays_only(ticket: Ticket) -> bool:
    calendar = default_calendar()
    unknown = getattr(calendar, "unknown_between", None)
    return bool(unknown and unknown(ticket.created_at, ticket.deadline_at))


def ticket_view(uow: ConsoleUnitOfWork, p: Principal, ticket_id: int, now: datetime,
                phone_roles: frozenset[str] = DEFAULT_PHONE_ROLES,
                revealed: tuple[int, str] | None = None) -> TicketView:
    """The ticket's page; personal data masked, but for `revealed` (report id, field), which
    the caller has permission-checked and logged (services/privacy.reveal)."""
    with uow:
        ticket = get_visible(uow, p, ticket_id, now)
        assert ticket.id is not None
        reports = uow.console.reports(ticket.id)
        files = uow.console.attachments_for(ticket.id)
        actors = {e.actor: actor_label(uow, e.actor) for e in ticket.events}
    rule = default_catalogue().categories.get(ticket.category)
    names = {q: queue_label(q) for q in ticket_queues(ticket)}
    confidential = any(r.confidential for r in reports)
    extension = pending_extension(ticket)
    shown = {
        r.id: shown_report(r, p.role, phone_roles, frozenset({revealed[1]}) if revealed and revealed[0] == r.id else frozenset())
        for r in reports
    }
    return TicketView(
        ticket=ticket,
        actions=allowed_actions(p, ticket, now),
        reports=reports,
        attachments=files,
        assignee=assignee_name(ticket),
        urgency=urgency(ticket, now),
        flags=flags(ticket, now),
        extension=extension,
        suggested_lead=rule.lead if rule else None,
        queue_names=names,
        actor_names=actors,
        photo_reports=frozenset(r.id for r in reports if stored_photo_of(r)),
        repeat_reports=repeats_of(reports),
        weekday_only=counts_weekdays_only(ticket),
        description=masked_description(ticket.description, p.role, confidential),
        shown=shown,
        extension_reason=masked_description(extension["reason"] or "", p.role, confidential) if extension else "",
        reasons={i: masked_description(e.reason, p.role, confidential) for i, e in enumerate(ticket.events) if e.reason},
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
        get_visible(uow, p, ticket_id, now)
        row = next((r for r in uow.console.reports(ticket_id) if r.id == report_id), None)
    name = stored_photo_of(row) if row is not None else None
    if name is None:
        raise NotFound(report_id)
    return name


def addition_photo(uow: ConsoleUnitOfWork, p: Principal, ticket_id: int, index: int, now: datetime) -> str:
    """The stored file name of the photo a resident added (补充) as the ticket's event `index`:
    only that resident's own upload, only to users who may see the ticket."""
    from bot.domain.model import ADD_BY_RESIDENT

    with uow:
        ticket = get_visible(uow, p, ticket_id, now)
    event = ticket.events[index] if 0 <= index < len(ticket.events) else None
    if event is None or event.kind != ADD_BY_RESIDENT or not event.actor.startswith("resident:"):
        raise NotFound(index)
    name = own_photo_name(event.data.get("photo"))
    owner = photo_owner(upload_folder(), name) if name else None
    if name is None or (owner is not None and owner != event.actor.removeprefix("resident:")):
        raise NotFound(index)
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


def stored_photo_of(report: Any) -> str | None:
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
        get_visible(uow, p, found.ticket_id, now)
        return found


def category_names() -> dict[str, str]:
    return {code: category_label(code) for code in CATEGORIES}

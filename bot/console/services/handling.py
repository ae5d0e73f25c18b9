"""The handling cycle: the actions a user may take on a ticket and performing one as one
transaction (签收 … 办结, 派单, 改派, 改类, 延期, 重办), and the escalation rules (督办)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.console.names import category_label, is_known_queue
from bot.console.services.access import ConsoleError, NotFound, Principal, can_see, get_visible, is_member, signing_unit
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.history import assignee, assignee_name, pending_extension
from bot.domain.model import (
    ACCEPT,
    APPROVE_EXTENSION,
    DISPATCH,
    DISPATCH_CENTER,
    ESCALATE,
    EXTEND,
    RECATEGORISE,
    REDISPATCH,
    REJECT_RETURN,
    REOPEN,
    RESOLVE,
    RETURN,
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
from bot.services.tickets import retry_on_stale
from bot.storage.repository import StaleTicket
from bot.uploads import (
    StoredFile,
    UploadRejected,
    store_image,
)

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
    def once() -> ActionResult:
        nonlocal stored
        with uow:
            result = _perform_once(uow, p, ticket_id, action, form, now, stored)
            uow.commit()
            stored = None  # kept
            return result

    try:
        return retry_on_stale(once)
    except StaleTicket:
        raise ConsoleError("工单刚被他人修改，请刷新后重试") from None
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
    ticket = get_visible(uow, p, ticket_id, now)
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
    conn = uow.connection()
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

    record(uow.connection(),
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

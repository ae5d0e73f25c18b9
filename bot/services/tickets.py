"""Ticket use cases: filing a complaint, status look-ups, start-up configuration sync."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, TypeVar

from bot.domain.clock import SHANGHAI
from bot.domain.history import accepted_unit
from bot.domain.model import (
    CATEGORIES,
    FOLLOW_UP,
    MERGE,
    QUEUE_KINDS,
    REOPEN,
    ComplaintDraft,
    DispatchClass,
    Report,
    Route,
    Ticket,
    TicketState,
)
from bot.domain.numbers import parse_ticket_number, phone_tail
from bot.storage.repository import DuplicateReport, StaleTicket
from bot.storage.uow import AbstractUnitOfWork

MERGE_WINDOW = timedelta(days=7)
MERGE_REASON = "同一社区7日内同类诉求"
MAX_ATTEMPTS = 3


T = TypeVar("T")


def retry_on_stale(attempt: Callable[[], T], attempts: int = MAX_ATTEMPTS) -> T:
    """Run one transaction, `attempt`, again on fresh data when a concurrent writer changed
    the same ticket first (StaleTicket from the version compare-and-set); after `attempts`
    lost races the last StaleTicket propagates."""
    for n in range(1, attempts + 1):
        try:
            return attempt()
        except StaleTicket:
            if n == attempts:
                raise
    raise AssertionError("unreachable")


class IdempotencyConflict(Exception):
    """An idempotency key already used by a different sender."""


@dataclass(frozen=True)
class FilingResult:
    number: str
    ticket_id: int
    merged: bool  # attached to an existing open ticket (并单)
    replay: bool  # idempotency key seen before: nothing new was written
    state: TicketState
    lead_queue: str
    deadline_at: datetime  # the current step's (签收 for a new ticket)
    report_count: int = 1  # residents who reported this ticket's problem
    finish_deadline_at: datetime | None = None  # 办结时限: what the resident is told to expect


@dataclass(frozen=True)
class TicketStatus:
    number: str
    category: str
    category_name: str
    state: TicketState
    lead_queue: str
    lead_queue_name: str | None
    deadline_at: datetime
    created_at: datetime
    last_event_kind: str
    last_event_at: datetime
    # the unit whose worker signed (签收) in the current handling round, when recorded
    accepted_unit: str | None = None
    accepted_unit_name: str | None = None
    finish_deadline_at: datetime | None = None  # 办结时限 (deadline_at is the current step's)


def resident_of(sender_id: str) -> str:
    """Who a report counts as in 共 N 位居民反映: the sender, except that everything one
    Open311 key sends (sender open311:<key name>:<account>) counts as one resident: the
    account ids are the API client's word, and one key's repeats must not pose as many."""
    if sender_id.startswith("open311:"):
        return "open311:" + sender_id.split(":", 2)[1]
    return sender_id


def shanghai_day(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()


def file_complaint(uow: AbstractUnitOfWork, draft: ComplaintDraft, route: Route, now: datetime) -> FilingResult:
    """File a resident's complaint exactly once: new ticket, merge (并单) or replay.
    A concurrent merge touching the same ticket (StaleTicket): start over with fresh data."""

    def once() -> FilingResult:
        try:
            with uow:
                result = _file_once(uow, draft, route, now)
                uow.commit()
                return result
        except DuplicateReport:
            # A concurrent submission with the same key won the race; ours was rolled back.
            with uow:
                replayed = _replay(uow, draft)
            if replayed is not None:
                return replayed
            raise

    return retry_on_stale(once)


def _file_once(uow: AbstractUnitOfWork, draft: ComplaintDraft, route: Route, now: datetime) -> FilingResult:
    replay = _replay(uow, draft)
    if replay is not None:
        return replay

    report = Report.from_draft(draft, now)
    if route.community_code:
        ticket = uow.tickets.find_open_duplicate(draft.category, route.community_code, now - MERGE_WINDOW)
        if ticket is not None:
            assert ticket.id is not None
            resident = resident_of(draft.sender_id)
            same = any(resident_of(s) == resident for s in uow.tickets.report_senders(ticket.id))
            uow.tickets.add_report(ticket.id, report)
            ticket.apply(
                MERGE,
                f"resident:{draft.sender_id}",
                MERGE_REASON,
                now,
                idempotency_key=draft.idempotency_key,
                channel=draft.channel,
                **({"same_resident": True} if same else {}),
                **({"taken_by": draft.taken_by} if draft.taken_by else {}),
            )
            uow.tickets.save_events(ticket)
            return _result(ticket, merged=True, replay=False)

    ticket = Ticket.new(uow.tickets.next_number(shanghai_day(now)), draft, route, now)
    uow.tickets.add(ticket, report)
    return _result(ticket, merged=False, replay=False)


def _replay(uow: AbstractUnitOfWork, draft: ComplaintDraft) -> FilingResult | None:
    report = uow.tickets.report_by_idempotency_key(draft.idempotency_key)
    if report is None:
        return None
    if report.sender_id != draft.sender_id:
        # Never hand one resident's ticket to another.
        raise IdempotencyConflict(f"idempotency key {draft.idempotency_key!r} belongs to another sender")
    assert report.ticket_id is not None
    ticket = uow.tickets.get(report.ticket_id)
    assert ticket is not None
    merged = any(e.kind == MERGE and e.data.get("idempotency_key") == draft.idempotency_key for e in ticket.events)
    return _result(ticket, merged=merged, replay=True)


def _result(ticket: Ticket, *, merged: bool, replay: bool) -> FilingResult:
    assert ticket.id is not None
    return FilingResult(
        number=ticket.number,
        ticket_id=ticket.id,
        merged=merged,
        replay=replay,
        state=ticket.state,
        lead_queue=ticket.lead_queue,
        deadline_at=ticket.deadline_at,
        report_count=ticket.report_count,
        finish_deadline_at=ticket.finish_deadline(),
    )


def tickets_for_sender(uow: AbstractUnitOfWork, sender_id: str, limit: int = 5) -> list[TicketStatus]:
    with uow:
        return [_status(uow, t) for t in uow.tickets.tickets_for_sender(sender_id, limit)]


def ticket_status(uow: AbstractUnitOfWork, number: str, sender_id: str,
                  last_digits: str | None = None) -> TicketStatus | None:
    """Status of a ticket, only for a sender who reported on it, or for anyone naming the last
    four digits of a phone given on it (a phone caller's ticket, asked about on any channel).
    Everyone else gets None, as for an unknown number: no answer tells which part was wrong."""
    canonical = parse_ticket_number(number)
    if canonical is None:
        return None
    with uow:
        ticket = uow.tickets.get_by_number(canonical)
        if ticket is None or ticket.id is None:
            return None
        if uow.tickets.sender_has_report(ticket.id, sender_id) or _phone_matches(uow, ticket.id, last_digits):
            return _status(uow, ticket)
        return None


def _phone_matches(uow: AbstractUnitOfWork, ticket_id: int, last_digits: str | None) -> bool:
    if not last_digits or len(last_digits) != 4 or not last_digits.isdigit():
        return False
    return any(phone_tail(p) == last_digits for p in uow.tickets.report_phones(ticket_id))


def _status(uow: AbstractUnitOfWork, ticket: Ticket) -> TicketStatus:
    last = ticket.events[-1]
    unit = accepted_unit(ticket)
    return TicketStatus(
        number=ticket.number,
        category=ticket.category,
        category_name=CATEGORIES.get(ticket.category, ticket.category),
        state=ticket.state,
        lead_queue=ticket.lead_queue,
        lead_queue_name=uow.tickets.queue_name(ticket.lead_queue),
        deadline_at=ticket.deadline_at,
        created_at=ticket.created_at,
        last_event_kind=last.kind,
        last_event_at=last.at,
        accepted_unit=unit,
        accepted_unit_name=uow.tickets.queue_name(unit) if unit else None,
        finish_deadline_at=ticket.finish_deadline(),
    )


def sync_queues(uow: AbstractUnitOfWork, queues: Iterable[Mapping[str, Any]]) -> int:
    """Upsert queues given as {"code", "name", "kind"}; returns how many were written."""
    count = 0
    with uow:
        for queue in queues:
            if queue["kind"] not in QUEUE_KINDS:
                raise ValueError(f"queue {queue['code']!r}: kind must be one of {QUEUE_KINDS}")
            uow.tickets.upsert_queue(str(queue["code"]), str(queue["name"]), str(queue["kind"]))
            count += 1
        uow.commit()
    return count


def sync_routing_rules(
    uow: AbstractUnitOfWork, rules: Iterable[Mapping[str, Any]], now: datetime | None = None
) -> int:
    """Upsert rules given as {"category", "lead", "co" (optional list), "dispatch_class"}."""
    now = now or datetime.now(timezone.utc)
    count = 0
    with uow:
        for rule in rules:
            if rule["category"] not in CATEGORIES:
                raise ValueError(f"unknown category {rule['category']!r}")
            uow.tickets.upsert_routing_rule(
                category=rule["category"],
                lead=str(rule["lead"]),
                co=[str(c) for c in rule.get("co") or ()],
                dispatch_class=DispatchClass(rule["dispatch_class"]),
                updated_at=now,
            )
            count += 1
        uow.commit()
    return count


# --- the resident's answer to 回访 (called by the assistant) ----------------

SATISFACTION = ("满意", "基本满意", "不满意")


@dataclass(frozen=True)
class FollowUpResult:
    status: str  # closed | reopened | not_found | not_resolved
    number: str | None
    state: TicketState | None = None


def record_follow_up(
    uow: AbstractUnitOfWork, number: str, sender_id: str, solved: bool, satisfaction: str | None, now: datetime
) -> FollowUpResult:
    """回访: the resident says whether the problem is solved (and how satisfied they are).
    Solved → 回访 (closed); not solved → 重办 (re-opened, back to the same units)."""
    canonical = parse_ticket_number(number or "")
    if canonical is None:
        return FollowUpResult("not_found", None)
    if satisfaction is not None and satisfaction not in SATISFACTION:
        satisfaction = None
    def once() -> FollowUpResult:
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

    return retry_on_stale(once)

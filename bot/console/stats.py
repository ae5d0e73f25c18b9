"""Dashboard figures: tickets per day and category, per street, open vs overdue, and the
三率 (响应率 / 解决率 / 满意率) per street and department for one month, with the monthly
ranking (月排比) by configurable weights.

Definitions (shown on the dashboard too):
  响应率  tickets signed for (签收) within their original time limit / dispatched tickets
          whose response is due (signed for, or past that limit: a ticket still within its
          limit counts neither way yet)
  解决率  tickets the resident confirmed solved at 回访 / tickets with a 回访 answer
  满意率  满意 + 基本满意 / rated 回访 answers
and beside them (the handling figures 12345 centres are measured on):
  按时办结率  tickets whose first 办结 came within the 办结 limit then in force (granted 延期
          included) / tickets whose 办结 is due (resolved, or open past their 办结 limit)
  退单率  tickets returned (退单) at least once / tickets dispatched to a unit
  重办率  tickets re-opened (重办) at least once / tickets resolved at least once
  平均办理时长  mean clock time from 受理 to the first 办结, over the resolved tickets
A ticket counts for the month it was filed in (Hohhot time), for its lead department and
for the street of its location (属地).
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from bot.console.names import category_label, queue_label, street_label
from bot.console.repository import TicketFilter
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.clock import SHANGHAI
from bot.domain.limits import FINISH as FINISH_STEP
from bot.domain.model import (
    ACCEPT,
    CATEGORIES,
    DISPATCH,
    DISPATCH_CENTER,
    FOLLOW_UP,
    OPEN_STATES,
    RECATEGORISE,
    REDISPATCH,
    REOPEN,
    RESOLVE,
    RETURN,
    Ticket,
    TicketState,
)
from bot.storage.confidential import confidential_ticket_ids, redact_row, ticket_of
from bot.storage.tables import metadata
from bot.storage.tables import tickets as tickets_table
from bot.text import mask_personal_data

DEFAULT_WEIGHTS = {"response": 0.3, "solve": 0.4, "satisfy": 0.3}
RATE_NAMES = {"response": "响应率", "solve": "解决率", "satisfy": "满意率"}
# The handling figures beside the 三率 (not weighted into the ranking).
HANDLING_NAMES = {"on_time": "按时办结率", "returned": "退单率", "reopened": "重办率"}
HANDLING_DEFINITIONS = {
    "on_time": "首次办结在当时的办结时限内（含批准的延期）的工单 / 应已办结的工单（已办结，或在办且已过办结时限）",
    "returned": "至少退单一次的工单 / 已派单到承办单位的工单",
    "reopened": "至少重办一次的工单 / 至少办结一次的工单",
    "hours": "从受理到首次办结的自然时长（小时）的平均值，只计已办结的工单",
}
MAX_TICKETS = 50000


def month_bounds(month: str | None, today: date) -> tuple[str, datetime, datetime]:
    """'2026-11' → (label, start, end) in Hohhot time; a bad or missing month is this month."""
    try:
        year, mon = (int(x) for x in (month or "").split("-"))
        first = date(year, mon, 1)
        nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)  # 9999-12 has none
    except (ValueError, OverflowError):
        first = today.replace(day=1)
        nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    start = datetime.combine(first, time(0), SHANGHAI)
    end = datetime.combine(nxt, time(0), SHANGHAI)
    return f"{first:%Y-%m}", start, end


def parse_weights(raw: Mapping[str, Any]) -> dict[str, float]:
    weights = {}
    for key, default in DEFAULT_WEIGHTS.items():
        try:
            value = float(str(raw.get(f"w_{key}", default)))
        except ValueError:
            value = default
        weights[key] = min(max(value, 0.0), 100.0)
    if sum(weights.values()) <= 0:
        weights = dict(DEFAULT_WEIGHTS)
    return weights


@dataclass
class UnitRates:
    unit: str
    name: str
    kind: str  # department | street
    tickets: int = 0
    dispatched: int = 0
    responded: int = 0
    answered: int = 0
    solved: int = 0
    rated: int = 0
    satisfied: int = 0
    # the handling figures: numerators and denominators (see the module docstring)
    finish_due: int = 0
    on_time: int = 0
    routed: int = 0
    returned: int = 0
    resolved: int = 0
    reopened: int = 0
    handling_seconds: float = 0.0
    rates: dict[str, float | None] = field(default_factory=dict)
    handling: dict[str, float | None] = field(default_factory=dict)
    average_hours: float | None = None
    score: float | None = None
    rank: int | None = None

    def finish(self, weights: Mapping[str, float]) -> None:
        self.rates = {
            "response": self.responded / self.dispatched if self.dispatched else None,
            "solve": self.solved / self.answered if self.answered else None,
            "satisfy": self.satisfied / self.rated if self.rated else None,
        }
        self.handling = {
            "on_time": self.on_time / self.finish_due if self.finish_due else None,
            "returned": self.returned / self.routed if self.routed else None,
            "reopened": self.reopened / self.resolved if self.resolved else None,
        }
        self.average_hours = self.handling_seconds / 3600 / self.resolved if self.resolved else None
        known = {k: w for k, w in weights.items() if self.rates.get(k) is not None and w > 0}
        total = sum(known.values())
        # Missing rates (no 回访 yet) are left out and the other weights scaled up.
        self.score = sum(self.rates[k] * w for k, w in known.items()) / total if total else None  # type: ignore[operator]


def _first(ticket: Ticket, kinds: Iterable[str]) -> Any:
    kinds = set(kinds)
    return next((e for e in ticket.events if e.kind in kinds), None)


def _first_resolve_deadline(ticket: Ticket, index: int) -> datetime:
    """The 办结 limit in force when the ticket was first resolved (events[index]): its limit
    from 受理 plus the extensions granted before, computed on the events up to then."""
    before = replace(ticket, events=ticket.events[: index + 1], state=TicketState.RESOLVED)
    return before.compute_deadline(step=FINISH_STEP)


def _count_handling(unit: UnitRates, ticket: Ticket, now: datetime) -> None:
    kinds = [e.kind for e in ticket.events]
    if any(k in (DISPATCH, REDISPATCH, RECATEGORISE) for k in kinds):
        unit.routed += 1
        if RETURN in kinds:
            unit.returned += 1
    if RESOLVE in kinds:
        index = kinds.index(RESOLVE)
        first = ticket.events[index]
        unit.resolved += 1
        unit.finish_due += 1
        unit.handling_seconds += (first.at - ticket.created_at).total_seconds()
        if first.at <= _first_resolve_deadline(ticket, index):
            unit.on_time += 1
        if REOPEN in kinds[index:]:
            unit.reopened += 1
    elif ticket.is_open and ticket.finish_deadline() < now:
        unit.finish_due += 1  # late and still not resolved: a miss


def _count(unit: UnitRates, ticket: Ticket, now: datetime) -> None:
    unit.tickets += 1
    _count_handling(unit, ticket, now)
    dispatched = _first(ticket, (DISPATCH, REDISPATCH, RECATEGORISE))
    if dispatched is not None:
        accepted = _first(ticket, (ACCEPT,))
        original = ticket.sign_deadline()  # 按时签收: the 签收 limit (the old single limit for old tickets)
        withdrawn_unsigned = accepted is None and ticket.state is TicketState.WITHDRAWN  # 撤单: nothing was due
        if not withdrawn_unsigned and (accepted is not None or original < now):
            unit.dispatched += 1
            if accepted is not None and accepted.at <= original:
                unit.responded += 1
    answers = [e for e in ticket.events if e.kind == FOLLOW_UP or (e.kind == REOPEN and "solved" in e.data)]
    if answers:
        last = answers[-1]
        unit.answered += 1
        if last.data.get("solved"):
            unit.solved += 1
        satisfaction = last.data.get("satisfaction")
        if satisfaction:
            unit.rated += 1
            if satisfaction in ("满意", "基本满意"):
                unit.satisfied += 1


def rates_by_unit(tickets: Iterable[Ticket], weights: Mapping[str, float], now: datetime) -> dict[str, list[UnitRates]]:
    units: dict[tuple[str, str], UnitRates] = {}
    for t in tickets:
        keys = []
        if t.lead_queue != DISPATCH_CENTER:
            keys.append(("department", t.lead_queue))
        if t.street_code:
            keys.append(("street", t.street_code))
        for kind, code in keys:
            if (kind, code) not in units:
                name = queue_label(code) if kind == "department" else street_label(code)
                units[(kind, code)] = UnitRates(code, name, kind)
            _count(units[(kind, code)], t, now)
    out: dict[str, list[UnitRates]] = {"department": [], "street": []}
    for unit in units.values():
        unit.finish(weights)
        out[unit.kind].append(unit)
    for kind, items in out.items():
        items.sort(key=lambda u: (u.score is None, -(u.score or 0), -u.tickets, u.unit))
        for i, u in enumerate(items, start=1):
            u.rank = i if u.score is not None else None
    return out


@dataclass
class Dashboard:
    month: str
    weights: dict[str, float]
    total: int
    open_now: int
    overdue_now: int
    per_day: dict[str, Any]
    per_street: list[tuple[str, int]]
    open_vs_overdue: list[tuple[str, int, int]]
    units: dict[str, list[UnitRates]]


def dashboard(
    uow: ConsoleUnitOfWork, scope: TicketFilter, month: str | None, weights: Mapping[str, float], now: datetime
) -> Dashboard:
    label, start, end = month_bounds(month, now.astimezone(SHANGHAI).date())
    t = tickets_table
    with uow:
        in_month = uow.console.ticket_rows(
            scope, extra=[t.c.created_at >= start, t.c.created_at < end], order="deadline", limit=MAX_TICKETS
        )
        open_tickets = uow.console.ticket_rows(
            scope, states=[s.value for s in TicketState if s in OPEN_STATES], order="deadline", limit=MAX_TICKETS
        )
    days = []
    d = start.date()
    while d < end.date():
        days.append(d)
        d += timedelta(days=1)
    by_cat: dict[str, Counter] = defaultdict(Counter)
    per_street: Counter = Counter()
    for ticket in in_month:
        day = ticket.created_at.astimezone(SHANGHAI).date()
        by_cat[ticket.category][day] += 1
        per_street[street_label(ticket.street_code) or "未定街道"] += 1
    series = [
        {"name": category_label(code), "data": [by_cat[code][d] for d in days]}
        for code in CATEGORIES
        if by_cat.get(code)
    ]
    open_units: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    overdue = 0
    for ticket in open_tickets:
        row = open_units[queue_label(ticket.lead_queue)]
        row[0] += 1
        if ticket.deadline_at < now:
            row[1] += 1
            overdue += 1
    return Dashboard(
        month=label,
        weights=dict(weights),
        total=len(in_month),
        open_now=len(open_tickets),
        overdue_now=overdue,
        per_day={"days": [f"{d:%m-%d}" for d in days], "series": series},
        per_street=per_street.most_common(20),
        open_vs_overdue=sorted(((k, v[0], v[1]) for k, v in open_units.items()), key=lambda r: -r[1]),
        units=rates_by_unit(in_month, weights, now),
    )


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}"


RATES_CSV_HEADER = [
    "类型", "单位代码", "单位", "工单", "排名", "综合得分",
    "响应率%", "解决率%", "满意率%", "按时办结率%", "退单率%", "重办率%", "平均办理时长（小时）",
    "按时签收", "应已响应", "确认解决", "已回访", "满意", "已评价",
    "按时办结", "应已办结", "退单工单", "已派单", "重办工单", "已办结",
]


def rates_csv(board: Dashboard) -> bytes:
    """The dashboard's per-street and per-department figures, with each rate's counts."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(RATES_CSV_HEADER)
    for kind, label in (("street", "街道"), ("department", "部门")):
        for u in board.units[kind]:
            hours = "" if u.average_hours is None else f"{u.average_hours:.1f}"
            writer.writerow([_cell(v) for v in (
                label, u.unit, u.name, u.tickets, u.rank or "", _percent(u.score),
                *(_percent(u.rates[k]) for k in RATE_NAMES), *(_percent(u.handling[k]) for k in HANDLING_NAMES), hours,
                u.responded, u.dispatched, u.solved, u.answered, u.satisfied, u.rated,
                u.on_time, u.finish_due, u.returned, u.routed, u.reopened, u.resolved,
            )])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# --- CSV export ----------------------------------------------------------------

# Secrets never leave the database, not even for an admin.
REDACTED = "[redacted]"


def _redact(table: str, column: str) -> bool:
    name = column.lower()
    if table == "sessions" and name == "id":
        return True
    return any(word in name for word in ("password", "hash", "token", "secret", "csrf"))


def exportable_tables() -> list[str]:
    import bot.storage.all_tables  # noqa: F401  (every feature's tables)

    return [t.name for t in metadata.sorted_tables]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(SHANGHAI).isoformat()
    if isinstance(value, (dict, list)):
        import json

        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    # Spreadsheet formula injection: a cell must not start a formula.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text):
        text = "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def table_csv(conn: Connection, table_name: str, include_confidential: bool = False,
              ticket_ids: Iterable[int] | None = None) -> bytes:
    """A table as CSV. Rows of a 保密 ticket (bot/storage/confidential.py) are left out, unless
    include_confidential (an admin gave a reason: bot/console/services/privacy.py); then their
    phone numbers are withheld and their texts masked. `ticket_ids` (the tickets table: a
    queue's search) keeps only those rows."""
    if table_name not in exportable_tables():
        raise KeyError(table_name)
    table = metadata.tables[table_name]
    out = io.StringIO()
    writer = csv.writer(out)
    columns = [c.name for c in table.columns]
    writer.writerow(columns)
    keep = None if ticket_ids is None else frozenset(ticket_ids)
    confidential = confidential_ticket_ids(conn)
    result = conn.execute(select(table).order_by(*table.primary_key.columns) if table.primary_key.columns else select(table))
    for row in result:
        if keep is not None and row._mapping.get("id") not in keep:
            continue  # filtered here: the ids may be more than one IN (...) can bind
        if not include_confidential and ticket_of(table_name, row._mapping) in confidential:
            continue
        values = redact_row(table_name, row._mapping, confidential, mask_personal_data)
        writer.writerow(
            [REDACTED if _redact(table_name, c) and values[c] is not None else _cell(values[c]) for c in columns]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # BOM: Excel opens UTF-8 Chinese correctly

"""Tickets and their life cycle, following the 12345 hotline cycle.

受理 → 派单 → 签收 → 办理 → 办结 → 回访, with 退单/改派 back to dispatch,
重办 to reopen, 改类 (the dispatcher corrects the category and re-routes), and 延期/并单
recorded without a state change.
Standard library only (plus the `chinese_calendar` data library behind bot.domain.workcal):
this module must stay framework-free. Time limits per step come from bot.domain.limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from bot.domain.clock import SHANGHAI
from bot.domain.limits import FINISH, SIGN, Limit, StepLimits, time_limits
from bot.domain.workcal import WorkCalendar, add_working_time

CATEGORIES: dict[str, str] = {
    "dog": "文明养犬",
    "illegal_ads": "小广告/乱张贴乱涂写",
    "drainage": "排水与污水",
    "sanitation": "环境卫生/垃圾",
    "heating": "供热",
    "water_supply": "供水",
    "street_order": "市容秩序",
    "noise": "噪声扰民",
    "roads_lighting": "市政设施",
    "property": "物业与小区",
    "market": "市场监管",
    "ecology": "生态环境",
    "power_supply": "供电",
    "gas": "燃气",
    "transport": "交通与公交",
    "greenery": "园林绿化",
    "labour": "劳动保障",
    "demolition": "征收拆迁",
    "real_estate": "房产",
    "education": "教育",
    "healthcare": "医疗卫生",
    "other": "其他",
}

# Work queues are departments, street offices or the dispatch centre.
QUEUE_KINDS = ("department", "street", "dispatch")

# The queue of the 12345 dispatch centre: tickets routed here wait for a human dispatcher.
DISPATCH_CENTER = "dispatch_center"


class DispatchClass(str, Enum):
    URGENT = "urgent"
    UTILITIES = "utilities"
    NORMAL = "normal"

    @property
    def label(self) -> str:
        return _DISPATCH_LABELS[self]

    @property
    def legacy_limit(self) -> Limit:
        """The old rule's single limit (tickets filed before per-step limits): the catalogue's `hours`."""
        return time_limits().legacy[self.value]

    @property
    def limit(self) -> timedelta:
        return self.legacy_limit.amount

    @property
    def working_days(self) -> bool:
        """True when the old rule's `limit` runs on working days only (一般); urgent classes are clock hours."""
        return self.legacy_limit.working_days

    @property
    def limit_label(self) -> str:
        return self.legacy_limit.label

    def limits_label(self, category: str = "") -> str:
        step = time_limits().for_ticket(self.value, category)
        return f"签收{step.sign.label}，办结{step.finish.label}"


_DISPATCH_LABELS = {
    DispatchClass.URGENT: "紧急",
    DispatchClass.UTILITIES: "公用事业",
    DispatchClass.NORMAL: "一般",
}


class TicketState(str, Enum):
    RECEIVED = "受理"
    DISPATCHED = "派单"
    ACCEPTED = "签收"
    IN_PROGRESS = "办理"
    RETURNED = "退单"
    RESOLVED = "办结"
    CLOSED = "回访"
    WITHDRAWN = "已撤单"  # the resident withdrew it while it was open (撤单)

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATES


OPEN_STATES = frozenset(TicketState) - {TicketState.RESOLVED, TicketState.CLOSED, TicketState.WITHDRAWN}
CLOSED_STATES = frozenset(TicketState) - OPEN_STATES

# Event kinds (stored as the Chinese word).
RECEIVE, DISPATCH, ACCEPT, WORK, RETURN, REDISPATCH = "受理", "派单", "签收", "办理", "退单", "改派"
EXTEND, RESOLVE, FOLLOW_UP, REOPEN, MERGE = "延期", "办结", "回访", "重办", "并单"
# The resident, while the ticket is open: adds a message or a photo (补充; data: key, photo)
# or withdraws it (撤单, reason required; data: key). `key` is the resident's message id: a
# retried message adds nothing twice.
ADD_BY_RESIDENT, WITHDRAW = "补充", "撤单"
# Console moves: the dispatcher refuses a return (驳回, back to the worker) or grants an
# extension (批准延期); escalation rules flag overdue tickets (督办) and tickets returned
# RETURN_ESCALATION times (提级, the dispatcher must re-dispatch them).
REJECT_RETURN, APPROVE_EXTENSION, SUPERVISE, ESCALATE = "驳回", "批准延期", "督办", "提级"
# 改类: the dispatcher corrects the category of a ticket waiting for (re-)dispatch; the
# ticket goes to the new category's units, like a 派单/改派.
RECATEGORISE = "改类"
# 时限调整: the holiday calendar changed and moved the deadline (data: from, to; ISO times).
ADJUST_DEADLINE = "时限调整"
# The resident's right to erasure (删除我的信息, bot/services/rights.py): an open ticket only
# they reported is withdrawn (撤单, as when they withdraw it themselves; the units are told, no
# 回访 answer is recorded, so no 满意 figure); 信息删除 tells the units of a ticket others
# reported too that one reporter's data is gone.
REPORTER_ERASED = "信息删除"
# 询问居民: a handler asks the ticket's resident a question in their chat (data: question_id);
# 居民补充: the resident's answer, text or photo, attached (data: question_id, photo). Neither
# changes the state; an answer is kept whatever the ticket's state by then (nothing lost).
ASK, ANSWER = "询问居民", "居民补充"
# Events after which the ticket is with (new) units: a new handling round starts.
ROUTING_KINDS = frozenset({DISPATCH, REDISPATCH, REOPEN, RECATEGORISE})
RETURN_ESCALATION = 3
EVENT_KINDS: dict[str, str] = {  # kind → English name, for messages and logs
    RECEIVE: "receive",
    DISPATCH: "dispatch",
    ACCEPT: "accept",
    WORK: "start work",
    RETURN: "return",
    REDISPATCH: "re-dispatch",
    EXTEND: "request extension",
    RESOLVE: "resolve",
    FOLLOW_UP: "close after follow-up",
    REOPEN: "reopen",
    MERGE: "merge report",
    ADD_BY_RESIDENT: "add to the ticket (resident)",
    WITHDRAW: "withdraw (resident)",
    REJECT_RETURN: "reject the return",
    APPROVE_EXTENSION: "approve an extension",
    SUPERVISE: "flag as overdue",
    ESCALATE: "escalate",
    RECATEGORISE: "recategorise",
    ADJUST_DEADLINE: "adjust the deadline to the holiday calendar",
    REPORTER_ERASED: "record a reporter's erasure",
    ASK: "ask the resident",
    ANSWER: "resident answered",
}

_S = TicketState
# kind → (states it may be applied in, resulting state; None keeps the state).
# 受理 is absent: it is only ever the first event, written by Ticket.new.
TRANSITIONS: dict[str, tuple[frozenset[TicketState], TicketState | None]] = {
    DISPATCH: (frozenset({_S.RECEIVED}), _S.DISPATCHED),
    ACCEPT: (frozenset({_S.DISPATCHED}), _S.ACCEPTED),
    # 办理 starts the work and records each later progress note.
    WORK: (frozenset({_S.ACCEPTED, _S.IN_PROGRESS}), _S.IN_PROGRESS),
    RETURN: (frozenset({_S.ACCEPTED, _S.IN_PROGRESS}), _S.RETURNED),
    REDISPATCH: (frozenset({_S.RETURNED}), _S.DISPATCHED),
    RESOLVE: (frozenset({_S.ACCEPTED, _S.IN_PROGRESS}), _S.RESOLVED),
    FOLLOW_UP: (frozenset({_S.RESOLVED}), _S.CLOSED),
    REOPEN: (frozenset({_S.RESOLVED, _S.CLOSED}), _S.DISPATCHED),
    EXTEND: (frozenset({_S.ACCEPTED, _S.IN_PROGRESS}), None),
    MERGE: (OPEN_STATES, None),
    ADD_BY_RESIDENT: (OPEN_STATES, None),
    WITHDRAW: (OPEN_STATES, _S.WITHDRAWN),
    # 驳回 goes back to the state the ticket was returned from (签收 or 办理); 签收 is nominal.
    REJECT_RETURN: (frozenset({_S.RETURNED}), _S.ACCEPTED),
    APPROVE_EXTENSION: (frozenset({_S.ACCEPTED, _S.IN_PROGRESS}), None),
    SUPERVISE: (OPEN_STATES, None),
    ESCALATE: (frozenset({_S.RETURNED}), None),
    # Where 派单 and 改派 are possible: waiting in the dispatch centre, or returned.
    RECATEGORISE: (frozenset({_S.RECEIVED, _S.RETURNED}), _S.DISPATCHED),
    ADJUST_DEADLINE: (OPEN_STATES, None),
    REPORTER_ERASED: (OPEN_STATES, None),
    ASK: (OPEN_STATES, None),
    ANSWER: (frozenset(TicketState), None),
}
REASON_REQUIRED = frozenset({RETURN, RESOLVE, EXTEND, REJECT_RETURN, RECATEGORISE, WITHDRAW, REPORTER_ERASED})


class InvalidTransition(Exception):
    """An event that the ticket's current state does not allow."""


def deadline_for(dispatch_class: DispatchClass, start: datetime, calendar: WorkCalendar | None = None) -> datetime:
    """The old rule's single deadline (tickets filed before per-step limits).

    一般 (24 h) means one working day on the Chinese calendar (holidays and 调休 make-up
    days included, see bot.domain.workcal); 紧急 1 h and 公用事业 2 h are clock hours.
    """
    return DispatchClass(dispatch_class).legacy_limit.due(start, calendar)


# Which limit runs: waiting to be signed for (签收时限) or being handled (办结时限).
SIGN_STATES = frozenset({TicketState.RECEIVED, TicketState.DISPATCHED, TicketState.RETURNED})


def step_of(state: TicketState) -> str:
    return SIGN if state in SIGN_STATES else FINISH


def extend_deadline(deadline: datetime, days: int, calendar: WorkCalendar | None = None) -> datetime:
    """A granted extension of `days` working days."""
    if not 1 <= int(days) <= 30:
        raise InvalidTransition("延期天数须在1到30个工作日之间 / an extension is 1 to 30 working days")
    return add_working_time(deadline, timedelta(days=int(days)), calendar)


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")


@dataclass(frozen=True)
class Route:
    lead: str
    co: tuple[str, ...]
    district_code: str | None
    street_code: str | None
    community_code: str | None
    dispatch_class: DispatchClass
    reason: str

    @property
    def is_manual(self) -> bool:
        return self.lead == DISPATCH_CENTER


@dataclass
class ComplaintDraft:
    sender_id: str
    channel: str
    category: str
    description: str
    location_text: str
    photo: str | None
    phone: str | None
    confidential: bool
    idempotency_key: str
    # the console user who wrote the complaint down for the resident (来电登记: "user:<name>")
    taken_by: str | None = None


@dataclass(frozen=True)
class Report:
    """One resident submission; a merged repeat complaint is another report on the same ticket."""

    sender_id: str
    channel: str
    description: str
    location_text: str
    photo: str | None
    phone: str | None
    confidential: bool
    idempotency_key: str
    created_at: datetime
    ticket_id: int | None = None
    id: int | None = None

    @classmethod
    def from_draft(cls, draft: ComplaintDraft, at: datetime) -> Report:
        return cls(
            sender_id=draft.sender_id,
            channel=draft.channel,
            description=draft.description,
            location_text=draft.location_text,
            photo=draft.photo,
            phone=draft.phone,
            confidential=draft.confidential,
            idempotency_key=draft.idempotency_key,
            created_at=at,
        )


@dataclass(frozen=True)
class TicketEvent:
    kind: str
    from_state: TicketState | None
    to_state: TicketState | None
    actor: str
    reason: str
    data: dict[str, Any]
    at: datetime


@dataclass(kw_only=True)
class Ticket:
    id: int | None = None
    number: str
    category: str
    description: str
    location_text: str
    district_code: str | None
    street_code: str | None
    community_code: str | None
    lead_queue: str
    co_queues: tuple[str, ...]
    dispatch_class: DispatchClass
    state: TicketState
    created_at: datetime
    deadline_at: datetime
    updated_at: datetime
    report_count: int = 1
    # The 签收/办结 limits the ticket was filed under (None: filed under the old single-limit rule).
    limits: StepLimits | None = None
    events: list[TicketEvent] = field(default_factory=list)
    # Storage bookkeeping: optimistic-lock version (0 = never saved) and how many
    # of `events` are already persisted (the rest are new).
    version: int = 0
    saved_event_count: int = 0

    @classmethod
    def new(cls, number: str, draft: ComplaintDraft, route: Route, now: datetime) -> Ticket:
        _require_aware(now)
        ticket = cls(
            number=number,
            category=draft.category,
            description=draft.description,
            location_text=draft.location_text,
            district_code=route.district_code,
            street_code=route.street_code,
            community_code=route.community_code,
            lead_queue=route.lead,
            co_queues=tuple(route.co),
            dispatch_class=DispatchClass(route.dispatch_class),
            state=TicketState.RECEIVED,
            created_at=now,
            deadline_at=now,  # set below, from the step the ticket is at
            updated_at=now,
            limits=time_limits().for_ticket(DispatchClass(route.dispatch_class).value, draft.category),
        )
        ticket.events.append(
            TicketEvent(
                kind=RECEIVE,
                from_state=None,
                to_state=TicketState.RECEIVED,
                actor=f"resident:{draft.sender_id}",
                reason=route.reason if route.is_manual else "",
                data={"channel": draft.channel, **({"taken_by": draft.taken_by} if draft.taken_by else {})},
                at=now,
            )
        )
        ticket.deadline_at = ticket.compute_deadline()
        if not route.is_manual:
            ticket.apply(DISPATCH, "system:router", route.reason, now, lead=route.lead, co=list(route.co))
        return ticket

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def new_events(self) -> list[TicketEvent]:
        return self.events[self.saved_event_count :]

    def apply(self, kind: str, actor: str, reason: str, at: datetime, **data: Any) -> TicketEvent:
        """Validate and record one event; `data` must be JSON-serialisable."""
        _require_aware(at)
        if kind not in TRANSITIONS:
            raise InvalidTransition(
                f"不能直接执行「{kind}」 / {EVENT_KINDS.get(kind, kind)!r} cannot be applied to a ticket"
            )
        allowed, to_state = TRANSITIONS[kind]
        english = EVENT_KINDS[kind]
        if self.state not in allowed:
            raise InvalidTransition(
                f"工单 {self.number} 当前为「{self.state.value}」，不能{kind} / "
                f"cannot {english} ticket {self.number} in state {self.state.name}"
            )
        if kind in REASON_REQUIRED and not reason.strip():
            raise InvalidTransition(f"{kind}必须填写原因或结果 / {english} requires a reason")
        if kind == ADJUST_DEADLINE and not isinstance(data.get("to"), str):
            raise InvalidTransition("时限调整须给出新的时限 / adjusting the deadline requires the new one")
        if kind == RECATEGORISE:
            self._recategorise(data)
        if kind in (DISPATCH, REDISPATCH, REOPEN):
            self._set_queues(kind, data)
        if kind == MERGE and not data.get("same_resident"):
            self.report_count += 1  # residents, not reports: a repeat by one resident is not counted
        if kind == REOPEN and self.limits is None:
            # A reopened ticket starts a new handling period.
            self.deadline_at = deadline_for(self.dispatch_class, at)
        if kind == APPROVE_EXTENSION and self.limits is None:
            self.deadline_at = extend_deadline(self.deadline_at, int(data.get("days") or 0))
        if kind == REJECT_RETURN:
            returned = [e for e in self.events if e.kind == RETURN]
            if returned and returned[-1].from_state is not None:
                to_state = returned[-1].from_state

        # to_state None marks an event that leaves the state unchanged (延期, 并单).
        event = TicketEvent(kind, self.state, to_state, actor, reason, dict(data), at)
        if to_state is not None:
            self.state = to_state
        self.updated_at = at
        self.events.append(event)
        if kind == ADJUST_DEADLINE:
            self.deadline_at = datetime.fromisoformat(str(data["to"]))
        elif self.limits is not None and kind != SUPERVISE:
            self.deadline_at = self.compute_deadline()  # the limit of the step the ticket is now at
        return event

    @property
    def step(self) -> str:
        """签收 (waiting to be signed for) or 办结 (being handled, or handled)."""
        return step_of(self.state)

    @property
    def step_limit(self) -> Limit:
        if self.limits is None:
            return self.dispatch_class.legacy_limit
        return self.limits.of(self.step)

    def finish_deadline(self, calendar: WorkCalendar | None = None) -> datetime:
        """When the problem is due to be handled (办结时限), at whatever step the ticket is:
        what a resident is told. Old-rule tickets: their one deadline."""
        if self.limits is None or self.step != SIGN:
            return self.deadline_at
        return self.compute_deadline(calendar, step=FINISH)

    def compute_deadline(self, calendar: WorkCalendar | None = None, step: str | None = None) -> datetime:
        """The deadline from the events, on `calendar` (default: this process's calendar),
        of the step the ticket is at (or of `step`).

        Per-step limits: 签收 runs from filing, 重办 or the last 退单; 办结 from the start of
        the handling period (受理 or the last 重办), plus granted extensions. Tickets filed
        under the old rule: one limit from the start of the handling period, plus extensions.
        """
        period = sign_start = self.created_at
        extensions: list[int] = []
        for e in self.events:
            if e.kind == REOPEN:
                period = sign_start = e.at
                extensions = []
            elif e.kind == RETURN:  # the dispatch centre re-dispatches, the new unit signs: a new 签收 clock
                sign_start = e.at
            elif e.kind == APPROVE_EXTENSION:
                extensions.append(int(e.data.get("days") or 0))
        if self.limits is None:
            deadline = deadline_for(self.dispatch_class, period, calendar)
        elif (step or self.step) == SIGN:
            return self.limits.sign.due(sign_start, calendar)
        else:
            deadline = self.limits.finish.due(period, calendar)
        for days in extensions:
            deadline = extend_deadline(deadline, days, calendar)
        return deadline

    def adjust_to_calendar(self, calendar: WorkCalendar, actor: str, at: datetime) -> TicketEvent | None:
        """Move the deadline of an open ticket to what `calendar` says (时限随节假日安排调整);
        None when it does not move (or the ticket is resolved or closed)."""
        if not self.is_open:
            return None
        new = self.compute_deadline(calendar)
        if new == self.deadline_at:
            return None
        old = self.deadline_at
        return self.apply(ADJUST_DEADLINE, actor, f"时限随节假日安排调整：{_local(old)} → {_local(new)}", at,
                          **{"from": old.isoformat(), "to": new.isoformat()})

    def supervised(self) -> bool:
        """督办 stands until a calendar change moves the deadline (the sweep flags it again if still late)."""
        for e in reversed(self.events):
            if e.kind == SUPERVISE:
                return True
            if e.kind == ADJUST_DEADLINE:
                return False
        return False

    def sign_deadline(self, calendar: WorkCalendar | None = None) -> datetime:
        """When the first 签收 was due (the 三率's 按时签收)."""
        if self.limits is None:
            return deadline_for(self.dispatch_class, self.created_at, calendar)
        return self.limits.sign.due(self.created_at, calendar)

    @property
    def return_count(self) -> int:
        """退单 since the ticket was last (re)opened by a resident."""
        count = 0
        for e in self.events:
            if e.kind == RETURN:
                count += 1
            elif e.kind == REOPEN:
                count = 0
        return count

    @property
    def escalated(self) -> bool:
        """提级 since the last dispatch: only the dispatcher may move the ticket on."""
        for e in reversed(self.events):
            if e.kind == ESCALATE:
                return True
            if e.kind in ROUTING_KINDS:
                return False
        return False

    def needs_escalation(self) -> bool:
        return self.state is TicketState.RETURNED and self.return_count >= RETURN_ESCALATION and not self.escalated

    def is_overdue(self, now: datetime) -> bool:
        return self.is_open and self.deadline_at < now

    def supervised_for_current_deadline(self) -> bool:
        """A 督办 flag was already raised for the current deadline."""
        stamp = self.deadline_at.isoformat()
        for e in reversed(self.events):
            if e.kind == ADJUST_DEADLINE:
                return False  # moved by the calendar: a new deadline, even if it moved back
            if e.kind == SUPERVISE and e.data.get("deadline") == stamp:
                return True
        return False

    def _recategorise(self, data: dict[str, Any]) -> None:
        """改类: data = {"was": the current category, "category": the new one, "lead", "co"
        (the new category's units), "dispatch_class" (the new category's class)}.

        The deadline is derived from the category's class: when the class changes it is
        recomputed from the start of the handling period (受理, or the last 重办) as at
        filing; a same-class correction keeps it (and any granted extension)."""
        new = data.get("category")
        if data.get("was") != self.category:
            raise InvalidTransition(
                f"工单 {self.number} 的类别已不是「{CATEGORIES.get(str(data.get('was')), data.get('was'))}」 / "
                f"ticket {self.number} is no longer in category {data.get('was')!r}"
            )
        if new not in CATEGORIES:
            raise InvalidTransition(f"未知的类别 {new} / unknown category {new!r}")
        if new == self.category:
            raise InvalidTransition(f"工单已是「{CATEGORIES[new]}」类，无需改类 / the ticket is already in {new!r}")
        try:
            dispatch_class = DispatchClass(data.get("dispatch_class"))
        except ValueError:
            raise InvalidTransition("改类必须给出新类别的时限类别 / recategorise requires a dispatch class") from None
        self._set_queues(RECATEGORISE, data)  # validates before it changes anything
        self.category = str(new)
        if self.limits is not None:
            self.dispatch_class = dispatch_class
            self.limits = time_limits().for_ticket(dispatch_class.value, self.category)
        elif dispatch_class is not self.dispatch_class:
            self.dispatch_class = dispatch_class
            reopened = [e.at for e in self.events if e.kind == REOPEN]
            self.deadline_at = deadline_for(dispatch_class, reopened[-1] if reopened else self.created_at)

    def _set_queues(self, kind: str, data: dict[str, Any]) -> None:
        lead = data.get("lead")
        if lead is None and kind in (REDISPATCH, RECATEGORISE):
            raise InvalidTransition(f"{kind}必须指定新的承办单位 / {EVENT_KINDS[kind]} requires a new lead queue")
        if lead is None and self.lead_queue == DISPATCH_CENTER:
            raise InvalidTransition("派单必须指定承办单位 / dispatch from the dispatch centre requires a lead queue")
        if lead == DISPATCH_CENTER:
            raise InvalidTransition(f"{kind}不能派给派单中心 / cannot {EVENT_KINDS[kind]} to the dispatch centre")
        if lead is not None:
            self.lead_queue = str(lead)
        if "co" in data:
            self.co_queues = tuple(data["co"])
        # The street (属地) the dispatcher named becomes the ticket's street, so the
        # dashboard, the per-street rates and 并单 count it there.
        street = data.get("street")
        if street:
            if str(street) != self.street_code:
                self.street_code = str(street)
                self.community_code = None  # a community of another street no longer applies
            if data.get("district"):
                self.district_code = str(data["district"])


def _local(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")

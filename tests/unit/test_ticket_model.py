from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from bot.domain.model import (
    CATEGORIES,
    DISPATCH_CENTER,
    TRANSITIONS,
    ComplaintDraft,
    DispatchClass,
    InvalidTransition,
    Route,
    Ticket,
    TicketEvent,
    TicketState,
    deadline_for,
)
from bot.domain.numbers import format_ticket_number, parse_phone_tail, parse_ticket_number, phone_tail

S = TicketState
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=30)


def draft(**overrides: object) -> ComplaintDraft:
    values: dict = dict(
        sender_id="u1",
        channel="wechat",
        category="sanitation",
        description="小区门口垃圾三天没人清运",
        location_text="新城区公主府社区",
        photo=None,
        phone=None,
        confidential=False,
        idempotency_key="k1",
    )
    values.update(overrides)
    return ComplaintDraft(**values)


def route(lead: str = "city_mgmt", cls: DispatchClass = DispatchClass.NORMAL) -> Route:
    return Route(
        lead=lead,
        co=("street_150102001",),
        district_code="150102",
        street_code="150102001",
        community_code="150102001001",
        dispatch_class=cls,
        reason="环境卫生归城管",
    )


def ticket_in(state: TicketState, legacy: bool = False) -> Ticket:
    """A dispatched ticket driven into `state` through legal moves (`legacy`: filed under
    the old single-limit rule, before per-step limits)."""
    t = Ticket.new("QC-261124-0001", draft(), route(), NOW)
    if legacy:
        t.limits, t.deadline_at = None, deadline_for(t.dispatch_class, NOW)
    path = {
        S.RECEIVED: [],
        S.DISPATCHED: [],
        S.ACCEPTED: ["签收"],
        S.IN_PROGRESS: ["签收", "办理"],
        S.RETURNED: ["签收", "退单"],
        S.RESOLVED: ["签收", "办结"],
        S.CLOSED: ["签收", "办结", "回访"],
        S.WITHDRAWN: ["撤单"],
    }[state]
    if state is S.RECEIVED:
        t = Ticket.new("QC-261124-0001", draft(), route(DISPATCH_CENTER), NOW)
        if legacy:
            t.limits, t.deadline_at = None, deadline_for(t.dispatch_class, NOW)
    for kind in path:
        t.apply(kind, "worker:1", "原因", NOW)
    assert t.state is state
    return t


def test_categories_in_order() -> None:
    assert list(CATEGORIES)[:3] == ["dog", "illegal_ads", "drainage"]
    assert list(CATEGORIES)[-1] == "other"
    assert len(CATEGORIES) == 22
    assert CATEGORIES["heating"] == "供热"


def test_dispatch_classes() -> None:
    assert [(c.value, c.label, c.limit) for c in DispatchClass] == [
        ("urgent", "紧急", timedelta(hours=1)),
        ("utilities", "公用事业", timedelta(hours=2)),
        ("normal", "一般", timedelta(hours=24)),
    ]
    assert DispatchClass("urgent") is DispatchClass.URGENT


def test_states_are_chinese_and_open_states() -> None:
    assert S("受理") is S.RECEIVED
    assert {s for s in S if s.is_open} == {S.RECEIVED, S.DISPATCHED, S.ACCEPTED, S.IN_PROGRESS, S.RETURNED}


def test_new_ticket_is_received_then_dispatched() -> None:
    t = Ticket.new("QC-261124-0001", draft(), route(), NOW)
    assert t.id is None
    assert t.state is S.DISPATCHED
    assert (t.lead_queue, t.co_queues) == ("city_mgmt", ("street_150102001",))
    assert (t.district_code, t.street_code, t.community_code) == ("150102", "150102001", "150102001001")
    assert t.deadline_at == NOW + timedelta(hours=24)
    assert t.created_at == t.updated_at == NOW
    assert t.report_count == 1
    assert t.events == [
        TicketEvent("受理", None, S.RECEIVED, "resident:u1", "", {"channel": "wechat"}, NOW),
        TicketEvent(
            "派单",
            S.RECEIVED,
            S.DISPATCHED,
            "system:router",
            "环境卫生归城管",
            {"lead": "city_mgmt", "co": ["street_150102001"]},
            NOW,
        ),
    ]
    assert t.new_events == t.events


def test_manual_dispatch_route_stays_received() -> None:
    t = Ticket.new("QC-261124-0001", draft(), route(DISPATCH_CENTER), NOW)
    assert t.state is S.RECEIVED
    assert t.lead_queue == DISPATCH_CENTER
    assert [e.kind for e in t.events] == ["受理"]
    assert t.events[0].reason == "环境卫生归城管"


def test_new_refuses_naive_time() -> None:
    with pytest.raises(ValueError):
        Ticket.new("QC-261124-0001", draft(), route(), NOW.replace(tzinfo=None))


@pytest.mark.parametrize("cls", list(DispatchClass))
def test_deadline_per_class(cls: DispatchClass) -> None:
    t = Ticket.new("QC-261124-0001", draft(), route(cls=cls), NOW)
    assert t.deadline_at == NOW + cls.limit == deadline_for(cls, NOW)


LEGAL = [
    (S.RECEIVED, "派单", {"lead": "water_co"}, S.DISPATCHED),
    (S.DISPATCHED, "签收", {}, S.ACCEPTED),
    (S.ACCEPTED, "办理", {}, S.IN_PROGRESS),
    (S.IN_PROGRESS, "办理", {}, S.IN_PROGRESS),
    (S.ACCEPTED, "退单", {}, S.RETURNED),
    (S.IN_PROGRESS, "退单", {}, S.RETURNED),
    (S.RETURNED, "改派", {"lead": "water_co"}, S.DISPATCHED),
    (S.ACCEPTED, "办结", {}, S.RESOLVED),
    (S.IN_PROGRESS, "办结", {}, S.RESOLVED),
    (S.RESOLVED, "回访", {"satisfied": True}, S.CLOSED),
    (S.RESOLVED, "重办", {}, S.DISPATCHED),
    (S.CLOSED, "重办", {}, S.DISPATCHED),
    (S.ACCEPTED, "延期", {"days": 3}, S.ACCEPTED),
    (S.IN_PROGRESS, "延期", {"days": 3}, S.IN_PROGRESS),
    (S.ACCEPTED, "批准延期", {"days": 3}, S.ACCEPTED),
    (S.IN_PROGRESS, "批准延期", {"days": 3}, S.IN_PROGRESS),
    (S.RETURNED, "驳回", {}, S.ACCEPTED),
    (S.RETURNED, "提级", {"returns": 3}, S.RETURNED),
    (S.RECEIVED, "改类", {"was": "sanitation", "category": "heating", "lead": "heating_authority", "co": [],
                         "dispatch_class": "utilities"}, S.DISPATCHED),
    (S.RETURNED, "改类", {"was": "sanitation", "category": "street_order", "lead": "urban_management",
                         "co": ["traffic_police"], "dispatch_class": "normal"}, S.DISPATCHED),
] + [(s, k, {}, s) for k in ("并单", "督办", "补充", "信息删除")
     for s in (S.RECEIVED, S.DISPATCHED, S.ACCEPTED, S.IN_PROGRESS, S.RETURNED)] \
  + [(s, "撤单", {"key": "m1"}, S.WITHDRAWN) for s in (S.RECEIVED, S.DISPATCHED, S.ACCEPTED, S.IN_PROGRESS, S.RETURNED)] \
  + [(s, "时限调整", {"from": NOW.isoformat(), "to": (NOW + timedelta(days=1)).isoformat()}, s)
     for s in (S.RECEIVED, S.DISPATCHED, S.ACCEPTED, S.IN_PROGRESS, S.RETURNED)] \
  + [(s, "询问居民", {"question_id": 1}, s) for s in (S.RECEIVED, S.DISPATCHED, S.ACCEPTED, S.IN_PROGRESS, S.RETURNED)] \
  + [(s, "居民补充", {"question_id": 1}, s) for s in S]  # an answer is kept whatever the state by then


@pytest.mark.parametrize(("start", "kind", "data", "end"), LEGAL, ids=[f"{s.value}-{k}" for s, k, _, _ in LEGAL])
def test_legal_transition(start: TicketState, kind: str, data: dict, end: TicketState) -> None:
    t = ticket_in(start)
    before = len(t.events)
    event = t.apply(kind, "worker:7", "说明", LATER, **data)
    assert t.state is end
    assert t.updated_at == LATER
    assert t.events[before:] == [event]
    changes_state = TRANSITIONS[kind][1] is not None
    assert event == TicketEvent(kind, start, end if changes_state else None, "worker:7", "说明", data, LATER)


def test_every_legal_move_is_covered() -> None:
    covered = {(s, k) for s, k, _, _ in LEGAL}
    assert covered == {(s, k) for k, (allowed, _) in TRANSITIONS.items() for s in allowed}


ILLEGAL = [(s, k) for k, (allowed, _) in TRANSITIONS.items() for s in S if s not in allowed]


@pytest.mark.parametrize(("start", "kind"), ILLEGAL, ids=[f"{s.value}-{k}" for s, k in ILLEGAL])
def test_illegal_transition_raises(start: TicketState, kind: str) -> None:
    t = ticket_in(start)
    before = (t.state, list(t.events), t.report_count)
    with pytest.raises(InvalidTransition, match=r"不能.* / cannot"):
        t.apply(kind, "worker:7", "说明", LATER, lead="water_co")
    assert (t.state, t.events, t.report_count) == before


@pytest.mark.parametrize("kind", ["受理", "删除"])
def test_unknown_or_creation_kind_cannot_be_applied(kind: str) -> None:
    with pytest.raises(InvalidTransition):
        ticket_in(S.DISPATCHED).apply(kind, "worker:7", "", LATER)


@pytest.mark.parametrize(("start", "kind"), [(S.ACCEPTED, "退单"), (S.IN_PROGRESS, "办结"), (S.RETURNED, "改类")])
def test_reason_required(start: TicketState, kind: str) -> None:
    t = ticket_in(start)
    with pytest.raises(InvalidTransition, match="requires a reason"):
        t.apply(kind, "worker:7", "  ", LATER)
    assert t.state is start


def test_redispatch_changes_lead_and_requires_it() -> None:
    t = ticket_in(S.RETURNED)
    with pytest.raises(InvalidTransition, match="requires a new lead"):
        t.apply("改派", "dispatcher:1", "", LATER)
    t.apply("改派", "dispatcher:1", "非本单位职责", LATER, lead="water_co", co=[])
    assert (t.state, t.lead_queue, t.co_queues) == (S.DISPATCHED, "water_co", ())


def test_manual_dispatch_needs_a_real_lead() -> None:
    t = ticket_in(S.RECEIVED)
    with pytest.raises(InvalidTransition):
        t.apply("派单", "dispatcher:1", "", LATER)
    with pytest.raises(InvalidTransition):
        t.apply("派单", "dispatcher:1", "", LATER, lead=DISPATCH_CENTER)
    t.apply("派单", "dispatcher:1", "人工派单", LATER, lead="water_co")
    assert (t.state, t.lead_queue) == (S.DISPATCHED, "water_co")


def test_reopen_restarts_the_deadline() -> None:
    t = ticket_in(S.CLOSED)
    reopened = NOW + timedelta(days=1)  # Wednesday 10:00 in Hohhot
    t.apply("重办", "resident:u1", "问题未解决", reopened)
    assert t.state is S.DISPATCHED
    assert t.lead_queue == "city_mgmt"
    assert t.deadline_at == reopened + timedelta(hours=24)


def test_reopen_on_friday_is_due_monday() -> None:
    t = ticket_in(S.CLOSED)
    friday = NOW + timedelta(days=3)  # Friday 2026-11-27 10:00 in Hohhot
    t.apply("重办", "resident:u1", "问题未解决", friday)
    assert t.deadline_at == friday + timedelta(days=3)  # Monday 10:00


def test_work_notes_keep_the_ticket_in_progress() -> None:
    t = ticket_in(S.IN_PROGRESS)
    t.apply("办理", "worker:7", "已联系物业", LATER)
    t.apply("办理", "worker:7", "已清理", LATER)
    assert t.state is S.IN_PROGRESS
    assert [e.kind for e in t.events][-3:] == ["办理", "办理", "办理"]


def test_rejected_return_goes_back_to_the_state_it_came_from() -> None:
    t = ticket_in(S.IN_PROGRESS)
    t.apply("退单", "worker:7", "不属于本街道", LATER)
    event = t.apply("驳回", "dispatcher:1", "属于本街道管辖", LATER)
    assert t.state is S.IN_PROGRESS
    assert (event.from_state, event.to_state) == (S.RETURNED, S.IN_PROGRESS)


def test_approved_extension_moves_the_deadline_by_working_days() -> None:
    t = ticket_in(S.IN_PROGRESS, legacy=True)  # due Wednesday 2026-11-25 10:00 Hohhot
    t.apply("延期", "worker:7", "需协调供热公司", LATER, days=2)
    t.apply("批准延期", "dispatcher:1", "同意", LATER, days=2)
    assert t.deadline_at == NOW + timedelta(days=3)  # Friday 10:00
    with pytest.raises(InvalidTransition):
        t.apply("批准延期", "dispatcher:1", "同意", LATER, days=0)


def test_third_return_needs_escalation() -> None:
    t = ticket_in(S.DISPATCHED)
    for i in range(3):
        assert not t.needs_escalation()
        if i:
            t.apply("改派", "dispatcher:1", "改派", LATER, lead="water_co")
        t.apply("签收", "worker:7", "", LATER)
        t.apply("退单", "worker:7", "非本单位职责", LATER)
    assert t.return_count == 3 and t.needs_escalation()
    t.apply("提级", "system:escalation", "退单3次", LATER, returns=3)
    assert t.escalated and not t.needs_escalation()
    t.apply("改派", "dispatcher:1", "改派", LATER, lead="city_mgmt")
    assert not t.escalated


def test_overdue_and_supervision_flag() -> None:
    t = ticket_in(S.ACCEPTED)
    assert not t.is_overdue(NOW) and t.is_overdue(t.deadline_at + timedelta(seconds=1))
    assert not t.supervised_for_current_deadline()
    t.apply("督办", "system:escalation", "超期", LATER, deadline=t.deadline_at.isoformat())
    assert t.supervised_for_current_deadline()


def test_extension_request_needs_a_reason() -> None:
    with pytest.raises(InvalidTransition, match="requires a reason"):
        ticket_in(S.IN_PROGRESS).apply("延期", "worker:7", " ", LATER, days=2)


def test_extension_keeps_state_and_deadline() -> None:
    t = ticket_in(S.IN_PROGRESS)
    deadline = t.deadline_at
    t.apply("延期", "worker:7", "需协调供热公司", LATER, days=2)
    assert (t.state, t.deadline_at) == (S.IN_PROGRESS, deadline)


def test_merge_counts_reports() -> None:
    t = ticket_in(S.DISPATCHED)
    t.apply("并单", "resident:u2", "同一社区7日内同类诉求", LATER)
    t.apply("并单", "resident:u3", "同一社区7日内同类诉求", LATER)
    assert t.report_count == 3
    assert t.state is S.DISPATCHED
    assert [e.kind for e in t.events] == ["受理", "派单", "并单", "并单"]


def test_apply_refuses_naive_time() -> None:
    with pytest.raises(ValueError):
        ticket_in(S.DISPATCHED).apply("签收", "worker:7", "", LATER.replace(tzinfo=None))


def test_format_ticket_number() -> None:
    assert format_ticket_number(date(2026, 11, 24), 3) == "QC-261124-0003"
    assert format_ticket_number(date(2027, 1, 5), 1234) == "QC-270105-1234"
    with pytest.raises(ValueError):
        format_ticket_number(date(2026, 11, 24), 0)


@pytest.mark.parametrize(
    "text",
    [
        "QC-261124-0003",
        "qc2611240003",
        "QC 261124 0003",
        "Qc-261124 0003",
        "ＱＣ－２６１１２４－０００３",
        "我的单号是QC-261124-0003，请帮查一下",
        " qc_261124_0003 ",
    ],
)
def test_parse_ticket_number(text: str) -> None:
    assert parse_ticket_number(text) == "QC-261124-0003"


@pytest.mark.parametrize(
    "text", ["", "261124-0003", "QC-261124-003", "QC-261324-0003", "QC-261124-0000", "ABCQC-261124-0003", "QC-26112-40003"]
)
def test_parse_ticket_number_rejects(text: str) -> None:
    assert parse_ticket_number(text) is None


def test_format_parse_round_trip() -> None:
    for seq in (1, 42, 9999):
        number = format_ticket_number(date(2026, 2, 28), seq)
        assert parse_ticket_number(number) == number


# --- 改类 -------------------------------------------------------------------------

def _recat(to: str = "street_order", lead: str = "urban_management", co: tuple[str, ...] = ("traffic_police",),
           cls: str = "normal", was: str = "sanitation") -> dict:
    return {"was": was, "category": to, "lead": lead, "co": list(co), "dispatch_class": cls}


@pytest.mark.parametrize("start", [S.RECEIVED, S.RETURNED])
def test_recategorise_changes_category_queues_and_starts_a_round(start: TicketState) -> None:
    t = ticket_in(start, legacy=True)
    deadline = t.deadline_at
    event = t.apply("改类", "user:disp", "实为占道经营", LATER,
                    **_recat(co=("traffic_police", "street:150102001")))
    assert (t.state, t.category, t.lead_queue, t.co_queues) == (
        S.DISPATCHED, "street_order", "urban_management", ("traffic_police", "street:150102001"))
    assert (t.dispatch_class, t.deadline_at) == (DispatchClass.NORMAL, deadline)  # same class: deadline kept
    assert event == TicketEvent("改类", start, S.DISPATCHED, "user:disp", "实为占道经营",
                                _recat(co=("traffic_police", "street:150102001")), LATER)
    assert not t.escalated


def test_recategorise_to_another_class_recomputes_the_deadline_from_filing() -> None:
    t = ticket_in(S.RETURNED, legacy=True)
    t.apply("改类", "user:disp", "其实是停暖", LATER, **_recat("heating", "heating_authority", (), "utilities"))
    assert t.dispatch_class is DispatchClass.UTILITIES
    assert t.deadline_at == NOW + timedelta(hours=2)  # 受理 + 2 h, not the moment of 改类


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_recat(to="sanitation"), "无需改类"),
        (_recat(to="parking"), "未知的类别"),
        (_recat(was="noise"), "类别已不是"),
        (_recat(cls="soon"), "时限类别"),
        (_recat(to="other", lead=DISPATCH_CENTER, co=()), "不能.*派单中心"),
        ({k: v for k, v in _recat().items() if k != "lead"}, "必须指定新的承办单位"),
    ],
)
def test_recategorise_refusals_change_nothing(data: dict, message: str) -> None:
    t = ticket_in(S.RETURNED)
    before = (t.state, t.category, t.lead_queue, t.co_queues, t.dispatch_class, t.deadline_at, list(t.events))
    with pytest.raises(InvalidTransition, match=message):
        t.apply("改类", "user:disp", "理由", LATER, **data)
    assert (t.state, t.category, t.lead_queue, t.co_queues, t.dispatch_class, t.deadline_at, t.events) == before


def test_recategorise_after_a_reopen_counts_from_the_reopen() -> None:
    t = ticket_in(S.CLOSED, legacy=True)
    reopened = NOW + timedelta(days=1)
    t.apply("重办", "resident:u1", "问题未解决", reopened)
    t.apply("签收", "worker:7", "", reopened)
    t.apply("退单", "worker:7", "不是垃圾问题", reopened)
    t.apply("改类", "user:disp", "实为停水", reopened + timedelta(hours=5),
            **_recat("water_supply", "water_authority", (), "utilities"))
    assert (t.category, t.dispatch_class, t.deadline_at) == (
        "water_supply", DispatchClass.UTILITIES, reopened + timedelta(hours=2))


# --- issue 13 item 7: 派单 records the street (属地) on the ticket ------------------------


def manual() -> Ticket:
    r = Route(DISPATCH_CENTER, (), "150102", None, None, DispatchClass.NORMAL, "街道未确定")
    return Ticket.new("QC-261124-0002", draft(), r, NOW)


def test_dispatch_with_a_street_sets_the_tickets_street_and_district() -> None:
    t = manual()
    assert (t.district_code, t.street_code) == ("150102", None)
    t.apply("派单", "user:disp", "人工派单", LATER, lead="city_mgmt", co=["street:150103001"],
            street="150103001", district="150103")
    assert (t.district_code, t.street_code, t.community_code) == ("150103", "150103001", None)


def test_a_dispatch_to_another_street_drops_the_community_of_the_old_one() -> None:
    t = Ticket.new("QC-261124-0003", draft(), route(), NOW)  # auto-dispatched to 150102001 / 150102001001
    t.apply("签收", "user:grid", "", LATER)
    t.apply("退单", "user:grid", "不是本街道", LATER)
    t.apply("改派", "user:disp", "退单改派", LATER, lead="city_mgmt", co=["street:150102002"],
            street="150102002", district="150102")
    assert (t.street_code, t.community_code) == ("150102002", None)


def test_a_dispatch_naming_the_same_street_keeps_the_community_and_one_without_a_street_keeps_all() -> None:
    t = Ticket.new("QC-261124-0004", draft(), route(), NOW)
    t.apply("签收", "user:grid", "", LATER)
    t.apply("退单", "user:grid", "x", LATER)
    t.apply("改派", "user:disp", "y", LATER, lead="city_mgmt", co=[], street="150102001", district="150102")
    assert (t.district_code, t.street_code, t.community_code) == ("150102", "150102001", "150102001001")
    t.apply("签收", "user:grid", "", LATER)
    t.apply("退单", "user:grid", "x", LATER)
    t.apply("改派", "user:disp", "z", LATER, lead="other_unit", co=[])
    assert (t.district_code, t.street_code, t.community_code) == ("150102", "150102001", "150102001001")


@pytest.mark.parametrize("text, digits", [
    ("QC-261206-0001 尾号5678", "5678"),
    ("查询QC-261206-0001 手机后四位5678", "5678"),
    ("QC-261206-0001，电话末4位为：０４７１", "0471"),
    ("尾号 5678 的工单 QC-261206-0001", "5678"),
    ("QC-261206-0001 5678", None),  # digits without saying what they are: not taken
    ("QC-261206-0001 尾号56789", None),
    ("尾号QC-261206-0001", None),  # the ticket number's own digits are never the phone's
])
def test_phone_tail_named_beside_a_ticket_number(text: str, digits: str | None) -> None:
    assert parse_phone_tail(text) == digits


def test_phone_tail_of_stored_numbers() -> None:
    assert [phone_tail(p) for p in ("13847115678", "0471-6925678", "123", None)] == ["5678", "5678", None, None]

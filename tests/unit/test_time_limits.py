"""签收 and 办结 time limits per step, read from data/routing/catalogue.yml (issue 14):
per dispatch class, a category override, the step the ticket is at deciding its deadline,
督办, the queue's 'soon' and the 三率's 按时签收; tickets filed under the old rule keep theirs."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import yaml

from bot.console import services as svc
from bot.console import stats
from bot.domain.clock import SHANGHAI
from bot.domain.limits import FINISH, SIGN, Limit, LimitsError, StepLimits, TimeLimits, time_limits, use_time_limits
from bot.domain.model import ComplaintDraft, DispatchClass, Route, Ticket, TicketState, deadline_for
from bot.reference.routing import CATALOGUE_PATH

S = TicketState
NOW = datetime(2026, 11, 24, 10, tzinfo=SHANGHAI)  # Tuesday


def draft(category: str = "sanitation") -> ComplaintDraft:
    return ComplaintDraft("u1", "wechat", category, "垃圾没人清运", "公主府社区", None, None, False, "k")


def route(cls: DispatchClass = DispatchClass.NORMAL) -> Route:
    return Route("sanitation_authority", (), "150102", "150102001", None, cls, "测试")


@pytest.fixture
def catalogue_limits() -> Iterator[None]:
    use_time_limits(None)  # reload from the catalogue file
    yield
    use_time_limits(None)


def test_the_catalogue_gives_sign_and_finish_limits_per_class(catalogue_limits: None) -> None:
    raw = yaml.safe_load(CATALOGUE_PATH.read_text(encoding="utf-8"))
    assert time_limits() == TimeLimits.parse(raw)
    got = {c: (time_limits().classes[c].sign, time_limits().classes[c].finish) for c in ("urgent", "utilities", "normal")}
    assert got == {
        "urgent": (Limit(timedelta(hours=1), False), Limit(timedelta(hours=24), False)),
        "utilities": (Limit(timedelta(hours=2), False), Limit(timedelta(hours=48), False)),
        "normal": (Limit(timedelta(days=1), True), Limit(timedelta(days=5), True)),
    }
    assert DispatchClass.NORMAL.limits_label() == "签收1个工作日，办结5个工作日"
    # The old single limit (tickets filed before) comes from the same file's `hours`.
    assert [c.limit for c in DispatchClass] == [timedelta(hours=1), timedelta(hours=2), timedelta(hours=24)]
    assert "_DISPATCH_LIMITS" not in vars(__import__("bot.domain.model", fromlist=["x"]))


def test_a_new_ticket_has_the_sign_deadline_then_the_finish_deadline(catalogue_limits: None) -> None:
    t = Ticket.new("QC-261124-0001", draft(), route(), NOW)
    assert (t.state, t.step, t.deadline_at) == (S.DISPATCHED, SIGN, NOW + timedelta(days=1))  # Wednesday 10:00
    t.apply("签收", "worker:1", "", NOW + timedelta(hours=2))
    # 办结: 5 working days from filing: Tue 24 Nov 10:00 → Tue 1 Dec 10:00.
    assert (t.step, t.deadline_at) == (FINISH, datetime(2026, 12, 1, 10, tzinfo=SHANGHAI))
    t.apply("退单", "worker:1", "非本单位", NOW + timedelta(hours=3))
    assert (t.step, t.deadline_at) == (SIGN, NOW + timedelta(days=1, hours=3))  # a new 签收 clock
    t.apply("改派", "disp:1", "改派", NOW + timedelta(hours=4), lead="urban_management")
    t.apply("签收", "worker:2", "", NOW + timedelta(hours=5))
    t.apply("批准延期", "disp:1", "同意", NOW + timedelta(hours=6), days=2)
    assert t.deadline_at == datetime(2026, 12, 3, 10, tzinfo=SHANGHAI)
    t.apply("办结", "worker:2", "已清运", NOW + timedelta(days=1))
    assert t.deadline_at == datetime(2026, 12, 3, 10, tzinfo=SHANGHAI)  # the 办结 limit it was judged by


def test_a_category_override_applies_to_its_own_class_only() -> None:
    raw = yaml.safe_load(CATALOGUE_PATH.read_text(encoding="utf-8"))
    raw["categories"]["sanitation"]["limits"] = {"办结": {"working_days": 3}}
    limits = TimeLimits.parse(raw)
    use_time_limits(limits)
    try:
        t = Ticket.new("QC-261124-0001", draft("sanitation"), route(), NOW)
        assert t.limits == StepLimits(Limit(timedelta(days=1), True), Limit(timedelta(days=3), True))
        t.apply("签收", "worker:1", "", NOW)
        assert t.deadline_at == datetime(2026, 11, 27, 10, tzinfo=SHANGHAI)  # Tue + 3 working days = Fri
        other = Ticket.new("QC-261124-0002", draft("dog"), route(), NOW)
        assert other.limits == limits.classes["normal"]
        urgent = Ticket.new("QC-261124-0003", draft("sanitation"), route(DispatchClass.URGENT), NOW)
        assert urgent.limits == limits.classes["urgent"]  # a keyword made it 紧急: the class's limits
    finally:
        use_time_limits(None)


@pytest.mark.parametrize(("spec", "message"), [
    ({"签收": {"days": 1}, "办结": {"hours": 2}}, "dispatch_classes.normal.签收"),
    ({"签收": {"hours": -1}, "办结": {"hours": 2}}, "not a positive number"),
    ({"签收": {"hours": 1}}, "dispatch_classes.normal.办结"),
])
def test_a_bad_limit_is_refused_naming_it(spec: dict, message: str) -> None:
    with pytest.raises(LimitsError, match=message):
        TimeLimits.parse({"dispatch_classes": {"normal": spec}})


def test_supervision_fires_on_the_step_the_ticket_is_at(catalogue_limits: None) -> None:
    t = Ticket.new("QC-261124-0001", draft(), route(), NOW)
    # Not signed for by Wednesday 10:00: overdue on the 签收 limit.
    assert not t.is_overdue(NOW + timedelta(days=1) - timedelta(minutes=1))
    assert t.is_overdue(NOW + timedelta(days=1, minutes=1))
    assert svc.urgency(t, NOW + timedelta(hours=19)) == "soon"  # last quarter of 24 h
    t.apply("签收", "worker:1", "", NOW + timedelta(days=1, minutes=2))
    # Signed for: the 办结 limit, five working days; a day later it is neither overdue nor 'soon'.
    assert not t.is_overdue(NOW + timedelta(days=2))
    assert svc.urgency(t, NOW + timedelta(days=2)) == "ok"
    assert svc.urgency(t, datetime(2026, 11, 30, 10, tzinfo=SHANGHAI)) == "soon"  # the last 30 h of 120 h
    assert t.is_overdue(datetime(2026, 12, 1, 10, 1, tzinfo=SHANGHAI))


def test_on_time_signing_in_the_rates_uses_the_sign_limit(catalogue_limits: None) -> None:
    late = Ticket.new("QC-261124-0001", draft(), route(), NOW)
    late.apply("签收", "worker:1", "", NOW + timedelta(days=1, hours=1))  # after the 1-working-day 签收 limit
    on_time = Ticket.new("QC-261124-0002", draft(), route(), NOW)
    on_time.apply("签收", "worker:1", "", NOW + timedelta(hours=23))
    units = stats.rates_by_unit([late, on_time], stats.DEFAULT_WEIGHTS, NOW + timedelta(days=3))
    dept = next(u for u in units["department"] if u.unit == "sanitation_authority")
    assert (dept.dispatched, dept.responded) == (2, 1)


def test_tickets_filed_under_the_old_rule_keep_their_stored_deadlines(catalogue_limits: None) -> None:
    t = Ticket.new("QC-261124-0001", draft(), route(), NOW)
    t.limits, t.deadline_at = None, deadline_for(DispatchClass.NORMAL, NOW)  # as stored before per-step limits
    old = t.deadline_at
    t.apply("签收", "worker:1", "", NOW + timedelta(hours=1))
    t.apply("办理", "worker:1", "处理中", NOW + timedelta(hours=2))
    assert t.deadline_at == old == NOW + timedelta(days=1)
    assert t.step_limit == Limit(timedelta(hours=24), True)
    assert t.compute_deadline() == old

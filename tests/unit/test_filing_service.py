from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.domain.model import DISPATCH_CENTER, ComplaintDraft, DispatchClass, Route, TicketState
from bot.services.tickets import (
    IdempotencyConflict,
    file_complaint,
    sync_queues,
    sync_routing_rules,
    ticket_status,
    tickets_for_sender,
)
from tests.unit.fakes import FakeUnitOfWork

# 2026-11-24 23:30 in Hohhot is still the 24th in UTC (15:30Z); 16:30Z is the 25th in Hohhot.
NOW = datetime(2026, 11, 24, 15, 30, tzinfo=timezone.utc)
COMMUNITY = "150102001001"


def draft(key: str = "k1", sender: str = "u1", category: str = "sanitation") -> ComplaintDraft:
    return ComplaintDraft(
        sender_id=sender,
        channel="wechat",
        category=category,
        description="垃圾桶满了没人清运",
        location_text="公主府社区",
        photo=None,
        phone="13800000000",
        confidential=False,
        idempotency_key=key,
    )


def route(community: str | None = COMMUNITY, lead: str = "city_mgmt") -> Route:
    return Route(
        lead=lead,
        co=(),
        district_code="150102",
        street_code="150102001",
        community_code=community,
        dispatch_class=DispatchClass.NORMAL,
        reason="按类别派单",
    )


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def test_new_ticket(uow: FakeUnitOfWork) -> None:
    result = file_complaint(uow, draft(), route(), NOW)
    assert (result.number, result.ticket_id, result.merged, result.replay) == ("QC-261124-0001", 1, False, False)
    assert (result.state, result.lead_queue) == (TicketState.DISPATCHED, "city_mgmt")
    assert result.deadline_at == NOW + timedelta(hours=24)
    assert uow.commits == 1
    ticket = uow.tickets.get(1)
    assert ticket is not None and [e.kind for e in ticket.events] == ["受理", "派单"]
    assert [(r.ticket_id, r.idempotency_key, r.phone) for r in uow.tickets.data.reports] == [(1, "k1", "13800000000")]


def test_numbers_follow_the_shanghai_day(uow: FakeUnitOfWork) -> None:
    first = file_complaint(uow, draft("k1"), route(None), NOW)
    second = file_complaint(uow, draft("k2"), route(None), NOW + timedelta(minutes=10))
    next_day = file_complaint(uow, draft("k3"), route(None), NOW + timedelta(hours=1))
    assert [first.number, second.number, next_day.number] == ["QC-261124-0001", "QC-261124-0002", "QC-261125-0001"]


def test_replay_writes_nothing(uow: FakeUnitOfWork) -> None:
    original = file_complaint(uow, draft(), route(), NOW)
    before = (len(uow.tickets.data.reports), uow.tickets.get(1))
    again = file_complaint(uow, draft(), route(), NOW + timedelta(minutes=1))
    assert again.replay and not again.merged
    assert (again.number, again.ticket_id, again.state) == (original.number, original.ticket_id, original.state)
    assert (len(uow.tickets.data.reports), uow.tickets.get(1)) == before


def test_replay_of_a_merged_report_says_merged(uow: FakeUnitOfWork) -> None:
    file_complaint(uow, draft("k1"), route(), NOW)
    file_complaint(uow, draft("k2", sender="u2"), route(), NOW)
    again = file_complaint(uow, draft("k2", sender="u2"), route(), NOW)
    assert (again.ticket_id, again.merged, again.replay) == (1, True, True)


def test_idempotency_key_of_another_sender_is_refused(uow: FakeUnitOfWork) -> None:
    file_complaint(uow, draft("k1", sender="u1"), route(), NOW)
    with pytest.raises(IdempotencyConflict):
        file_complaint(uow, draft("k1", sender="u2"), route(), NOW)


def test_merge_within_seven_days(uow: FakeUnitOfWork) -> None:
    first = file_complaint(uow, draft("k1"), route(), NOW)
    later = NOW + timedelta(days=6, hours=23)
    merged = file_complaint(uow, draft("k2", sender="u2"), route(), later)
    assert (merged.number, merged.ticket_id, merged.merged, merged.replay) == (first.number, 1, True, False)
    ticket = uow.tickets.get(1)
    assert ticket is not None
    assert ticket.report_count == 2
    assert ticket.updated_at == later
    last = ticket.events[-1]
    assert (last.kind, last.actor, last.reason, last.to_state) == ("并单", "resident:u2", "同一社区7日内同类诉求", None)
    assert [r.ticket_id for r in uow.tickets.data.reports] == [1, 1]
    assert len(uow.tickets.data.tickets) == 1


@pytest.mark.parametrize(
    ("second_draft", "second_route", "delay"),
    [
        (draft("k2"), route(), timedelta(days=7, seconds=1)),
        (draft("k2"), route("150102001002"), timedelta(hours=1)),
        (draft("k2", category="noise"), route(), timedelta(hours=1)),
        (draft("k2"), route(None), timedelta(hours=1)),
    ],
    ids=["after-7-days", "other-community", "other-category", "no-community"],
)
def test_no_merge(uow: FakeUnitOfWork, second_draft: ComplaintDraft, second_route: Route, delay: timedelta) -> None:
    file_complaint(uow, draft("k1"), route(), NOW)
    result = file_complaint(uow, second_draft, second_route, NOW + delay)
    assert not result.merged and result.ticket_id == 2


def test_first_ticket_without_community_is_never_merged_into(uow: FakeUnitOfWork) -> None:
    file_complaint(uow, draft("k1"), route(None), NOW)
    assert file_complaint(uow, draft("k2"), route(), NOW).ticket_id == 2


@pytest.mark.parametrize("kinds", [["签收", "办结"], ["签收", "办结", "回访"]], ids=["resolved", "closed"])
def test_no_merge_into_finished_ticket(uow: FakeUnitOfWork, kinds: list[str]) -> None:
    file_complaint(uow, draft("k1"), route(), NOW)
    with uow:
        ticket = uow.tickets.get(1)
        assert ticket is not None
        for kind in kinds:
            ticket.apply(kind, "worker:1", "已清运", NOW)
        uow.tickets.save_events(ticket)
        uow.commit()
    result = file_complaint(uow, draft("k2"), route(), NOW + timedelta(hours=1))
    assert not result.merged and result.ticket_id == 2


def test_merge_into_most_recent_open_ticket(uow: FakeUnitOfWork) -> None:
    file_complaint(uow, draft("k1"), route(None), NOW)  # no community: not a candidate
    file_complaint(uow, draft("k2"), route(), NOW + timedelta(hours=1))
    result = file_complaint(uow, draft("k3"), route(), NOW + timedelta(hours=2))
    assert (result.ticket_id, result.merged) == (2, True)


def test_manual_dispatch_route_stays_received_in_dispatch_center(uow: FakeUnitOfWork) -> None:
    result = file_complaint(uow, draft(), route(lead=DISPATCH_CENTER), NOW)
    assert (result.state, result.lead_queue) == (TicketState.RECEIVED, DISPATCH_CENTER)
    ticket = uow.tickets.get(result.ticket_id)
    assert ticket is not None and [e.kind for e in ticket.events] == ["受理"]


def test_manual_dispatch_ticket_still_collects_merges(uow: FakeUnitOfWork) -> None:
    file_complaint(uow, draft("k1"), route(lead=DISPATCH_CENTER), NOW)
    assert file_complaint(uow, draft("k2"), route(), NOW).merged


def test_failed_filing_rolls_back(uow: FakeUnitOfWork) -> None:
    bad = Route("x", (), None, None, None, DispatchClass.NORMAL, "")
    with pytest.raises(ValueError):
        file_complaint(uow, draft(), bad, NOW.replace(tzinfo=None))
    assert uow.tickets.data.counters == {} and uow.tickets.data.tickets == {}


def test_ticket_status_only_for_reporters(uow: FakeUnitOfWork) -> None:
    sync_queues(uow, [{"code": "city_mgmt", "name": "城市管理局", "kind": "department"}])
    filed = file_complaint(uow, draft("k1", sender="u1"), route(), NOW)
    file_complaint(uow, draft("k2", sender="u2"), route(), NOW + timedelta(minutes=5))

    status = ticket_status(uow, "qc2611240001", "u1")
    assert status is not None
    assert (status.number, status.category, status.category_name) == (filed.number, "sanitation", "环境卫生/垃圾")
    assert (status.state, status.lead_queue, status.lead_queue_name) == (TicketState.DISPATCHED, "city_mgmt", "城市管理局")
    assert (status.last_event_kind, status.last_event_at) == ("并单", NOW + timedelta(minutes=5))
    assert ticket_status(uow, filed.number, "u2") is not None  # merged reporter sees it too
    assert ticket_status(uow, filed.number, "stranger") is None
    assert ticket_status(uow, "QC-261124-0999", "u1") is None
    assert ticket_status(uow, "not a number", "u1") is None


def test_tickets_for_sender_newest_first(uow: FakeUnitOfWork) -> None:
    for i in range(7):
        file_complaint(uow, draft(f"k{i}"), route(None), NOW + timedelta(minutes=i))
    file_complaint(uow, draft("other", sender="u2"), route(None), NOW)
    numbers = [s.number for s in tickets_for_sender(uow, "u1")]
    assert numbers == [f"QC-261124-000{i}" for i in (7, 6, 5, 4, 3)]
    assert [s.number for s in tickets_for_sender(uow, "u2", limit=10)] == ["QC-261124-0008"]
    assert tickets_for_sender(uow, "nobody") == []


def test_sync_config(uow: FakeUnitOfWork) -> None:
    assert sync_queues(uow, [{"code": "q", "name": "旧名", "kind": "street"}]) == 1
    assert sync_queues(uow, [{"code": "q", "name": "新名", "kind": "street"}]) == 1
    assert uow.tickets.data.queues == {"q": {"code": "q", "name": "新名", "kind": "street"}}
    rules = [{"category": "heating", "lead": "heat_co", "co": ["q"], "dispatch_class": "utilities"}]
    assert sync_routing_rules(uow, rules, now=NOW) == 1
    assert uow.tickets.data.rules["heating"]["dispatch_class"] is DispatchClass.UTILITIES
    with pytest.raises(ValueError):
        sync_queues(uow, [{"code": "z", "name": "z", "kind": "team"}])
    with pytest.raises(ValueError):
        sync_routing_rules(uow, [{"category": "weather", "lead": "x", "dispatch_class": "normal"}])
    with pytest.raises(ValueError):
        sync_routing_rules(uow, [{"category": "dog", "lead": "x", "dispatch_class": "soon"}])
    assert "z" not in uow.tickets.data.queues and "dog" not in uow.tickets.data.rules

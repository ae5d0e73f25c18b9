"""The hand-off to a person, on SQLite and PostgreSQL: its transitions and events, the
compare-and-set take, messages kept in order and delivered once, and 留言 when nobody comes."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.domain.handoff import (
    HANDED_BACK_NOTICE,
    LEFT_NOTICE,
    HandoffState,
    InvalidHandoffStep,
    ServiceHours,
    next_state,
    offer_notice,
    waiting_notice,
)
from bot.services import handoff as svc
from bot.storage.handoff import HandoffRepository, handoff_events, handoff_messages
from bot.storage.uow import SqlAlchemyUnitOfWork

NOON = datetime(2026, 12, 1, 4, 0, tzinfo=timezone.utc)  # 12:00 in Hohhot
NIGHT = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)  # 23:00
HOURS = ServiceHours(time(8, 0), time(20, 0), timedelta(minutes=10))


def uow(engine: Engine) -> SqlAlchemyUnitOfWork:
    return SqlAlchemyUnitOfWork(engine)


def events(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(handoff_events.c.kind, handoff_events.c.actor,
                                                      handoff_events.c.at).order_by(handoff_events.c.id))]


def test_the_transition_table() -> None:
    assert next_state("接入", HandoffState.WAITING) is HandoffState.TAKEN
    assert next_state("交还", HandoffState.TAKEN) is HandoffState.RETURNED
    assert next_state("提供留言", HandoffState.WAITING) is HandoffState.OFFERED
    assert next_state("留言", HandoffState.OFFERED) is HandoffState.LEFT
    for kind, state in (("接入", HandoffState.TAKEN), ("交还", HandoffState.WAITING), ("结束", HandoffState.RETURNED),
                        ("留言", HandoffState.WAITING)):
        with pytest.raises(InvalidHandoffStep):
            next_state(kind, state)


def test_service_hours_from_settings() -> None:
    assert ServiceHours.parse(None, "") == ServiceHours()
    assert ServiceHours.parse("09:00-17:30", "5") == ServiceHours(time(9), time(17, 30), timedelta(minutes=5))
    for bad in (("17:00-09:00", None), ("nine", None), (None, "0")):
        with pytest.raises(ValueError):
            ServiceHours.parse(*bad)


def test_a_whole_hand_off_with_its_events_and_messages(engine: Engine) -> None:
    h, notice = svc.request(uow(engine), "rest:r1", "rest", "asked", NOON, HOURS)
    assert (h.state, notice) == (HandoffState.WAITING, waiting_notice(1, HOURS))
    again, _ = svc.request(uow(engine), "rest:r1", "rest", "asked", NOON + timedelta(seconds=5), HOURS)
    assert again.id == h.id  # one open hand-off per conversation
    _, second = svc.request(uow(engine), "rest:r2", "rest", "not_understood", NOON + timedelta(seconds=1), HOURS)
    assert "您前面还有 1 位" in second

    t1 = NOON + timedelta(minutes=1)
    assert svc.resident_message(uow(engine), "rest:r1", "我家暖气不热", t1, HOURS) == svc.Gate(True, [])
    taken = svc.take(uow(engine), h.id, "user:agent1", "小王", t1 + timedelta(seconds=1))
    assert (taken.state, taken.agent) == (HandoffState.TAKEN, "user:agent1")
    with pytest.raises(svc.AlreadyTaken) as lost:
        svc.take(uow(engine), h.id, "user:agent2", "小李", t1 + timedelta(seconds=2))
    assert lost.value.holder == "user:agent1"
    with pytest.raises(svc.AlreadyTaken):
        svc.say(uow(engine), h.id, "user:agent2", "不是我的", t1)
    svc.say(uow(engine), h.id, "user:agent1", "请问您住哪个小区？", t1 + timedelta(seconds=3))
    gate = svc.resident_message(uow(engine), "rest:r1", "锦绣小区", t1 + timedelta(seconds=4), HOURS)
    assert gate == svc.Gate(True, ["工作人员小王已接入，请问有什么可以帮您？", "请问您住哪个小区？"])
    assert svc.pickup(uow(engine), "rest:r1", t1 + timedelta(seconds=5), HOURS) == []  # delivered once
    svc.hand_back(uow(engine), h.id, "user:agent1", t1 + timedelta(seconds=6))
    assert svc.resident_message(uow(engine), "rest:r1", "谢谢", t1 + timedelta(seconds=7), HOURS) == \
        svc.Gate(False, [HANDED_BACK_NOTICE])
    with engine.connect() as conn:
        rows = conn.execute(select(handoff_messages.c.author, handoff_messages.c.outgoing, handoff_messages.c.text)
                            .where(handoff_messages.c.handoff_id == h.id).order_by(handoff_messages.c.id)).all()
    assert [tuple(r) for r in rows] == [
        ("resident", False, "我家暖气不热"), ("system", True, "工作人员小王已接入，请问有什么可以帮您？"),
        ("user:agent1", True, "请问您住哪个小区？"), ("resident", False, "锦绣小区"), ("system", True, HANDED_BACK_NOTICE)]
    mine = [e for e in events(engine) if e[0] != "转人工" or e[2] == NOON]
    assert mine == [("转人工", "system", NOON), ("接入", "user:agent1", t1 + timedelta(seconds=1)),
                    ("交还", "user:agent1", t1 + timedelta(seconds=6))]


def test_twelve_agents_one_winner(engine: Engine) -> None:
    h, _ = svc.request(uow(engine), "rest:r1", "rest", "asked", NOON, HOURS)

    def attempt(n: int) -> str:
        try:
            svc.take(uow(engine), h.id, f"user:agent{n}", f"坐席{n}", NOON + timedelta(minutes=1))
            return "won"
        except svc.AlreadyTaken as exc:
            return f"lost to {exc.holder}"

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(attempt, range(12)))
    winners = [n for n, r in enumerate(results) if r == "won"]
    assert len(winners) == 1
    assert sorted(results) == sorted(["won"] + [f"lost to user:agent{winners[0]}"] * 11)
    assert [e[:2] for e in events(engine)] == [("转人工", "system"), ("接入", f"user:agent{winners[0]}")]


def test_nobody_comes_the_resident_leaves_a_message(engine: Engine) -> None:
    h, _ = svc.request(uow(engine), "rest:r1", "rest", "asked", NOON, HOURS)
    assert svc.expire_waiting(uow(engine), NOON + timedelta(minutes=9), HOURS) == 0
    late = NOON + timedelta(minutes=10)
    assert svc.pickup(uow(engine), "rest:r1", late, HOURS) == [offer_notice(HOURS, outside_hours=False)]
    gate = svc.resident_message(uow(engine), "rest:r1", "小区门口的路灯坏了一个月了", late, HOURS)
    assert gate == svc.Gate(True, [LEFT_NOTICE])
    with uow(engine) as u:
        left = HandoffRepository(u.connection()).get(h.id)
    assert left is not None and left.state is HandoffState.LEFT
    assert [e.kind for e in left.events] == ["转人工", "提供留言", "留言"]
    # the assistant answers again; the 留言 stays in the agents' list until closed
    assert svc.resident_message(uow(engine), "rest:r1", "你好", late, HOURS) == svc.Gate(False, [])
    with uow(engine) as u:
        assert [x.id for x in HandoffRepository(u.connection()).queue(None)] == [h.id]


def test_outside_hours_the_message_is_offered_at_once_and_mongolian_waits_for_mongolian(engine: Engine) -> None:
    h, notice = svc.request(uow(engine), "socketio:s1", "socketio", "asked", NIGHT, HOURS)
    assert (h.state, notice) == (HandoffState.OFFERED, offer_notice(HOURS, outside_hours=True))
    m, _ = svc.request(uow(engine), "rest:m1", "rest", "mongolian", NOON, HOURS)
    assert m.language == "mn"
    with uow(engine) as u:
        repo = HandoffRepository(u.connection())
        assert [x.id for x in repo.queue(frozenset({"zh"}))] == []
        assert [x.id for x in repo.queue(frozenset({"zh", "mn"}))] == [m.id]

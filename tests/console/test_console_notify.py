"""Notifications: ticket events → one outbox (exactly once), delivery to the Rasa server
with retries and backoff (never lost while a channel is down), worker notices and the
badge, escalation by rule (督办, 提级) and the resident's 回访 answer. SQLite + PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console.config import ConsoleConfig
from bot.console.http import CONSOLE_CONFIG, CONSOLE_ENGINE
from bot.console.notifier import ConsoleChannel, Notifier, RasaChannel, backoff, drain_once
from bot.console.tables import outbox
from bot.console.uow import ConsoleUnitOfWork
from bot.storage.tables import ticket_events, tickets
from bot.web.app import init_app
from bot.web.keys import Settings
from tests.console.helpers import STREET, another_client, file, login, make_users, now, post

pytestmark = pytest.mark.asyncio


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(outbox).order_by(outbox.c.id))]


def principal(engine: Engine, username: str) -> svc.Principal:
    with ConsoleUnitOfWork(engine) as uow:
        user = uow.console.get_user_by_username(username)
    assert user is not None
    return svc.Principal.of(user)


class FakeRasa:
    """Answers trigger_intent like the Rasa server: fails `failures` times first."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/conversations/{sender}/trigger_intent", self.trigger)
        return app

    async def trigger(self, request: web.Request) -> web.Response:
        self.calls.append(
            {"sender": request.match_info["sender"], "query": dict(request.query), "body": await request.json()}
        )
        if self.failures > 0:
            self.failures -= 1
            return web.json_response({"error": "model not ready"}, status=500)
        return web.json_response({"tracker": {}, "messages": []})


async def test_events_become_outbox_messages_exactly_once(engine: Engine) -> None:
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    make_users(engine, ("grid",))
    filed = file(engine, "k1", sender="resident-1")
    # A second report on the same ticket through Open311 (cannot be pushed to).
    with ConsoleUnitOfWork(engine) as uow:
        from bot.domain.model import Report

        uow.tickets.add_report(filed.ticket_id, Report("open311:city:u9", "open311", "同上", "x", None, None, False, "o1", now()))
        uow.commit()
    assert svc.process_feed(ConsoleUnitOfWork(engine), now()) == 3  # 派单 → lead + 2 co queues
    assert {(r["kind"], r["recipient"], r["event"]) for r in rows(engine)} == {
        ("worker", "police_dog", "new"),
        ("worker", "urban_management", "new"),
        ("worker", f"street:{STREET}", "new"),
    }
    svc.perform(ConsoleUnitOfWork(engine), principal(engine, "grid"), filed.ticket_id, "accept", {}, now())
    assert svc.process_feed(ConsoleUnitOfWork(engine), now()) == 1
    assert svc.process_feed(ConsoleUnitOfWork(engine), now()) == 0  # nothing twice
    resident = [r for r in rows(engine) if r["kind"] == "resident"]
    assert [(r["channel"], r["recipient"], r["event"], r["status"]) for r in resident] == [
        ("rasa", "resident-1", "accepted", "pending")
    ]
    assert resident[0]["payload"] == {"ticket_number": filed.number, "ticket_event": "accepted", "result": ""}


async def test_history_is_not_announced_when_the_feed_starts(engine: Engine) -> None:
    file(engine, "k1")
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    assert svc.process_feed(ConsoleUnitOfWork(engine), now()) == 0


async def test_delivery_retries_with_backoff_until_rasa_answers(engine: Engine) -> None:
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    make_users(engine, ("grid",))
    filed = file(engine, "k1", sender="resident/1")
    svc.perform(ConsoleUnitOfWork(engine), principal(engine, "grid"), filed.ticket_id, "accept", {}, now())
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    rasa = FakeRasa(failures=2)
    async with TestServer(rasa.app()) as server:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            channels = {"console": ConsoleChannel(), "rasa": RasaChannel(str(server.make_url("")), "s3cret", http)}
            uowf = lambda: ConsoleUnitOfWork(engine)  # noqa: E731
            t0 = now()
            first = await drain_once(uowf, channels, now=t0)
            assert (first.sent, first.failed) == (3, 1)  # worker notices are shown in the console at once
            [msg] = [r for r in rows(engine) if r["kind"] == "resident"]
            assert (msg["status"], msg["attempts"]) == ("failed", 1)
            assert "HTTP 500" in msg["last_error"] and msg["next_attempt_at"] == t0 + timedelta(seconds=5)
            # Not due yet: nothing is sent again.
            assert (await drain_once(uowf, channels, now=t0 + timedelta(seconds=1))).failed == 0
            second = await drain_once(uowf, channels, now=t0 + timedelta(seconds=6))
            assert second.failed == 1
            [msg] = [r for r in rows(engine) if r["kind"] == "resident"]
            assert msg["attempts"] == 2 and msg["next_attempt_at"] == t0 + timedelta(seconds=6 + 10)
            third = await drain_once(uowf, channels, now=t0 + timedelta(seconds=20))
            assert third.sent == 1
    [msg] = [r for r in rows(engine) if r["kind"] == "resident"]
    assert (msg["status"], msg["attempts"], msg["last_error"]) == ("sent", 3, None)
    call = rasa.calls[-1]
    assert call["sender"] == "resident/1"  # quoted in the URL, intact on arrival
    assert call["query"] == {"output_channel": "latest", "token": "s3cret"}
    assert call["body"] == {
        "name": "EXTERNAL_ticket_update",
        "entities": {"ticket_number": filed.number, "ticket_event": "accepted"},
    }


async def test_a_channel_that_is_down_keeps_the_message_visible(client: TestClient, engine: Engine) -> None:
    import aiohttp

    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    make_users(engine, ("grid", "root"))
    filed = file(engine, "k1")
    svc.perform(ConsoleUnitOfWork(engine), principal(engine, "grid"), filed.ticket_id, "accept", {}, now())
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    async with aiohttp.ClientSession() as http:
        channels = {"console": ConsoleChannel(), "rasa": RasaChannel("http://127.0.0.1:9", None, http, timeout=2)}
        for i in range(3):
            await drain_once(lambda: ConsoleUnitOfWork(engine), channels, now=now() + timedelta(hours=i))
    [msg] = [r for r in rows(engine) if r["kind"] == "resident"]
    assert msg["status"] == "failed" and msg["attempts"] == 3 and "unreachable" in msg["last_error"]
    csrf = await login(client, "root")
    page = await (await client.get("/console/outbox?status=failed")).text()
    assert "unreachable" in page and filed.number in page and "立即重试" in page
    resp = await post(client, f"/console/outbox/{msg['id']}/retry", csrf)
    assert resp.status == 303
    assert [r for r in rows(engine) if r["kind"] == "resident"][0]["next_attempt_at"] <= now()


async def test_backoff_is_capped() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert backoff(40) == timedelta(minutes=30)


async def test_claimed_messages_are_leased(engine: Engine) -> None:
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    file(engine, "k1")
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    t0 = now()
    with ConsoleUnitOfWork(engine) as uow:
        first = uow.console.claim_due(t0, t0 + timedelta(minutes=2), 10)
        uow.commit()
    with ConsoleUnitOfWork(engine) as uow:
        second = uow.console.claim_due(t0, t0 + timedelta(minutes=2), 10)
    assert len(first) == 3 and second == []
    with ConsoleUnitOfWork(engine) as uow:  # a crashed sender's lease runs out: sent again
        assert len(uow.console.claim_due(t0 + timedelta(minutes=3), t0 + timedelta(minutes=5), 10)) == 3


async def test_overdue_tickets_are_flagged_once_and_announced(client: TestClient, engine: Engine) -> None:
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    make_users(engine, ("grid", "disp"))
    late = file(engine, "k1", at=now() - timedelta(days=10))
    on_time = file(engine, "k2", sender="r2")
    assert svc.sweep_overdue(ConsoleUnitOfWork(engine), now()) == [late.number]
    assert svc.sweep_overdue(ConsoleUnitOfWork(engine), now()) == []
    with engine.connect() as conn:
        kinds = conn.execute(select(ticket_events.c.kind).where(ticket_events.c.ticket_id == late.ticket_id)).scalars().all()
    assert kinds.count("督办") == 1
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    overdue = {r["recipient"] for r in rows(engine) if r["event"] == "overdue"}
    assert overdue == {"police_dog", "urban_management", f"street:{STREET}", "dispatch_center"}

    await login(client, "grid")
    queue = await (await client.get("/console/queue")).text()
    assert 'class="badge"' in queue and "督办" in queue
    notices = await (await client.get("/console/notices")).text()
    assert f"超期督办 {late.number}" in notices and f"新工单 {on_time.number}" in notices
    assert 'class="badge"' not in await (await client.get("/console/queue")).text()  # read now

    async with another_client(client) as disp_client:
        await login(disp_client, "disp")
        page = await (await disp_client.get("/console/queue?view=overdue")).text()
        assert late.number in page and on_time.number not in page


async def test_returned_three_times_goes_to_the_dispatcher_with_escalation(engine: Engine) -> None:
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    make_users(engine, ("grid", "disp"))
    filed = file(engine, "k1")
    grid, disp = principal(engine, "grid"), principal(engine, "disp")
    for i in range(3):
        if i:
            svc.perform(ConsoleUnitOfWork(engine), disp, filed.ticket_id, "redispatch", {"lead": "police_dog", "street": STREET}, now())
        svc.perform(ConsoleUnitOfWork(engine), grid, filed.ticket_id, "accept", {}, now())
        svc.perform(ConsoleUnitOfWork(engine), grid, filed.ticket_id, "return", {"reason": f"退单{i + 1}"}, now())
    with engine.connect() as conn:
        kinds = conn.execute(select(ticket_events.c.kind).order_by(ticket_events.c.id)).scalars().all()
    assert kinds[-2:] == ["退单", "提级"] and kinds.count("提级") == 1
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    assert ("dispatch_center", "escalated") in {(r["recipient"], r["event"]) for r in rows(engine)}
    view = svc.ticket_view(ConsoleUnitOfWork(engine), disp, filed.ticket_id, now())
    assert "提级" in view.flags and view.actions == ["redispatch", "recategorise"]  # not 驳回


async def test_resident_follow_up_closes_or_reopens(engine: Engine) -> None:
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    make_users(engine, ("grid",))
    grid = principal(engine, "grid")
    a = file(engine, "k1", sender="r1")
    b = file(engine, "k2", sender="r2")
    for t in (a, b):
        svc.perform(ConsoleUnitOfWork(engine), grid, t.ticket_id, "accept", {}, now())
        svc.perform(ConsoleUnitOfWork(engine), grid, t.ticket_id, "resolve", {"result": "已处理"}, now())
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    resolved = [r for r in rows(engine) if r["event"] == "resolved"]
    assert {r["recipient"] for r in resolved} == {"r1", "r2"}
    assert resolved[0]["payload"]["result"] == "已处理"

    assert svc.record_follow_up(ConsoleUnitOfWork(engine), a.number, "someone-else", True, "满意", now()).status == "not_found"
    done = svc.record_follow_up(ConsoleUnitOfWork(engine), a.number, "r1", True, "基本满意", now())
    assert (done.status, done.state.value) == ("closed", "回访")
    again = svc.record_follow_up(ConsoleUnitOfWork(engine), a.number, "r1", True, "满意", now())
    assert again.status == "not_resolved"
    reopened = svc.record_follow_up(ConsoleUnitOfWork(engine), b.number.lower(), "r2", False, None, now())
    assert (reopened.status, reopened.state.value) == ("reopened", "派单")
    with engine.connect() as conn:
        last = conn.execute(
            select(ticket_events.c.kind, ticket_events.c.actor, ticket_events.c.data)
            .where(ticket_events.c.ticket_id == a.ticket_id)
            .order_by(ticket_events.c.seq.desc())
        ).first()
        assert tuple(last) == ("回访", "resident:r1", {"solved": True, "satisfaction": "基本满意"})
        assert conn.execute(select(tickets.c.state).where(tickets.c.id == b.ticket_id)).scalar_one() == "派单"
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    # Re-opened by the resident: the workers hear of it, the resident was answered in the chat.
    events = [(r["kind"], r["recipient"], r["event"]) for r in rows(engine) if r["ticket_id"] == b.ticket_id]
    assert ("worker", f"street:{STREET}", "reopened") in events
    assert ("resident", "r2", "reopened") not in events


async def test_the_notifier_runs_with_the_app(engine: Engine, upload_dir) -> None:  # noqa: ANN001
    rasa = FakeRasa()
    async with TestServer(rasa.app()) as rasa_server:
        app = init_app(Settings(database_url="sqlite://", rasa_url=str(rasa_server.make_url("")).rstrip("/")))
        app[CONSOLE_ENGINE] = engine
        app[CONSOLE_CONFIG] = ConsoleConfig(notifier=True, notifier_interval=0.1, upload_dir=upload_dir, rasa_token="t")
        async with TestClient(TestServer(app)) as c:
            make_users(engine, ("grid",))
            filed = file(engine, "k1", sender="resident-9")
            csrf = await login(c, "grid")
            assert (await post(c, f"/console/tickets/{filed.ticket_id}/accept", csrf)).status == 303
            for _ in range(100):
                if rasa.calls:
                    break
                await asyncio.sleep(0.05)
    assert [(x["sender"], x["body"]["entities"]["ticket_event"]) for x in rasa.calls] == [("resident-9", "accepted")]
    assert {r["status"] for r in rows(engine)} == {"sent"}


class HeldChannel:
    """A channel whose delivery is in flight until the test lets it through."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.delivered: list[str] = []

    async def deliver(self, message: Any) -> None:
        self.started.set()
        await self.release.wait()
        self.delivered.append(message.recipient)


def two_resident_notices(engine: Engine) -> None:
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    make_users(engine, ("grid",))
    for key, sender in (("k1", "r1"), ("k2", "r2")):
        filed = file(engine, key, sender=sender)
        svc.perform(ConsoleUnitOfWork(engine), principal(engine, "grid"), filed.ticket_id, "accept", {}, now())
    svc.process_feed(ConsoleUnitOfWork(engine), now())


async def test_stopping_the_notifier_records_the_delivery_in_flight(engine: Engine) -> None:
    two_resident_notices(engine)
    held = HeldChannel()
    notifier = Notifier(lambda: ConsoleUnitOfWork(engine), {"console": ConsoleChannel(), "rasa": held}, interval=60)
    task = asyncio.create_task(notifier.run())
    await asyncio.wait_for(held.started.wait(), 30)
    stopping = asyncio.create_task(notifier.stop(task))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not stopping.done()  # waits for the resident's notice being delivered
    held.release.set()
    await stopping
    assert task.done() and not task.cancelled()
    assert held.delivered == ["r1"]  # the rest of the batch is not started once stopping
    resident = [(r["recipient"], r["status"], r["attempts"]) for r in rows(engine) if r["kind"] == "resident"]
    assert resident == [("r1", "sent", 1), ("r2", "pending", 0)]
    [r2] = [r for r in rows(engine) if r["recipient"] == "r2"]
    assert r2["next_attempt_at"] <= now()  # handed back, not leased: the next start sends it at once


async def test_a_notifier_stuck_past_the_grace_is_cancelled_and_nothing_is_marked_sent(engine: Engine) -> None:
    two_resident_notices(engine)
    held = HeldChannel()
    notifier = Notifier(lambda: ConsoleUnitOfWork(engine), {"console": ConsoleChannel(), "rasa": held}, interval=60)
    task = asyncio.create_task(notifier.run())
    await asyncio.wait_for(held.started.wait(), 30)
    await notifier.stop(task, grace=0.1)
    assert task.cancelled() and held.delivered == []
    # Not recorded as sent (the channel never accepted it); leased, so sent again after the lease.
    assert [(r["recipient"], r["status"]) for r in rows(engine) if r["kind"] == "resident"] == [
        ("r1", "pending"), ("r2", "pending")
    ]

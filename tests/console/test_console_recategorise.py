"""改类: the dispatch centre corrects a ticket's category in the console (SQLite and
PostgreSQL). The ticket goes to the new category's units, the review inbox gets the
correction in the same transaction, refusals write nothing, races have one winner."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console import services as svc
from bot.console.tables import outbox
from bot.console.uow import ConsoleUnitOfWork
from bot.retraining.tables import review_items
from bot.storage.tables import ticket_events, tickets
from tests.console.helpers import STREET, another_client, file, login, make_users, now, post
from tests.security.conftest import row_counts

pytestmark = pytest.mark.asyncio

NOISE = "夜市摊贩占道经营，每晚喇叭吆喝到十一点 电话13912345678"
EVIL = '<script>alert("x")</script>'


def ticket_row(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(tickets)).mappings().one())


def event_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(ticket_events).order_by(ticket_events.c.seq)).mappings()]


def review_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(review_items).order_by(review_items.c.id)).mappings()]


async def returned_ticket(client: TestClient, engine: Engine) -> Any:
    """A 噪声扰民 ticket that the street worker (co-handler) accepted and returned."""
    filed = file(engine, "k1", category="noise", description=NOISE)
    worker = await login(client, "grid")
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/accept", worker)).status == 303
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/return", worker, reason="不是噪声问题")).status == 303
    return filed


async def test_dispatcher_recategorises_a_returned_ticket(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "disp", "root"))
    svc.ensure_feed(ConsoleUnitOfWork(engine), now())
    filed = await returned_ticket(client, engine)
    tid = filed.ticket_id
    before = ticket_row(engine)
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    with engine.connect() as conn:
        announced = set(conn.execute(select(outbox.c.id)).scalars())
    async with another_client(client) as disp_client:
        disp = await login(disp_client, "disp")
        page = await (await disp_client.get(f"/console/tickets/{tid}")).text()
        assert f'action="/console/tickets/{tid}/recategorise"' in page
        assert '<option value="street_order" >市容秩序</option>' in page
        assert 'value="noise"' not in page  # the current category is not offered
        assert 'value="other"' not in page  # 「其他」 has no lead unit
        resp = await post(disp_client, f"/console/tickets/{tid}/recategorise", disp, category="street_order",
                          reason="实为占道经营")
        assert resp.status == 303
        # the ticket left the dispatcher's sight: their queue with a notice, not a 404 (issue 13 item 9)
        number = ticket_row(engine)["number"]
        assert resp.headers["Location"] == f"/console/queue?done=recategorise&ticket={number}"
        landing = await disp_client.get(resp.headers["Location"])
        assert landing.status == 200 and f"{number} 已改类" in await landing.text()

    row = ticket_row(engine)
    assert (row["category"], row["lead_queue"], row["co_queues"], row["state"], row["version"]) == (
        "street_order", "urban_management", ["traffic_police", f"street:{STREET}"], "派单", before["version"] + 1)
    assert (row["dispatch_class"], row["deadline_at"]) == ("normal", before["deadline_at"])  # same class: kept
    last = event_rows(engine)[-1]
    assert {k: last[k] for k in ("seq", "kind", "from_state", "to_state", "actor", "reason", "data")} == {
        "seq": 5, "kind": "改类", "from_state": "退单", "to_state": "派单", "actor": "user:disp",
        "reason": "实为占道经营",
        "data": {"was": "noise", "category": "street_order", "lead": "urban_management",
                 "co": ["traffic_police", f"street:{STREET}"], "dispatch_class": "normal"},
    }
    [item] = review_rows(engine)
    assert {k: item[k] for k in ("source", "text", "predicted_intent", "ticket_id", "correction", "status")} == {
        "source": "ticket_category", "text": "夜市摊贩占道经营，每晚喇叭吆喝到十一点 电话139****5678",
        "predicted_intent": "noise", "ticket_id": tid,
        "correction": {"intent": "street_order", "chosen_by": "dispatcher"}, "status": "new",
    }
    assert item["dedupe_key"].startswith(f"ticket_category:{tid}:")

    # The worker notices go to the new units, like 改派; nothing new for the resident.
    svc.process_feed(ConsoleUnitOfWork(engine), now())
    with engine.connect() as conn:
        new = [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.id)).mappings() if r["id"] not in announced]
    assert [(m["kind"], m["recipient"], m["event"], m["payload"]["text"]) for m in new] == [
        ("worker", q, "recategorised", f"改类工单 {filed.number}")
        for q in ("urban_management", "traffic_police", f"street:{STREET}")
    ]

    # The history, in Chinese, for the street worker who still co-handles it.
    page = await (await client.get(f"/console/tickets/{tid}")).text()
    assert "改类：噪声扰民 → 市容秩序（实为占道经营）" in page
    assert "<dt>类别</dt><dd>市容秩序</dd>" in page and "签收</button>" in page
    assert "/recategorise" not in page  # workers get no form

    # Open311 reads the new service code.
    got = await (await client.get(f"/open311/v2/requests/{filed.number}.json")).json()
    assert (got[0]["service_code"], got[0]["service_name"]) == ("street_order", "市容秩序")
    listed = await (await client.get("/open311/v2/requests.json?service_code=street_order")).json()
    assert [r["service_request_id"] for r in listed] == [filed.number]


async def test_recategorise_from_the_dispatch_centre_follows_the_new_class(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("disp",))
    filed = file(engine, "k1", street=None, category="dog", description="暖气片不热，家里只有十二度")
    before = ticket_row(engine)
    assert (before["state"], before["lead_queue"], before["dispatch_class"]) == ("受理", "dispatch_center", "normal")
    disp = await login(client, "disp")
    resp = await post(client, f"/console/tickets/{filed.ticket_id}/recategorise", disp, category="heating",
                      reason="是供热问题")
    assert resp.status == 303
    row = ticket_row(engine)
    # No street known: the department alone; the deadline runs from 受理 with the new class (公用事业 2 h).
    assert (row["category"], row["lead_queue"], row["co_queues"], row["state"], row["dispatch_class"]) == (
        "heating", "heating_authority", [], "派单", "utilities")
    assert row["deadline_at"] == before["created_at"] + timedelta(hours=2)
    assert [(e["kind"], e["from_state"], e["to_state"]) for e in event_rows(engine)] == [
        ("受理", None, "受理"), ("改类", "受理", "派单")]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"category": "noise", "reason": "x"}, "工单已是「噪声扰民」类，无需改类"),
        ({"category": "parking", "reason": "x"}, "请选择正确的类别"),
        ({"category": "", "reason": "x"}, "请选择正确的类别"),
        ({"category": "other", "reason": "x"}, "「其他」没有主办单位，请改用派单指定承办单位"),
        ({"category": "street_order", "reason": "  "}, "改类必须说明理由"),
        ({"category": "street_order"}, "改类必须说明理由"),
    ],
)
async def test_bad_requests_are_refused_and_write_nothing(
        client: TestClient, engine: Engine, form: dict[str, str], message: str) -> None:
    make_users(engine, ("grid", "disp"))
    filed = await returned_ticket(client, engine)
    before, ticket = row_counts(engine), ticket_row(engine)
    async with another_client(client) as disp_client:
        disp = await login(disp_client, "disp")
        before = row_counts(engine)  # (logging in wrote a session)
        resp = await post(disp_client, f"/console/tickets/{filed.ticket_id}/recategorise", disp, **form)
        assert resp.status == 400
        assert message in await resp.text()
    assert row_counts(engine) == before and ticket_row(engine) == ticket


async def test_who_may_recategorise(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "other", "dog", "disp"))
    filed = await returned_ticket(client, engine)
    path = f"/console/tickets/{filed.ticket_id}/recategorise"
    form = {"category": "street_order", "reason": "实为占道经营"}
    ticket = ticket_row(engine)
    for user, status, text in (("grid", 409, "只有派单中心可以执行此操作"), ("dog", 409, "只有派单中心可以执行此操作"),
                               ("other", 404, "")):
        async with another_client(client) as c:
            csrf = await login(c, user)
            page = await c.get(f"/console/tickets/{filed.ticket_id}")
            if page.status == 200:
                assert "/recategorise" not in await page.text()  # no form for them
            before = row_counts(engine)
            resp = await post(c, path, csrf, **form)
            assert resp.status == status, user
            assert text in await resp.text()
            assert row_counts(engine) == before and ticket_row(engine) == ticket
            # without the CSRF token: 403 whoever asks
            assert (await c.post(path, data=form, allow_redirects=False)).status == 403
    async with another_client(client) as c:
        await login(c, "disp")
        assert (await c.post(path, data=form, allow_redirects=False)).status == 403
    assert ticket_row(engine) == ticket and review_rows(engine) == []


async def test_closed_ticket_cannot_be_recategorised(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "disp", "root"))
    filed = file(engine, "k1", category="noise", description=NOISE)
    worker = await login(client, "grid")
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/accept", worker)).status == 303
    assert (await post(client, f"/console/tickets/{filed.ticket_id}/resolve", worker, result="已劝离")).status == 303
    result = svc.record_follow_up(ConsoleUnitOfWork(engine), filed.number, "resident-1", True, "满意", now())
    assert result.status == "closed"
    ticket = ticket_row(engine)
    path = f"/console/tickets/{filed.ticket_id}/recategorise"
    form = {"category": "street_order", "reason": "实为占道经营"}
    async with another_client(client) as root, another_client(client) as disp_client:
        csrf = await login(root, "root")
        page = await (await root.get(f"/console/tickets/{filed.ticket_id}")).text()
        assert "/recategorise" not in page and "/reopen" in page
        before = row_counts(engine)
        resp = await post(root, path, csrf, **form)
        assert resp.status == 409 and f"工单 {filed.number} 当前为「回访」，不能改类" in await resp.text()
        assert row_counts(engine) == before
        disp = await login(disp_client, "disp")  # a closed, routed ticket is not the dispatcher's
        assert (await post(disp_client, path, disp, **form)).status == 404
    assert ticket_row(engine) == ticket and review_rows(engine) == []


async def test_admin_sees_the_form_and_a_hostile_reason_is_escaped(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "root"))
    filed = await returned_ticket(client, engine)
    path = f"/console/tickets/{filed.ticket_id}/recategorise"
    async with another_client(client) as root:
        csrf = await login(root, "root")
        page = await (await root.get(f"/console/tickets/{filed.ticket_id}")).text()
        assert f'action="{path}"' in page and "<summary>改类</summary>" in page
        # refused (same category): the page comes back with the reason filled in, escaped
        resp = await post(root, path, csrf, category="noise", reason=EVIL)
        body = await resp.text()
        assert resp.status == 400 and "<script>alert" not in body
        assert 'value="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"' in body
        assert (await post(root, path, csrf, category="street_order", reason=EVIL)).status == 303
        body = await (await root.get(f"/console/tickets/{filed.ticket_id}")).text()
        assert "<script>alert" not in body
        assert "改类：噪声扰民 → 市容秩序（&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;）" in body
    assert event_rows(engine)[-1]["reason"] == EVIL  # stored verbatim, escaped when shown


async def test_racing_recategorise_and_reject_have_exactly_one_winner(client: TestClient, engine: Engine) -> None:
    """Dispatchers press 改类 and 驳回 on one returned ticket at the same moment: the
    compare-and-set on the ticket's version lets exactly one through; nothing of the others
    (event or review item) is stored."""
    make_users(engine, ("grid",))
    filed = await returned_ticket(client, engine)
    people = []
    for i in range(8):
        svc.create_user(ConsoleUnitOfWork(engine), f"d{i}", f"派单员{i}", "long-password-1", "dispatcher",
                        ["dispatch_center"], now())
        with ConsoleUnitOfWork(engine) as uow:
            people.append(svc.Principal.of(uow.console.get_user_by_username(f"d{i}")))
    version = ticket_row(engine)["version"]
    barrier = threading.Barrier(len(people))
    results: list[Any] = [None] * len(people)

    def act(i: int) -> None:
        action, form = (("recategorise", {"category": "street_order", "reason": f"改类{i}"}) if i % 2 == 0
                        else ("reject_return", {"reason": f"驳回{i}"}))
        barrier.wait()
        try:
            results[i] = svc.perform(ConsoleUnitOfWork(engine), people[i], filed.ticket_id, action, form, now())
        except BaseException as exc:  # noqa: BLE001 - checked below
            results[i] = exc

    threads = [threading.Thread(target=act, args=(i,)) for i in range(len(people))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [r for r in results if isinstance(r, svc.ActionResult)]
    # The ticket left the dispatch centre's view (派单 or back with the worker, on time): the
    # others find it gone (404, as for any ticket not theirs) or, mid-race, changed.
    losers = [r for r in results if isinstance(r, (svc.NotFound, svc.ConsoleError))]
    assert len(winners) == 1 and len(losers) == len(people) - 1, results
    assert all(isinstance(e, svc.NotFound) or "刚被他人修改" in e.message or "当前为" in e.message for e in losers)
    row = ticket_row(engine)
    assert row["version"] == version + 1
    after_return = [e for e in event_rows(engine) if e["seq"] > 4]
    assert [e["kind"] for e in after_return] == [winners[0].kind]
    if winners[0].kind == "改类":
        assert (row["category"], row["state"]) == ("street_order", "派单")
        assert [r["correction"] for r in review_rows(engine)] == [{"intent": "street_order", "chosen_by": "dispatcher"}]
    else:
        assert (row["category"], row["state"]) == ("noise", "签收")
        assert review_rows(engine) == []

"""A message answered "success" (the bot was too slow for a passive reply) must not be lost
when its worker dies before the answer went out: WeChat does not retry after "success", so
the row keeps the message and a lease until the answer is delivered, and a recovery sweep
on any instance replays it once the lease has expired — exactly one taker, never while the
worker lives, never after the answer. SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bot.channels.wechat import store as st
from bot.channels.wechat.store import wechat_inbound
from tests.wechat.conftest import cut_off
from tests.wechat.wxclient import next_msg_id, text_msg

pytestmark = pytest.mark.asyncio
LEASE = 1.5
SWEEP = 0.2
BODY = {"fields": {"FromUserName": "oResidentReplay01", "MsgType": "text", "Content": "楼道灯坏了，电话13812345678"}}


def row(h, msg_key):
    with h.engine().connect() as conn:
        return dict(conn.execute(select(wechat_inbound).where(wechat_inbound.c.msg_key == msg_key)).mappings().one())


def async_row(store: st.WeChatStore, msg_key: str, openid: str, owner: str = "dead-worker") -> None:
    """What a worker leaves behind once it answered "success": an async row with the message."""
    assert store.admit("1", "n-" + msg_key, "x" * 64, msg_key, openid, "text", 60, owner, LEASE).outcome == st.NEW
    assert store.defer(msg_key, owner, BODY, LEASE) is True


def claim(store: st.WeChatStore, owner: str):
    return store.claim_async(owner, LEASE, max_attempts=4, max_age_seconds=47 * 3600)


# --- the store ------------------------------------------------------------------------------------
async def test_an_expired_async_row_is_claimed_by_exactly_one_of_two_concurrent_sweeps(hdb):
    h = hdb
    store = st.WeChatStore(h.engine(), h.clock)
    store.ensure_tables()
    keys = [f"msg:replay-{next_msg_id()}" for _ in range(5)]
    for k in keys:
        async_row(store, k, "oResidentReplay01")
    h.clock.offset += LEASE + 1  # the worker died: nobody renews
    sweepers = [st.WeChatStore(h.engine(), h.clock) for _ in range(2)]
    barrier = threading.Barrier(2)
    results = {}

    def run(i):
        barrier.wait()
        results[i] = claim(sweepers[i], f"sweeper-{i}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    taken = [r["msg_key"] for i in range(2) for r in results[i][0]]
    assert sorted(taken) == sorted(keys)  # each row exactly once, across both sweeps
    for i in range(2):
        for r in results[i][0]:
            assert r["replay_body"] == BODY and r["lease_owner"] == f"sweeper-{i}" and r["attempts"] == 2
            assert row(h, r["msg_key"])["lease_owner"] == f"sweeper-{i}"
    # claimed: leased to its taker now, so nobody else takes it while the replay runs
    assert claim(sweepers[0], "third") == ([], [])


async def test_a_live_lease_and_an_answered_row_are_never_claimed_and_the_answer_clears_the_body(hdb):
    h = hdb
    store = st.WeChatStore(h.engine(), h.clock)
    store.ensure_tables()
    async_row(store, "msg:replay-live", "oResidentReplay02", owner="alive")
    assert row(h, "msg:replay-live")["replay_body"] == BODY
    assert claim(store, "sweeper") == ([], [])  # within the lease
    h.clock.offset += LEASE * 0.7
    assert store.renew("msg:replay-live", "alive", LEASE) is True  # the worker lives: renews
    h.clock.offset += LEASE * 0.7  # past the first lease, within the renewed one
    assert claim(store, "sweeper") == ([], [])
    store.finish("msg:replay-live", st.SENT)  # the answer went out
    answered = row(h, "msg:replay-live")
    assert answered["status"] == st.SENT and answered["replay_body"] is None
    assert store.renew("msg:replay-live", "alive", LEASE) is False  # answered: no lease to keep
    h.clock.offset += 3600
    assert claim(store, "sweeper") == ([], [])  # answered: never replayed
    # a processing row (not answered "success" yet) is WeChat's retry's business, not the sweep's
    assert store.admit("p", "n-p", "p" * 64, "msg:replay-processing", "oResidentReplay02", "text", 60, "w",
                       LEASE).outcome == st.NEW
    h.clock.offset += LEASE + 1
    assert claim(store, "sweeper") == ([], [])


async def test_the_sweep_gives_up_after_the_attempts_or_the_age_limit(hdb):
    h = hdb
    store = st.WeChatStore(h.engine(), h.clock)
    store.ensure_tables()
    async_row(store, "msg:replay-tries", "oResidentReplay03")
    for attempt in (2, 3, 4):  # each replaying worker dies too (a message that kills workers)
        h.clock.offset += LEASE + 1
        claimed, gave_up = claim(store, f"sweeper-{attempt}")
        assert [r["attempts"] for r in claimed] == [attempt] and gave_up == []
    h.clock.offset += LEASE + 1
    claimed, gave_up = claim(store, "sweeper-5")
    assert claimed == [] and [r["msg_key"] for r in gave_up] == ["msg:replay-tries"]
    done = row(h, "msg:replay-tries")
    assert done["status"] == st.GAVE_UP and done["replay_body"] is None
    # too old for the customer-service window: given up at once
    async_row(store, "msg:replay-old", "oResidentReplay03")
    with h.engine().begin() as conn:
        conn.execute(update(wechat_inbound).where(wechat_inbound.c.msg_key == "msg:replay-old").values(
            received_at=store.now() - timedelta(hours=48)))
    h.clock.offset += LEASE + 1
    claimed, gave_up = claim(store, "sweeper")
    assert claimed == [] and [r["msg_key"] for r in gave_up] == ["msg:replay-old"]
    assert row(h, "msg:replay-old")["replay_body"] is None


# --- the channel ----------------------------------------------------------------------------------
class HangingBot:
    """Takes the message and never answers: the worker that will die."""

    def __init__(self) -> None:
        self.seen = []

    async def __call__(self, message):
        self.seen.append(message.text)
        await asyncio.Event().wait()


async def die(server) -> None:
    """A killed worker: its tasks (the bot's work, the lease renewal, the sweep) gone, nothing finished.
    Nothing it left in a thread writes afterwards."""
    cut_off(server)
    await server.gateway.stop_sweeper()
    for task in list(server.gateway._tasks):
        task.cancel()
    await asyncio.gather(*server.gateway._tasks, return_exceptions=True)
    await server.close()


async def test_a_worker_that_died_after_success_is_replayed_by_another_instance_exactly_once(hdb):
    h = hdb
    dying = HangingBot()
    a = await h.channel(bot=dying, passive_budget=0.5, processing_lease=LEASE, replay_sweep_interval=SWEEP)
    openid, msg_id = "oResidentReplay10", next_msg_id()
    key = f"msg:{msg_id}"
    reply = await h.wechat(a).post(text_msg(openid, "小区门口路灯不亮", msg_id=msg_id), encrypted=True)
    assert reply.is_success  # "success": WeChat will not retry
    # the bot runs in the background: on a loaded machine it may start after the 0.5 s budget
    assert await h.standin.wait_for(lambda: dying.seen == ["小区门口路灯不亮"], timeout=30)
    assert await h.standin.wait_for(lambda: row(h, key)["status"] == st.ASYNC, timeout=30)
    kept = row(h, key)
    assert kept["status"] == st.ASYNC and kept["lease_owner"] == a.gateway.owner
    assert kept["replay_body"]["fields"]["Content"] == "小区门口路灯不亮"
    assert kept["replay_body"]["fields"]["FromUserName"] == openid
    # past the first lease, a living worker has renewed it (renewed at a time later than the first lease's end)
    first_end = kept["lease_until"]
    assert await h.standin.wait_for(
        lambda: row(h, key)["lease_until"] > first_end + timedelta(seconds=LEASE), timeout=30)
    # From here on the clock moves only when the test says: on a loaded machine the dead
    # worker's lease must not run out by itself while the survivors start, nor a survivor's
    # lease while it replays (then the other would rightly take over: a second replay).
    h.clock.freeze()
    assert row(h, key)["lease_until"].timestamp() > h.clock()
    await die(a)  # the answer never went out

    # two surviving instances sweep; they receive no request at all (the sweep runs with the server)
    b = await h.channel(passive_budget=0.5, processing_lease=LEASE, replay_sweep_interval=SWEEP)
    c = await h.channel(passive_budget=0.5, processing_lease=LEASE, replay_sweep_interval=SWEEP)
    await asyncio.sleep(SWEEP * 3)
    assert await b.gateway.sweep(h.bot) == [] and await c.gateway.sweep(h.bot) == []
    assert h.bot.texts == [] and h.standin.sent(openid) == []  # the dead worker's lease still runs
    h.clock.offset += LEASE + 1  # ...now it has run out
    assert await h.standin.wait_for(lambda: h.standin.sent(openid), timeout=30)
    await b.gateway.drain()
    await c.gateway.drain()
    h.clock.offset += LEASE + 1  # whatever lease is left has run out: more sweeps on both, nothing more
    await asyncio.sleep(SWEEP * 3)
    assert await b.gateway.sweep(h.bot) == [] and await c.gateway.sweep(h.bot) == []
    await b.gateway.drain()
    await c.gateway.drain()
    assert h.standin.sent(openid) == [{"touser": openid, "msgtype": "text", "text": {"content": "收到：小区门口路灯不亮"}}]
    assert h.bot.texts == ["小区门口路灯不亮"]  # replayed once, on one instance
    done = row(h, key)
    assert done["status"] == st.SENT and done["replay_body"] is None and done["attempts"] == 2
    assert done["lease_owner"] in (b.gateway.owner, c.gateway.owner)


async def test_a_slow_but_living_worker_keeps_its_async_row_and_answers_once(hdb):
    h = hdb
    h.bot.delay = LEASE * 3  # far past the lease: only its renewals keep the sweeps off
    a = await h.channel(passive_budget=0.5, processing_lease=LEASE, replay_sweep_interval=SWEEP)
    b = await h.channel(passive_budget=0.5, processing_lease=LEASE, replay_sweep_interval=SWEEP)
    openid, msg_id = "oResidentReplay11", next_msg_id()
    reply = await h.wechat(a).post(text_msg(openid, "井盖丢了", msg_id=msg_id))
    assert reply.is_success
    assert await h.standin.wait_for(lambda: h.standin.sent(openid), timeout=15)
    await a.gateway.drain()
    await asyncio.sleep(SWEEP * 5)
    await b.gateway.drain()
    assert h.bot.texts == ["井盖丢了"]
    assert h.standin.sent(openid) == [{"touser": openid, "msgtype": "text", "text": {"content": "收到：井盖丢了"}}]
    done = row(h, f"msg:{msg_id}")
    assert done["status"] == st.SENT and done["replay_body"] is None and done["attempts"] == 1
    assert done["lease_owner"] == a.gateway.owner


async def test_giving_up_is_logged_with_the_resident_masked(hdb, caplog):
    from bot.channels.wechat import WeChatGateway
    from bot.channels.wechat.checks import mask_key

    h = hdb
    gateway = WeChatGateway(h.config(processing_lease=LEASE), clock=h.clock, engine=h.engine())
    store = gateway.store
    store.ensure_tables()
    openid = "oResidentReplay04"
    key = f"evt:{openid}:1764000000:subscribe"
    async_row(store, key, openid)
    with h.engine().begin() as conn:
        conn.execute(update(wechat_inbound).where(wechat_inbound.c.msg_key == key).values(
            received_at=store.now() - timedelta(hours=48)))
    h.clock.offset += LEASE + 1
    with caplog.at_level("ERROR", logger="bot.channels.wechat.gateway"):
        assert await gateway.sweep(h.bot) == []
    [record] = [r for r in caplog.records if "given up" in r.getMessage()]
    message = record.getMessage()
    assert openid not in message and "oResid…" in message and mask_key(key) in message
    assert "13812345678" not in message and "楼道灯" not in message  # nothing of the message itself
    assert row(h, key)["status"] == st.GAVE_UP and row(h, key)["replay_body"] is None
    assert h.bot.texts == []

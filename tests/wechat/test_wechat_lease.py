"""A worker that dies while processing a message must not leave it "processing" forever:
the claim is a lease, renewed while the worker lives; once it expires, WeChat's next retry
(on any instance, or after a restart) takes the message over — exactly one taker, so the
message still reaches the bot (and files) at most once more. SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from bot.channels.wechat import store as st
from bot.channels.wechat.store import wechat_inbound
from tests.wechat.conftest import cut_off
from tests.wechat.wxclient import next_msg_id, text_msg

pytestmark = pytest.mark.asyncio
LEASE = 1.5


def row(h, msg_id):
    with h.engine().connect() as conn:
        return dict(conn.execute(select(wechat_inbound).where(wechat_inbound.c.msg_key == f"msg:{msg_id}"))
                    .mappings().one())


async def crash(server) -> None:
    """What a killed worker leaves behind: its tasks (the bot's work, the lease renewal) gone,
    nothing it left in a thread writes afterwards."""
    cut_off(server)
    for task in list(server.gateway._tasks):
        task.cancel()
    await asyncio.gather(*server.gateway._tasks, return_exceptions=True)
    await server.close()


class FilingBot:
    """Files a 'ticket' per message it finishes; `hang` makes it never finish (a dying worker)."""

    def __init__(self, hang: bool = False, delay: float = 0.0):
        self.hang, self.delay = hang, delay
        self.seen, self.filed = [], []

    async def __call__(self, message):
        self.seen.append(message.text)
        if self.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(self.delay)
        self.filed.append(message.text)
        await message.output_channel.send_text_message(message.sender_id, "已为您登记，工单号 QC-TEST-0002")


async def test_a_retry_after_the_lease_expired_takes_the_message_over_once(hdb):
    h = hdb
    dying = FilingBot(hang=True)
    a = await h.channel(bot=dying, processing_lease=LEASE)
    msg_id = next_msg_id()
    body = text_msg("oResidentLease001", "确认提交", msg_id=msg_id)
    first = asyncio.ensure_future(h.wechat(a).post(body))
    # the message is with the bot (which never answers)...
    assert await h.standin.wait_for(lambda: dying.seen == ["确认提交"], timeout=30)
    # the clock moves only when the test says: the lease must not run out by itself on a
    # loaded machine while the survivors start (their "within the lease" retry would take over)
    h.clock.freeze()
    await crash(a)  # ...when the worker dies, within WeChat's 5 seconds
    await asyncio.gather(first, return_exceptions=True)
    assert row(h, msg_id)["status"] == st.PROCESSING and row(h, msg_id)["lease_owner"] == a.gateway.owner

    b, c = await h.channel(bot=(survivor := FilingBot()), processing_lease=LEASE), \
        await h.channel(bot=survivor, processing_lease=LEASE)
    # within the lease: a retry is a duplicate, not processed
    early = await h.wechat(b).post(body)
    assert early.is_success and survivor.seen == []
    h.clock.offset += LEASE + 1  # the dead worker's lease runs out
    replies = await asyncio.gather(h.wechat(b).post(body), h.wechat(c).post(body, encrypted=True),
                                   h.wechat(b).post(body))
    assert survivor.filed == ["确认提交"]  # one taker among three copies on two instances
    assert [r.content for r in replies].count("已为您登记，工单号 QC-TEST-0002") >= 1
    taken = row(h, msg_id)
    assert taken["status"] == st.PASSIVE and taken["attempts"] == 2
    assert taken["lease_owner"] in (b.gateway.owner, c.gateway.owner)
    # later retries: answered from the stored reply, never processed again
    h.clock.offset += LEASE + 1
    again = await h.wechat(c).post(body)
    assert again.content == "已为您登记，工单号 QC-TEST-0002" and survivor.filed == ["确认提交"]


async def test_a_slow_but_living_worker_keeps_its_lease(hdb):
    h = hdb
    lease = 2.0  # renewed every 0.67 s: slack for a loaded test machine
    slow = FilingBot(delay=lease * 2)
    a = await h.channel(bot=slow, processing_lease=lease, passive_budget=4.5)
    b = await h.channel(bot=slow, processing_lease=lease)
    msg_id = next_msg_id()
    body = text_msg("oResidentLease002", "确认提交", msg_id=msg_id)
    first = asyncio.ensure_future(h.wechat(a).post(body))
    await asyncio.sleep(lease * 1.4)  # past the first lease: only the renewals keep it
    assert row(h, msg_id)["status"] == st.PROCESSING
    retry = await h.wechat(b).post(body)
    reply = await first
    assert reply.content == "已为您登记，工单号 QC-TEST-0002"
    assert retry.status == 200 and slow.seen == ["确认提交"] and slow.filed == ["确认提交"]
    done = row(h, msg_id)
    assert done["status"] == st.PASSIVE and done["attempts"] == 1 and done["lease_owner"] == a.gateway.owner


async def test_renew_only_extends_our_own_processing_claim(hdb):
    h = hdb
    store = st.WeChatStore(h.engine(), h.clock)
    store.ensure_tables()
    admitted = store.admit("1", "n1", "x" * 64, "msg:lease-unit", "oResidentLease003", "text", 60, "me", LEASE)
    assert admitted.outcome == st.NEW
    assert store.renew("msg:lease-unit", "me", 30) is True
    assert store.renew("msg:lease-unit", "someone-else", 30) is False
    h.clock.offset += LEASE + 1  # expired by the original lease, but renewed for 30 s
    assert store.admit("2", "n2", "y" * 64, "msg:lease-unit", "oResidentLease003", "text", 60, "other",
                       LEASE).outcome == st.DUPLICATE
    h.clock.offset += 30
    assert store.admit("3", "n3", "z" * 64, "msg:lease-unit", "oResidentLease003", "text", 60, "other",
                       LEASE).outcome == st.TAKEOVER
    assert store.renew("msg:lease-unit", "me", 30) is False  # not ours any more
    store.finish("msg:lease-unit", st.PASSIVE, "好的")
    h.clock.offset += LEASE + 1
    assert store.admit("4", "n4", "w" * 64, "msg:lease-unit", "oResidentLease003", "text", 60, "third",
                       LEASE).outcome == st.DUPLICATE  # answered: nothing to take over

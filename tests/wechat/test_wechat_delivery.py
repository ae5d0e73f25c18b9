"""WeChat's 5 seconds and retries, the 48-hour window, and the shared access_token —
on SQLite and on PostgreSQL (the dedupe and token rows are what makes it hold across
workers and restarts)."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from bot.channels.wechat.store import wechat_inbound, wechat_residents, wechat_tokens
from tests.wechat.standin import JPEG
from tests.wechat.wxclient import event_msg, image_msg, next_msg_id, text_msg

pytestmark = pytest.mark.asyncio
CUSTOM = "/cgi-bin/message/custom/send"
TEMPLATE = "/cgi-bin/message/template/send"


def inbound_rows(h, openid):
    with h.engine().connect() as conn:
        return [dict(r) for r in conn.execute(select(wechat_inbound).where(wechat_inbound.c.openid == openid))
                .mappings()]


# --- dedupe -------------------------------------------------------------------------------------
async def test_concurrent_identical_posts_reach_the_bot_once(hdb):
    h = hdb
    srv = await h.channel()
    h.bot.delay = 0.3  # the copies arrive while the first is still with the bot
    wx = h.wechat(srv)
    body = text_msg("oResidentDup0001", "下水道堵了", msg_id=next_msg_id())
    # three retries of one message, each signed afresh (as WeChat does)
    replies = await asyncio.gather(*(wx.post(body, encrypted=True) for _ in range(3)))
    assert h.bot.texts == ["下水道堵了"]
    assert all(r.status == 200 for r in replies)
    assert [r.content for r in replies].count("收到：下水道堵了") >= 1
    assert all(r.content in ("收到：下水道堵了", "") for r in replies)
    assert len(inbound_rows(h, "oResidentDup0001")) == 1


async def test_duplicates_across_two_instances_and_a_restart(hdb):
    h = hdb
    a, b = await h.channel(), await h.channel()  # two workers, one database
    h.bot.delay = 0.3
    body = text_msg("oResidentDup0002", "暖气不热", msg_id=next_msg_id())
    ra, rb = await asyncio.gather(h.wechat(a).post(body, encrypted=True), h.wechat(b).post(body, encrypted=True))
    assert h.bot.texts == ["暖气不热"]
    assert "收到：暖气不热" in (ra.content, rb.content)
    # "restart": a new instance with a new engine, a retry of the same message
    await a.close()
    await b.close()
    c = await h.channel()
    again = await h.wechat(c).post(body, encrypted=True)
    assert h.bot.texts == ["暖气不热"]
    assert again.content == "收到：暖气不热"  # the stored passive reply, in case the first was lost


async def test_events_dedupe_by_sender_and_create_time(hdb):
    h = hdb
    srv = await h.channel()
    wx = h.wechat(srv)
    ct = int(time.time())
    body = event_msg("oResidentEvt0001", "subscribe", "qrscene_150102001001", create_time=ct)
    await asyncio.gather(*(wx.post(body) for _ in range(3)))
    assert len(h.bot.messages) == 1
    await wx.post(event_msg("oResidentEvt0002", "subscribe", "", create_time=ct))  # another resident, same second
    assert len(h.bot.messages) == 2


async def test_nothing_is_filed_twice_when_the_bot_files(hdb):
    """The bot files a 'ticket' per message it sees; three copies → one ticket."""
    h = hdb
    filed = []

    async def filing_bot(message):
        await asyncio.sleep(0.2)
        filed.append(message.text)
        await message.output_channel.send_text_message(message.sender_id, "已为您登记，工单号 QC-TEST-0001")

    a, b = await h.channel(bot=filing_bot), await h.channel(bot=filing_bot)
    body = text_msg("oResidentDup0003", "确认提交", msg_id=next_msg_id())
    await asyncio.gather(h.wechat(a).post(body), h.wechat(b).post(body), h.wechat(a).post(body, encrypted=True))
    assert filed == ["确认提交"]


# --- the 5 seconds ---------------------------------------------------------------------------------
async def test_slow_bot_gets_success_at_once_and_the_answer_via_custom_send(h):
    srv = await h.channel(passive_budget=0.5)
    h.bot.delay = 1.5
    reply = await h.wechat(srv).post(text_msg("oResidentSlow001", "噪音扰民"), encrypted=True)
    assert reply.is_success and reply.elapsed < 1.2
    assert await h.standin.wait_for(lambda: h.standin.sent("oResidentSlow001"), timeout=10)
    [msg] = h.standin.sent("oResidentSlow001")
    assert msg == {"touser": "oResidentSlow001", "msgtype": "text", "text": {"content": "收到：噪音扰民"}}
    await srv.gateway.drain()
    assert [r["status"] for r in inbound_rows(h, "oResidentSlow001")] == ["sent"]


async def test_the_real_budget_answers_within_five_seconds(h):
    srv = await h.channel()  # passive_budget 4 s, as deployed
    h.bot.delay = 6.0
    started = time.monotonic()
    reply = await h.wechat(srv).post(text_msg("oResidentSlow002", "路灯坏了"))
    assert reply.is_success and time.monotonic() - started < 4.8
    assert await h.standin.wait_for(lambda: h.standin.sent("oResidentSlow002"), timeout=10)


async def test_retry_while_the_bot_is_slow_is_not_processed_again(h):
    srv = await h.channel(passive_budget=0.5)
    h.bot.delay = 1.5
    wx = h.wechat(srv)
    body = text_msg("oResidentSlow003", "垃圾没人清", msg_id=next_msg_id())
    first = await wx.post(body)
    second = await wx.post(body)  # WeChat's retry after its own timeout
    assert first.is_success and second.is_success
    await srv.gateway.drain()
    assert h.bot.texts == ["垃圾没人清"]
    assert len(h.standin.sent("oResidentSlow003")) == 1


async def test_slow_answer_outside_the_window_falls_back_to_a_template(h):
    srv = await h.channel(passive_budget=0.5)
    h.bot.delay = 1.0
    h.standin.out_of_window.add("oResidentSlow004")  # WeChat says 45015
    await h.wechat(srv).post(text_msg("oResidentSlow004", "小区物业不管"))
    assert await h.standin.wait_for(lambda: h.standin.sent("oResidentSlow004", TEMPLATE), timeout=10)
    [tpl] = h.standin.sent("oResidentSlow004", TEMPLATE)
    assert tpl["template_id"] == "TPL-ticket-update"
    assert tpl["data"] == {"content": {"value": "收到：小区物业不管"}}


# --- send_to_resident: the 48-hour window ------------------------------------------------------------
async def _set_last_inbound(h, openid, hours_ago):
    with h.engine().begin() as conn:
        conn.execute(update(wechat_residents).where(wechat_residents.c.openid == openid).values(
            last_inbound_at=datetime.now(timezone.utc) - timedelta(hours=hours_ago)))


async def test_send_to_resident_within_and_outside_48_hours(hdb):
    h = hdb
    srv = await h.channel()
    await h.wechat(srv).post(text_msg("oResidentWin0001", "你好"))
    gw = srv.gateway
    within = await gw.send_to_resident("oResidentWin0001", "工单 QC-261125-0001 已办结")
    assert (within.ok, within.via) == (True, "custom")
    await _set_last_inbound(h, "oResidentWin0001", 49)
    before = len(h.standin.calls_to(CUSTOM))
    later = await gw.send_to_resident("oResidentWin0001", "工单 QC-261125-0001 请您评价")
    assert (later.ok, later.via) == (True, "template")
    assert len(h.standin.calls_to(CUSTOM)) == before  # not even tried
    [tpl] = h.standin.sent("oResidentWin0001", TEMPLATE)
    assert tpl["data"]["content"]["value"] == "工单 QC-261125-0001 请您评价"
    # a resident we never heard from: template too
    assert (await gw.send_to_resident("oNeverWroteUs001", "通知")).via == "template"


async def test_45015_inside_our_window_falls_back_and_no_template_is_reported(h):
    srv = await h.channel()
    await h.wechat(srv).post(text_msg("oResidentWin0002", "你好"))
    h.standin.out_of_window.add("oResidentWin0002")  # e.g. the resident unsubscribed meanwhile
    res = await srv.gateway.send_to_resident("oResidentWin0002", "进展通知")
    assert (res.ok, res.via) == (True, "template")
    bare = await h.channel(template_id="")
    res = await bare.gateway.send_to_resident("oResidentWin0002", "进展通知")
    assert not res.ok and "QC_WECHAT_TEMPLATE_ID" in res.errmsg
    assert not (await srv.gateway.send_to_resident("not an openid!", "x")).ok


async def test_send_errors_are_reported_not_raised(h):
    srv = await h.channel()
    await h.wechat(srv).post(text_msg("oResidentWin0003", "你好"))
    h.standin.fail_next(CUSTOM, errcode=45009)  # API quota
    res = await srv.gateway.send_to_resident("oResidentWin0003", "x")
    assert (res.ok, res.via, res.errcode) == (False, "custom", 45009)
    h.standin.fail_next(CUSTOM, delay=3.0)  # longer than the 2 s send timeout
    res = await srv.gateway.send_to_resident("oResidentWin0003", "x")
    assert not res.ok and res.errcode == -1


# --- access_token ---------------------------------------------------------------------------------------
async def test_one_token_for_many_messages_across_two_instances(hdb):
    h = hdb
    a, b = await h.channel(), await h.channel()
    for i in range(6):
        h.standin.add_media(f"M{i}", JPEG)
    await asyncio.gather(*(h.wechat(a if i % 2 else b).post(image_msg(f"oResidentTok{i:04d}", f"M{i}"))
                           for i in range(6)))
    for i in range(6):
        await h.wechat(b if i % 2 else a).post(text_msg(f"oResidentTok{i:04d}", "还有"))
    await a.gateway.send_to_resident("oResidentTok0001", "通知")
    await b.gateway.send_to_resident("oResidentTok0002", "通知")
    assert len(h.standin.calls_to("/cgi-bin/media/get")) == 6
    assert len(h.standin.token_calls) == 1
    # a restarted worker reads it from the database
    c = await h.channel()
    await c.gateway.send_to_resident("oResidentTok0003", "通知")
    assert len(h.standin.token_calls) == 1
    with h.engine().connect() as conn:
        row = conn.execute(select(wechat_tokens)).mappings().one()
    assert row["access_token"] == "TOKEN-1" and row["refreshes"] == 1


async def test_concurrent_refresh_does_not_stampede(hdb):
    h = hdb
    h.standin.token_delay = 0.4
    workers = [await h.channel() for _ in range(3)]
    for w in workers:
        await h.wechat(w).post(text_msg(f"oResidentStm{id(w) % 10000:04d}", "你好"))
    results = await asyncio.gather(*(w.gateway.api.access_token() for w in workers for _ in range(3)))
    assert set(results) == {"TOKEN-1"}
    assert len(h.standin.token_calls) == 1


async def test_token_refreshed_near_expiry(hdb):
    h = hdb
    srv = await h.channel()
    api = srv.gateway.api
    assert await api.access_token() == "TOKEN-1"
    h.clock.offset += 7200 - 400  # 6 min 40 s left: still good
    assert await api.access_token() == "TOKEN-1"
    h.clock.offset += 120  # 4 min 40 s left: inside the 5-minute margin
    assert await api.access_token() == "TOKEN-2"
    other = await h.channel()  # another worker sees the new one, no extra call
    assert await other.gateway.api.access_token() == "TOKEN-2"
    assert len(h.standin.token_calls) == 2


@pytest.mark.parametrize("errcode", [40001, 42001])
async def test_invalid_token_is_refreshed_once_and_the_call_retried(hdb, errcode):
    h = hdb
    a, b = await h.channel(), await h.channel()
    await h.wechat(a).post(text_msg("oResidentInv0001", "你好"))
    assert await a.gateway.api.access_token() == "TOKEN-1"
    assert await b.gateway.api.access_token() == "TOKEN-1"  # both workers hold it in memory
    if errcode == 40001:
        h.standin.revoke("TOKEN-1")  # e.g. someone fetched a token elsewhere with the same secret
    else:
        h.standin.expire("TOKEN-1")
    res = await a.gateway.send_to_resident("oResidentInv0001", "进展")
    assert res.ok and res.via == "custom"
    assert len(h.standin.token_calls) == 2
    assert [c.query["access_token"] for c in h.standin.calls_to(CUSTOM)] == ["TOKEN-1", "TOKEN-2"]
    # worker b still holds TOKEN-1: it is refused once, b finds TOKEN-2 in the database
    h.standin.add_media("M-after", JPEG)
    reply = await h.wechat(b).post(image_msg("oResidentInv0001", "M-after"))
    assert reply.status == 200 and h.bot.texts[-1].startswith('/inform{"photo"')
    assert [c.query["access_token"] for c in h.standin.calls_to("/cgi-bin/media/get")] == ["TOKEN-1", "TOKEN-2"]
    assert len(h.standin.token_calls) == 2


async def test_token_errors_do_not_loop(h):
    srv = await h.channel()
    await h.wechat(srv).post(text_msg("oResidentInv0002", "你好"))
    h.standin.fail_next(CUSTOM, errcode=40001, times=5)
    res = await srv.gateway.send_to_resident("oResidentInv0002", "进展")
    assert not res.ok and res.errcode == 40001
    assert len(h.standin.calls_to(CUSTOM)) == 2  # the call and one retry
    assert len(h.standin.token_calls) == 2
    h.standin.fail_next("/cgi-bin/token", errcode=40013)
    await srv.gateway.api._invalidate(await srv.gateway.api.access_token())
    res = await srv.gateway.send_to_resident("oResidentInv0002", "进展")
    assert not res.ok and res.errcode == 40013

"""Each message type, as WeChat posts it, and what reaches the bot (a fake on_new_message)."""
from __future__ import annotations

import json
import re
import time

import pytest
from sqlalchemy import select

from bot.channels.wechat.replies import MSG_PHOTO_FAILED, MSG_TEXT_ONLY, MSG_TOO_FAST, MSG_VOICE_UNCLEAR
from bot.channels.wechat.store import wechat_inbound, wechat_residents
from bot.photoclean import clean_photo
from tests.photos import metadata_of
from tests.wechat.standin import JPEG, PNG
from tests.wechat.wxclient import (
    ACCOUNT,
    event_msg,
    image_msg,
    location_msg,
    text_msg,
    voice_msg,
    xml_message,
)

pytestmark = pytest.mark.asyncio


async def test_text_with_buttons_and_numbered_answers(h):
    srv = await h.channel()
    wx = h.wechat(srv)
    h.bot.buttons = [{"title": "新城区 迎新路街道 锦绣社区居委会", "payload": '/inform{"community":"150102006003"}'},
                     {"title": "都不是 / 不清楚", "payload": "/deny"}]
    first = await wx.post(text_msg("oResidentBtn0001", "锦绣社区"), encrypted=True)
    assert "1. 新城区 迎新路街道 锦绣社区居委会" in first.content
    assert "2. 都不是 / 不清楚" in first.content and "回复数字" in first.content
    h.bot.buttons = None
    await wx.post(text_msg("oResidentBtn0001", "１"), encrypted=True)  # a full-width digit too
    await wx.post(text_msg("oResidentBtn0001", "2"), encrypted=True)  # the last reply offered no buttons
    assert h.bot.texts == ["锦绣社区", '/inform{"community":"150102006003"}', "2"]
    h.bot.buttons = [{"title": "确认提交", "payload": "/affirm"}, {"title": "取消", "payload": "/deny"}]
    await wx.post(text_msg("oResidentBtn0001", "看看"), encrypted=True)
    await wx.post(text_msg("oResidentBtn0001", "确认提交"), encrypted=True)  # a title typed out
    assert h.bot.texts[-1] == "/affirm"


async def test_typed_payload_is_read_as_text(h):
    srv = await h.channel()
    await h.wechat(srv).post(text_msg("oResidentPay0001", '/inform{"photo": "http://evil.example/x.jpg"}'))
    [msg] = h.bot.messages
    assert not msg.text.startswith("/") and "evil.example" in msg.text


async def test_location_sends_the_label_and_keeps_coordinates(h):
    srv = await h.channel()
    reply = await h.wechat(srv).post(
        location_msg("oResidentLoc0001", 40.8415, 111.7498, "内蒙古自治区呼和浩特市新城区海拉尔东路街道公主府社区"),
        encrypted=True)
    assert reply.status == 200
    [msg] = h.bot.messages
    assert msg.text == "内蒙古自治区呼和浩特市新城区海拉尔东路街道公主府社区"
    loc = msg.metadata["wechat"]["location"]
    assert loc["lat"] == pytest.approx(40.8415) and loc["lng"] == pytest.approx(111.7498)


async def test_image_is_downloaded_checked_stored_and_passed_as_photo(h):
    srv = await h.channel()
    h.standin.add_media("MEDIA_photo_1", JPEG)
    reply = await h.wechat(srv).post(image_msg("oResidentImg0001", "MEDIA_photo_1"), encrypted=True)
    assert reply.status == 200
    [msg] = h.bot.messages
    m = re.fullmatch(r'/inform\{"photo": "/widget/photo/([0-9a-f]{32}\.jpg)"\}', msg.text)
    assert m, msg.text
    stored = h.tmp / "uploads" / m.group(1)
    assert metadata_of(JPEG) and metadata_of(stored.read_bytes()) == []  # GPS, device… stripped
    assert stored.read_bytes() == clean_photo(JPEG, "jpg")
    assert stored.stat().st_mode & 0o777 == 0o600
    [call] = h.standin.calls_to("/cgi-bin/media/get")
    assert call.query["media_id"] == "MEDIA_photo_1" and call.query["access_token"].startswith("TOKEN-")


async def test_png_with_public_url(h):
    srv = await h.channel(public_url="https://12345.example.gov.cn")
    h.standin.add_media("MEDIA_png", PNG, "image/png")
    await h.wechat(srv).post(image_msg("oResidentImg0002", "MEDIA_png"))
    assert re.fullmatch(r'/inform\{"photo": "https://12345\.example\.gov\.cn/widget/photo/[0-9a-f]{32}\.png"\}',
                        h.bot.texts[0])
    [stored] = (h.tmp / "uploads").iterdir()
    assert metadata_of(PNG) and metadata_of(stored.read_bytes()) == []  # text chunks, EXIF stripped


@pytest.mark.parametrize("trouble", ["not_an_image", "html_as_image", "undecodable", "invalid_media_id", "timeout",
                                     "http_500"])
async def test_image_failures_tell_the_resident_and_store_nothing(h, trouble):
    srv = await h.channel()
    if trouble == "not_an_image":
        h.standin.add_media("M1", b"MZ\x90\x00 this is an executable, not a photo" * 10, "image/jpeg")
    elif trouble == "html_as_image":
        h.standin.add_media("M1", b"<html><script>alert(1)</script></html>", "image/jpeg")
    elif trouble == "undecodable":  # JPEG's magic bytes, no picture behind them
        h.standin.add_media("M1", JPEG[:2] + b"\xff\xe0" + bytes(300), "image/jpeg")
    elif trouble == "timeout":
        h.standin.add_media("M1", JPEG)
        h.standin.fail_next("/cgi-bin/media/get", delay=1.5)  # the media timeout is 1 s here
    elif trouble == "http_500":
        h.standin.fail_next("/cgi-bin/media/get", status=500)
    started = time.monotonic()
    reply = await h.wechat(srv).post(image_msg("oResidentImg0003", "M1"), encrypted=True)
    assert time.monotonic() - started < 4.5
    assert reply.content == MSG_PHOTO_FAILED
    assert h.bot.messages == []
    assert not (h.tmp / "uploads").exists() or not any((h.tmp / "uploads").iterdir())


async def test_voice(h):
    srv = await h.channel()
    wx = h.wechat(srv)
    await wx.post(voice_msg("oResidentVoice01", "暖气不热已经三天了"))
    assert h.bot.texts == ["暖气不热已经三天了"]
    assert h.bot.messages[0].metadata["wechat"]["voice"] is True
    unclear = await wx.post(voice_msg("oResidentVoice01", None))
    assert unclear.content == MSG_VOICE_UNCLEAR
    assert len(h.bot.messages) == 1


async def test_subscribe_through_a_community_qr_code(h):
    srv = await h.channel()
    wx = h.wechat(srv)
    await wx.post(event_msg("oResidentSub0001", "subscribe", "qrscene_150102001001"), encrypted=True)
    [msg] = h.bot.messages
    assert json.loads(msg.text[len("/inform"):]) == {"community": "150102001001"}
    assert msg.metadata["wechat"]["scene_community"] == "150102001001"
    with h.engine().connect() as conn:
        row = conn.execute(select(wechat_residents).where(wechat_residents.c.openid == "oResidentSub0001")).one()
    assert row.scene_community == "150102001001"
    # later messages carry the community in their metadata (for the conversation to use)
    await wx.post(text_msg("oResidentSub0001", "楼道灯坏了"))
    assert h.bot.messages[-1].metadata["wechat"]["scene_community"] == "150102001001"
    # an already-subscribed resident scanning another community's code
    await wx.post(event_msg("oResidentSub0001", "SCAN", "150103002003", create_time=int(time.time()) + 1))
    assert json.loads(h.bot.texts[-1][len("/inform"):]) == {"community": "150103002003"}


async def test_subscribe_without_scene_greets_and_unsubscribe_is_silent(h):
    srv = await h.channel()
    wx = h.wechat(srv)
    await wx.post(event_msg("oResidentSub0002", "subscribe", ""))
    assert h.bot.texts == ["/greet"]
    bad = await wx.post(event_msg("oResidentSub0003", "subscribe", 'qrscene_1"}/x'))
    assert h.bot.texts == ["/greet", "/greet"]  # a malformed scene is not passed on
    quiet = await wx.post(event_msg("oResidentSub0002", "unsubscribe"))
    assert quiet.is_success and len(h.bot.messages) == 2
    assert bad.status == 200


@pytest.mark.parametrize("msg_type", ["video", "shortvideo", "link", "file", "music_unknown"])
async def test_unknown_types_get_a_polite_reply(h, msg_type):
    srv = await h.channel()
    body = xml_message(ToUserName=ACCOUNT, FromUserName="oResidentVid0001", CreateTime=int(time.time()),
                       MsgType=msg_type, MediaId="m", MsgId=123456789 + len(msg_type))
    reply = await h.wechat(srv).post(body, encrypted=True)
    assert reply.content == MSG_TEXT_ONLY and "请发送文字" in reply.content
    assert h.bot.messages == []


async def test_bot_failure_asks_to_resend(h):
    srv = await h.channel()
    h.bot.fail = True
    reply = await h.wechat(srv).post(text_msg("oResidentFail001", "下水道堵了"))
    assert reply.status == 200 and "请稍后重发" in reply.content


async def test_tracker_store_down_asks_to_resend(h):
    """TrackerStoreUnavailable is a BaseException (bot/rasa_ext/trackerstore.py): it must still end in
    the polite busy reply, not in a dropped request WeChat would retry into the same outage."""
    from bot.channels.common import MSG_BUSY
    from bot.rasa_ext.trackerstore import TrackerStoreUnavailable

    async def store_down(message):
        raise TrackerStoreUnavailable("tracker store unreachable (retrieve)")

    srv = await h.channel(bot=store_down)
    reply = await h.wechat(srv).post(text_msg("oResidentStoreDown01", "下水道堵了"))
    assert (reply.status, reply.content) == (200, MSG_BUSY)


async def test_long_answers_are_split(h):
    async def verbose(message):
        await message.output_channel.send_text_message(message.sender_id, "\n".join([f"政策说明第{i}条：" + "字" * 60
                                                                                     for i in range(40)]))

    srv = await h.channel(bot=verbose)
    reply = await h.wechat(srv).post(text_msg("oResidentLong001", "养犬政策"))
    assert len(reply.content.encode()) <= 2048 and reply.content.startswith("政策说明第0条")

    def rest() -> str:
        return "\n".join(m["text"]["content"] for m in h.standin.sent("oResidentLong001"))

    assert await h.standin.wait_for(lambda: "政策说明第39条" in rest())  # the rest, via custom/send, in order
    numbers = [int(n) for n in re.findall(r"政策说明第(\d+)条", reply.content + "\n" + rest())]
    assert numbers == list(range(40))
    assert all(len(m["text"]["content"].encode()) <= 2048 for m in h.standin.sent("oResidentLong001"))


async def test_rate_limit(hdb):
    h = hdb
    srv = await h.channel()
    wx = h.wechat(srv)
    replies = [await wx.post(text_msg("oResidentFlood01", f"第{i}条")) for i in range(23)]
    assert [r.content for r in replies[:20]] == [f"收到：第{i}条" for i in range(20)]
    assert all(r.content == MSG_TOO_FAST for r in replies[20:])
    assert len(h.bot.messages) == 20
    # another resident is not affected
    assert (await wx.post(text_msg("oResidentCalm001", "你好"))).content == "收到：你好"
    with h.engine().connect() as conn:
        statuses = conn.execute(select(wechat_inbound.c.status).where(
            wechat_inbound.c.openid == "oResidentFlood01")).scalars().all()
    assert statuses.count("limited") == 3
    # a minute later the resident is heard again
    h.clock.offset += 61
    assert (await wx.post(text_msg("oResidentFlood01", "好了"))).content == "收到：好了"

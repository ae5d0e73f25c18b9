"""Fuzzing the chat channels in-process: the WeChat channel (the real Sanic blueprint on
loopback, requests signed and encrypted like WeChat's servers by tests/wechat/wxclient.py,
the WeChat API stand-in) and the REST channel (RestInput's blueprint with a recording bot).

Bodies: random bytes, malformed/non-UTF-8/oversized XML, XML bombs and XXE (plain and inside
the encryption), messages with hostile field values (control characters, full-width, huge
numbers, wrong types). Every answer: no 5xx; a refusal is a clear 4xx that stores nothing
(exact row counts of the channel's tables) and reaches no bot; an accepted message reaches
the bot exactly once, as sent."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from sqlalchemy import func, select

from bot.channels.common import EMPTY_MESSAGE, MAX_MESSAGE_CHARS
from bot.channels.payloads import resident_text
from bot.channels.rest import RestInput
from bot.channels.wechat.store import TABLES
from bot.security.ratelimit import RateLimiter
from bot.text import clean_message
from tests.security.conftest import NASTY_TEXT, hostile_text
from tests.security.test_rate_limits import RecordingBot, close, serve
from tests.wechat.conftest import any_db_url, harness_on  # noqa: F401 - fixtures of the WeChat tests
from tests.wechat.wxclient import ACCOUNT, next_msg_id, xml_message

pytestmark = pytest.mark.asyncio

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest_asyncio.fixture
async def wx(any_db_url: str, tmp_path: Any):  # noqa: F811, ANN201
    """One WeChat channel (compatible mode: plain and encrypted), its client and its database
    (SQLite and PostgreSQL)."""
    async for h in harness_on(any_db_url, tmp_path):
        server = await h.channel(mode="compatible", rate_limit=10**6)
        yield h, h.wechat(server), h.engine()


def wechat_rows(engine: Any) -> dict[str, int]:
    """Rows per channel table (0 before the channel created its tables on first use)."""
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                if engine.dialect.has_table(conn, t.name) else 0 for t in TABLES}


def nonce() -> str:
    # not wxclient's random.randrange: hypothesis seeds `random`, a repeated nonce is a replay
    return uuid.uuid4().hex[:16]


# --- WeChat: bytes that are not a message ---------------------------------------------------------

BOMBS = {
    "billion_laughs": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
                      + b"".join(b'<!ENTITY a%d "%s">' % (i, (b"&a%d;" % (i - 1) if i > 1 else b"&a;") * 10)
                                 for i in range(1, 9))
                      + b']><xml><Content>&a8;</Content></xml>',
    "quadratic": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "' + b"x" * 20000 + b'">]><xml><Content>'
                 + b"&a;" * 10000 + b"</Content></xml>",
    "xxe_file": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Content>&e;</Content></xml>',
    "xxe_http": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]><xml><Content>&e;</Content></xml>',
    "parameter_entity": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><xml/>',
    "xinclude": b'<xml xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/passwd" parse="text"/></xml>',
    "deep": b"<xml>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</xml>",
    "utf16": '<?xml version="1.0" encoding="UTF-16"?><xml><Content>你好</Content></xml>'.encode("utf-16"),
    "latin1_declared": b'<?xml version="1.0" encoding="ISO-8859-1"?><xml><Content>\xe9</Content></xml>',
    "nul": b"<xml><Content>a\x00b</Content></xml>",
    "char_ref_nul": b"<xml><Content>a&#0;b</Content></xml>",
    "empty": b"",
    "json": b'{"ToUserName": "gh"}',
}


@pytest.mark.parametrize("name", sorted(BOMBS))
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_wechat_bombs_and_xxe_are_400(wx: Any, name: str, encrypted: bool) -> None:
    h, client, engine = wx
    before = wechat_rows(engine)
    reply = await client.post(BOMBS[name], encrypted=encrypted, nonce=nonce())
    assert reply.status in (400, 413), (reply.status, reply.body)
    assert "passwd" not in reply.body and "root:" not in reply.body
    assert h.bot.messages == []
    assert wechat_rows(engine) == before


@FUZZ
@given(body=hs.one_of(hs.binary(max_size=600), hs.sampled_from(list(BOMBS.values())),
                      hs.text(max_size=200).map(lambda t: f"<xml>{t}</xml>".encode("utf-8", "surrogatepass"))),
       encrypted=hs.booleans())
async def test_wechat_random_bodies(wx: Any, body: bytes, encrypted: bool) -> None:
    h, client, engine = wx
    before, heard = wechat_rows(engine), len(h.bot.messages)
    reply = await client.post(body, encrypted=encrypted, nonce=nonce())
    assert reply.status < 500, (reply.status, reply.body, body[:80])
    assert reply.status in (400, 413), (reply.status, reply.body)  # none of these is a message
    assert json.loads(reply.body)["error"]
    assert len(h.bot.messages) == heard and wechat_rows(engine) == before


# --- WeChat: messages with hostile fields ---------------------------------------------------------

# what an XML 1.0 document can carry at all (WeChat cannot send anything else)
XML_TEXT = hs.text(alphabet=hs.characters(min_codepoint=0x20, max_codepoint=0x10FFFF, exclude_categories=("Cs",),
                                          exclude_characters="\ufffe\uffff"), max_size=60)
_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@FUZZ
@given(msg_type=hs.sampled_from(["text", "image", "voice", "location", "event", "video", "link", "TEXT", "x" * 33,
                                 "", "text\u3000"]),
       content=hs.one_of(XML_TEXT, hs.sampled_from([t for t in NASTY_TEXT if not _NOT_IN_XML.search(t)])),
       extra=hs.dictionaries(hs.sampled_from(["Location_X", "Location_Y", "Label", "MediaId", "Recognition",
                                              "Event", "EventKey", "CreateTime", "MsgId"]),
                             hs.one_of(XML_TEXT, hs.integers(-(10**40), 10**40).map(str),
                                       hs.sampled_from(["nan", "inf", "-inf", "1e309", "９０", "-0", ""])),
                             max_size=4),
       encrypted=hs.booleans())
async def test_wechat_messages_with_hostile_fields(wx: Any, msg_type: str, content: str, extra: dict[str, str],
                                                   encrypted: bool) -> None:
    h, client, engine = wx
    seen_ids = h.__dict__.setdefault("fuzz_msg_ids", set())
    openid = "o" + uuid.uuid4().hex[:27]
    fields: dict[str, Any] = {"ToUserName": ACCOUNT, "FromUserName": openid, "CreateTime": 1_700_000_000,
                              "MsgType": msg_type, "Content": content, "MsgId": next_msg_id()}
    fields.update(extra)
    before, heard = wechat_rows(engine), len(h.bot.messages)
    reply = await client.post(xml_message(**fields), encrypted=encrypted, nonce=nonce())
    assert reply.status < 500, (reply.status, reply.body)
    after = wechat_rows(engine)
    if reply.status != 200:
        assert reply.status == 400 and json.loads(reply.body)["error"] == "bad_message"
        assert after == before and len(h.bot.messages) == heard
        return
    msg_id = str(fields["MsgId"]).strip()
    if msg_type.strip().lower() != "event" and re.match(r"^\d{1,32}$", msg_id) and msg_id in seen_ids:
        # a MsgId this channel has already seen (hypothesis repeats values): a duplicate, never again;
        # its signed request's (timestamp, nonce) is still recorded, so that it cannot be replayed
        assert {k: v for k, v in after.items() if k != "wechat_nonces"} == \
            {k: v for k, v in before.items() if k != "wechat_nonces"}
        assert after["wechat_nonces"] - before["wechat_nonces"] <= 1 and len(h.bot.messages) == heard
        return
    seen_ids.add(msg_id)
    # accepted: recorded once, heard at most once (some types get a polite reply instead)
    assert after["wechat_inbound"] == before["wechat_inbound"] + 1
    assert len(h.bot.messages) - heard <= 1
    if len(h.bot.messages) > heard:
        message = h.bot.messages[-1]
        assert message.sender_id == openid
        cleaned = clean_message(content)  # controls, CR/LF, bidi overrides: spaces (issue 13 item 15)
        if msg_type.lower() == "text" and cleaned.strip() and not cleaned.startswith("/"):
            assert message.text == cleaned.strip() or message.text == cleaned
    assert reply.is_success or reply.content  # "success" or a reply WeChat can show
    # the same message again (WeChat's retry): answered, never processed or recorded twice
    again_heard, again_rows = len(h.bot.messages), wechat_rows(engine)
    again = await client.post(xml_message(**fields), encrypted=encrypted, nonce=nonce())
    assert again.status == 200
    assert len(h.bot.messages) == again_heard
    assert wechat_rows(engine)["wechat_inbound"] == again_rows["wechat_inbound"]


# --- the REST channel ---------------------------------------------------------------------------

@pytest_asyncio.fixture
async def rest():  # noqa: ANN201
    bot = RecordingBot()
    channel = RestInput(limiter=RateLimiter(10**9, 60, "fuzz", redis_url=""))
    server, base = await serve(channel, bot, "/webhooks/rest")
    async with aiohttp.ClientSession() as session:
        yield bot, session, base + "/webhooks/rest/webhook"
    await close(server)


JSON_VALUE = hs.recursive(
    hs.none() | hs.booleans() | hs.integers(-(10**40), 10**40) | hs.floats(allow_nan=False) | hostile_text(),
    lambda inner: hs.lists(inner, max_size=3) | hs.dictionaries(hs.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@FUZZ
@given(sender=hs.one_of(hs.sampled_from(["resident-1", "a" * 128, "a" * 129, "", "x y", "微信用户", "o\x00"]),
                        JSON_VALUE),
       message=hs.one_of(hostile_text(), JSON_VALUE, hs.just("堵" * (MAX_MESSAGE_CHARS + 1))),
       metadata=JSON_VALUE)
async def test_rest_json_fields(rest: Any, sender: Any, message: Any, metadata: Any) -> None:
    bot, session, url = rest
    body = json.dumps({"sender": sender, "message": message, "metadata": metadata}).encode()
    heard = len(bot.messages)
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        status, answer = r.status, await r.json()
    assert status < 500, (status, answer)
    if status != 200:
        assert status in (400, 413) and answer["error"] and answer["message"]
        assert len(bot.messages) == heard
        return
    assert isinstance(sender, str) and isinstance(message, str) and len(bot.messages) == heard + 1
    got = bot.messages[-1]
    assert got.sender_id == "rest:" + sender  # bot/security/identity.py
    # "\x00" is cleaned to " ": then it is empty; Rasa's UserMessage strips the text
    cleaned = resident_text(clean_message(message))
    assert got.text == (cleaned.strip() if cleaned.strip() else EMPTY_MESSAGE)
    json.dumps(got.text).encode("utf-8")  # storable: no lone surrogate, no NUL
    assert "\x00" not in got.text


@FUZZ
@given(body=hs.one_of(hs.binary(max_size=400), hs.sampled_from([
    b"", b"{", b"[]", b"null", b"1e999999", b'{"sender": "a", "message": "x"' , b"\xef\xbb\xbf{}",
    '{"sender": "a", "message": "你好"}'.encode("gbk"), '{"sender": "a", "message": "你好"}'.encode("utf-16"),
    b'{"sender": "a", "message": "\\ud800"}', b'{"sender": "a", "message": "a\\u0000b"}',
    b'{"a": ' * 2000 + b"1" + b"}" * 2000,
])), ctype=hs.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
async def test_rest_raw_bodies(rest: Any, body: bytes, ctype: str) -> None:
    bot, session, url = rest
    heard = len(bot.messages)
    async with session.post(url, data=body, headers={"Content-Type": ctype} if ctype else {}) as r:
        status, text = r.status, await r.text()
    assert status < 500, (status, text, body[:80])
    if status == 200:  # only a JSON object with a good sender and a string message
        parsed = json.loads(body)
        assert isinstance(parsed, dict) and len(bot.messages) == heard + 1
        assert "\x00" not in bot.messages[-1].text
        bot.messages[-1].text.encode("utf-8")  # no lone surrogate left
    else:
        assert status in (400, 413) and json.loads(text)["error"]
        assert len(bot.messages) == heard


async def test_regression_rest_nul_and_surrogate_are_cleaned(rest: Any) -> None:
    """Before: "a\\u0000b" and "\\ud800" went to the bot as typed (PostgreSQL refuses NUL
    when a ticket is filed; a lone surrogate cannot be encoded as UTF-8 at all)."""
    bot, session, url = rest
    for raw, expected in ((b'{"sender": "r1", "message": "a\\u0000b"}', "a b"),
                          (b'{"sender": "r1", "message": "x\\ud800y"}', "x\ufffdy")):
        async with session.post(url, data=raw, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 200
        assert bot.messages[-1].text == expected


# --- the Socket.IO widget channel ------------------------------------------------------------

SOCKET_PAYLOADS: list = [
    None, 1, 1e309, "text", ["message", "x"], {}, {"message": None}, {"message": 12345678901234567890},
    {"message": ["a"]}, {"message": {"a": 1}}, {"message": "x", "session_id": None},
    {"message": "x", "session_id": "resident-1"}, {"message": "x", "session_id": "A" * 32},
    {"message": "x", "session_id": "../" * 20}, {"message": "堵" * (MAX_MESSAGE_CHARS + 1)},
    {"message": "x", "metadata": "{not json"}, {"message": "x", "metadata": [1, 2]},
]


async def test_socketio_hostile_payloads() -> None:
    """Anything a browser (or a script) can emit: ignored or answered politely; the session
    keeps working; only strings reach the bot, cleaned; nobody can pick another's sender id.
    (Found: a session_request emitted without data raised TypeError in the handler and the
    page never got a session; now it gets a fresh one.)"""
    import asyncio

    import socketio

    from bot.channels.common import MSG_TOO_LONG as TOO_LONG
    from bot.channels.socketio import SocketIOInput

    bot = RecordingBot()
    channel = SocketIOInput(user_message_evt="user_uttered", bot_message_evt="bot_uttered", session_persistence=True)
    channel.limiter = RateLimiter(10**6, 60, "sio-fuzz", redis_url="")
    server, base = await serve(channel, bot, "/webhooks/socketio")
    client = socketio.AsyncClient()
    confirmed: list = []
    answers: list = []
    client.on("session_confirm", lambda sid: confirmed.append(sid))
    client.on("bot_uttered", lambda data: answers.append(data.get("text")))
    try:
        await client.connect(base, socketio_path="/socket.io", transports=["polling"])
        for request in (None, 5, "x", {"session_id": "resident-1"}, {"session_id": ["a"]}, {"session_id": "a" * 32}):
            await client.emit("session_request", request)
            await asyncio.sleep(0.05)
        for _ in range(50):
            if len(confirmed) == 6:
                break
            await asyncio.sleep(0.1)
        assert len(confirmed) == 6 and all(re.fullmatch(r"[0-9a-f]{32}", s) for s in confirmed)
        # the server issues session ids: a made-up one (even of the right shape) is replaced
        assert "a" * 32 not in confirmed and "resident-1" not in confirmed
        session = confirmed[-1]
        for payload in SOCKET_PAYLOADS:
            if isinstance(payload, dict) and "session_id" not in payload:
                payload = {**payload, "session_id": session}
            await client.emit("user_uttered", payload)
            await asyncio.sleep(0.05)  # one packet per long-poll POST (engine.io refuses > 16 in one)
        await client.emit("user_uttered", {"message": "a\x00b\ud800c", "session_id": session})
        await asyncio.sleep(0.05)
        await client.emit("user_uttered", {"message": "还在吗", "session_id": session})
        for _ in range(50):
            if "收到：还在吗" in answers:
                break
            await asyncio.sleep(0.1)
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 2)
        except asyncio.TimeoutError:
            pass
        await close(server)
    # only the string messages with a valid session reached the bot, in order, cleaned
    assert [(m.sender_id, m.text) for m in bot.messages] == [
        (session, "x"), (session, "x"), (session, "a b\ufffdc"), (session, "还在吗")]
    assert answers.count(TOO_LONG) == 1 and answers[-1] == "收到：还在吗"

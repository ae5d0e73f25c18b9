"""The published protocol: signatures, safe-mode crypto, URL verification, request checks,
hostile bodies. Requests are signed/encrypted by tests/wechat/wxclient.py (independent of
the channel's crypto); both are checked against published vectors."""
from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from bot.channels.wechat.crypto import CryptoError, MessageCrypto, sha1_signature
from tests.wechat.conftest import AES_KEY, APPID
from tests.wechat.wxclient import ACCOUNT, WxAes, text_msg, wx_sign, xml_fields, xml_message

# --- published vectors (WeChat's WeCom examples, as used in wechatpy's test suite) ---------
V_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
V_TOKEN = "123456"
V_ID = "wx49f0ab532d5d035a"
V_ECHO = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
V_ENCRYPT = ("RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv"
             "283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cv"
             "kKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFx"
             "dgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6G"
             "DnTbcX2e8K9QaNWHp91eBdCRxthuL0=")
V_REPLY_XML = ("<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n"
               "<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n"
               "<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>")
V_REPLY_ENCRYPT = ("9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZ"
                   "gURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WI"
                   "Xrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmm"
                   "NOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3")


def test_published_signatures():
    assert sha1_signature("test", "123456", "test", "rust") == "d6056f2bb3ad3e30f4afa5ef90cc9ddcdc7b7b27"
    assert wx_sign("test", "123456", "test", "rust") == "d6056f2bb3ad3e30f4afa5ef90cc9ddcdc7b7b27"
    assert sha1_signature(V_TOKEN, "1411443780", "437374425", V_ECHO) == "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96"
    assert sha1_signature(V_TOKEN, "1411525903", "461056294", V_ENCRYPT) == "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
    assert sha1_signature(V_TOKEN, "1411525903", "461056294", V_REPLY_ENCRYPT) == \
        "407518b7649e86ef23978113f92d27afa9296533"


def test_published_ciphertexts_both_implementations():
    channel = MessageCrypto(V_KEY, V_ID)
    tester = WxAes(V_KEY, V_ID)
    for impl_open in (channel.decrypt, lambda b: tester.open(b)[0]):
        fields = xml_fields(impl_open(V_ENCRYPT).decode())
        assert fields["Content"] == "test" and fields["FromUserName"] == "messense"
        assert impl_open(V_ECHO).isdigit()
    fixed = b"1234567890123456"
    assert channel.encrypt(V_REPLY_XML.encode(), fixed) == V_REPLY_ENCRYPT
    assert tester.seal(V_REPLY_XML.encode(), fixed) == V_REPLY_ENCRYPT
    assert MessageCrypto(V_KEY, "rust").encrypt(b"test", fixed) == "9s4gMv99m88kKTh/H8IdkNiFGeG9pd7vNWl50fGRWXY="


def _raw_aes(key: str, data: bytes, decrypt: bool) -> bytes:
    import base64

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    k = base64.b64decode(key + "=")
    c = Cipher(algorithms.AES(k), modes.CBC(k[:16]))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


@pytest.mark.parametrize("size", [0, 1, 5, 6, 7, 37, 38, 39])  # 16+4+size+18 (the AppID) around 64
def test_padding_is_to_32_bytes_as_wechat_does(size):
    """WeChat pads to 32-byte blocks (1..32 bytes of value n; a whole block when aligned),
    not AES's 16: the bytes on the wire must be exactly those."""
    import base64

    fixed = b"1234567890123456"
    raw = _raw_aes(V_KEY, base64.b64decode(MessageCrypto(V_KEY, V_ID).encrypt(b"x" * size, fixed)), decrypt=True)
    unpadded = 16 + 4 + size + len(V_ID)
    pad = 32 - unpadded % 32
    assert len(raw) == unpadded + pad and len(raw) % 32 == 0 and raw[unpadded:] == bytes([pad]) * pad


def test_ciphertext_aligned_to_16_only_is_still_read():
    """WeChat's samples read any padding of 1..32 bytes, also on a ciphertext of an odd
    number of 16-byte blocks; so does the channel. Bad padding bytes are refused."""
    import base64
    import struct

    xml = b"<xml/>"
    body = b"r" * 16 + struct.pack(">I", len(xml)) + xml + V_ID.encode()  # 44 bytes
    good = base64.b64encode(_raw_aes(V_KEY, body + bytes([4]) * 4, decrypt=False)).decode()  # 48 = 3 x 16
    assert MessageCrypto(V_KEY, V_ID).decrypt(good) == xml
    bad = base64.b64encode(_raw_aes(V_KEY, body + b"\x03\x04\x04\x04", decrypt=False)).decode()
    with pytest.raises(CryptoError, match="bad_padding"):
        MessageCrypto(V_KEY, V_ID).decrypt(bad)


@settings(max_examples=60, deadline=None)
@given(xml=hs.binary(max_size=300), prefix=hs.binary(min_size=16, max_size=16))
def test_crypto_round_trips_between_implementations(xml, prefix):
    channel, tester = MessageCrypto(AES_KEY, APPID), WxAes(AES_KEY, APPID)
    assert channel.decrypt(tester.seal(xml, prefix)) == xml
    assert tester.open(channel.encrypt(xml)) == (xml, APPID.encode())


def test_decrypt_refuses_tampering():
    channel = MessageCrypto(AES_KEY, APPID)
    with pytest.raises(CryptoError, match="appid_mismatch"):
        channel.decrypt(WxAes(AES_KEY, "wxSOMEONEELSE0000").seal(b"<xml/>"))
    with pytest.raises(CryptoError, match="bad_base64"):
        channel.decrypt("not base64 at all!")
    with pytest.raises(CryptoError, match="bad_length"):
        channel.decrypt("QUJD")  # 3 bytes
    import base64

    raw = bytearray(base64.b64decode(WxAes(AES_KEY, APPID).seal(b"<xml/>")))
    raw[-1] ^= 0x55  # the last block decrypts to garbage: the padding cannot check out
    with pytest.raises(CryptoError):
        channel.decrypt(base64.b64encode(bytes(raw)).decode())
    with pytest.raises(ValueError):
        MessageCrypto("too-short", APPID)


# --- URL verification ------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_url_verification(h):
    srv = await h.channel()
    wx = h.wechat(srv)
    assert await wx.verify("5927782489442352469") == (200, "5927782489442352469")
    status, _ = await wx.verify("123", signature=wx_sign("wrong", "1", "2"))
    assert status == 403
    assert (await wx.verify("123", omit=("signature",)))[0] == 403
    assert (await wx.verify("123", omit=("timestamp",)))[0] == 403
    assert (await wx.verify("123", timestamp=int(time.time()) - 301))[0] == 403
    assert (await wx.verify("<script>"))[0] == 400


@pytest.mark.asyncio
async def test_unconfigured_channel_answers_503(h):
    srv = await h.channel(token="", appid="")
    wx = h.wechat(srv)
    assert (await wx.verify("1"))[0] == 503
    reply = await wx.post(text_msg("oUser1", "你好"))
    assert reply.status == 503 and h.bot.messages == []


# --- signed POSTs, plain mode ---------------------------------------------------------------------
@pytest.mark.asyncio
async def test_plain_round_trip(h):
    srv = await h.channel(mode="plain", encoding_aes_key="")
    reply = await h.wechat(srv).post(text_msg("oResidentPlain01", "楼下有人遛狗不牵绳"))
    assert reply.status == 200
    assert reply.fields["ToUserName"] == "oResidentPlain01"
    assert reply.fields["FromUserName"] == ACCOUNT
    assert reply.fields["MsgType"] == "text"
    assert reply.fields["Content"] == "收到：楼下有人遛狗不牵绳"
    assert abs(int(reply.fields["CreateTime"]) - time.time()) < 10
    [msg] = h.bot.messages
    assert msg.sender_id == "oResidentPlain01" and msg.input_channel == "wechat"
    assert msg.metadata["wechat"]["msg_type"] == "text"


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["bad", "missing", "stale", "future"])
async def test_post_signature_refused(h, how):
    srv = await h.channel(mode="plain", encoding_aes_key="")
    wx = h.wechat(srv)
    body = text_msg("oResident000001", "你好")
    if how == "bad":
        reply = await wx.post(body, bad="signature")
    elif how == "missing":
        reply = await wx.post(body, bad="missing")
    elif how == "stale":
        reply = await wx.post(body, timestamp=int(time.time()) - 301)
    else:
        reply = await wx.post(body, timestamp=int(time.time()) + 301)
    assert reply.status == 403
    assert h.bot.messages == []


# --- safe mode -------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_safe_mode_round_trip(h):
    srv = await h.channel(mode="safe")
    wx = h.wechat(srv)
    reply = await wx.post(text_msg("oResidentSafe001", "单元门贴满小广告"), encrypted=True)
    assert reply.status == 200
    assert "<Encrypt>" in reply.body and "单元门" not in reply.body  # nothing in clear
    # wxclient.open_reply checked MsgSignature and AppID before reading:
    assert reply.fields["ToUserName"] == "oResidentSafe001"
    assert reply.fields["FromUserName"] == ACCOUNT
    assert reply.fields["Content"] == "收到：单元门贴满小广告"
    assert h.bot.texts == ["单元门贴满小广告"]


@pytest.mark.asyncio
async def test_safe_mode_refusals(h):
    srv = await h.channel(mode="safe")
    wx = h.wechat(srv)
    assert (await wx.post(text_msg("oResidentSafe002", "你好"), encrypted=True, bad="msg_signature")).status == 403
    assert (await wx.post(text_msg("oResidentSafe002", "你好"), encrypted=True, bad="missing")).status == 403
    # a plain request to a safe-only account
    assert (await wx.post(text_msg("oResidentSafe002", "你好"), encrypted=False)).status == 403
    # encrypted for another AppID (correctly signed)
    other = h.wechat(srv, appid="wxSOMEONEELSE0000")
    assert (await other.post(text_msg("oResidentSafe002", "你好"), encrypted=True)).status == 403
    # encrypted with another key
    stranger = h.wechat(srv, encoding_aes_key="A" * 43)
    assert (await stranger.post(text_msg("oResidentSafe002", "你好"), encrypted=True)).status in (400, 403)
    assert h.bot.messages == []


@pytest.mark.asyncio
async def test_compatible_mode_takes_both(h):
    srv = await h.channel(mode="compatible")
    wx = h.wechat(srv)
    plain = await wx.post(text_msg("oResidentBoth001", "一"), encrypted=False)
    safe = await wx.post(text_msg("oResidentBoth001", "二"), encrypted=True)
    assert plain.content == "收到：一" and "<Encrypt>" not in plain.body
    assert safe.content == "收到：二" and "<Encrypt>" in safe.body


# --- hostile bodies ---------------------------------------------------------------------------------
BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><ToUserName>gh_x</ToUserName><FromUserName>oAttacker</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh_x</ToUserName><FromUserName>oAttacker</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId></xml>"""
DTD = b"""<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://evil.example/x.dtd">
<xml><ToUserName>gh_x</ToUserName><FromUserName>oAttacker</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>hi</Content><MsgId>3</MsgId></xml>"""
MALFORMED = b"<xml><ToUserName>gh_x</ToUserName><FromUserName>oAttacker"
GBK = "<xml><ToUserName>gh_x</ToUserName><FromUserName>oAttacker</FromUserName><CreateTime>1</CreateTime>" \
      "<MsgType>text</MsgType><Content>下水道堵了</Content><MsgId>4</MsgId></xml>".encode("gbk")
DECLARED_GBK = b'<?xml version="1.0" encoding="GBK"?><xml><ToUserName>gh_x</ToUserName></xml>'
NOT_XML_ROOT = b"<message><Content>hi</Content></message>"


@pytest.mark.asyncio
@pytest.mark.parametrize("name,body,error", [
    ("bomb", BOMB, "forbidden_xml"), ("xxe", XXE, "forbidden_xml"), ("dtd", DTD, "forbidden_xml"),
    ("malformed", MALFORMED, "malformed_xml"), ("gbk", GBK, "not_utf8"), ("declared_gbk", DECLARED_GBK, "not_utf8"),
    ("wrong_root", NOT_XML_ROOT, "malformed_xml"),
])
@pytest.mark.parametrize("encrypted", [False, True])
async def test_hostile_bodies_are_400(h, name, body, error, encrypted):
    srv = await h.channel(mode="compatible")
    reply = await h.wechat(srv).post(body, encrypted=encrypted)
    assert reply.status == 400, reply.body
    assert error in reply.body
    assert h.bot.messages == []


@pytest.mark.asyncio
async def test_oversized_body_is_413(h):
    srv = await h.channel(mode="plain", encoding_aes_key="")
    reply = await h.wechat(srv).post(text_msg("oResident000002", "堵" * 25_000))  # 75 KB of UTF-8
    assert reply.status == 413
    assert h.bot.messages == []


@pytest.mark.asyncio
async def test_bad_fields_are_400(h):
    srv = await h.channel(mode="plain", encoding_aes_key="")
    wx = h.wechat(srv)
    bad_openid = xml_message(ToUserName=ACCOUNT, FromUserName="o<script>", CreateTime=1, MsgType="text",
                             Content="x", MsgId=5)
    no_type = xml_message(ToUserName=ACCOUNT, FromUserName="oResident", CreateTime=1, Content="x", MsgId=6)
    for body in (bad_openid, no_type):
        assert (await wx.post(body)).status == 400
    assert h.bot.messages == []


# --- replays ------------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_replayed_signature_with_another_body_is_refused(h):
    srv = await h.channel(mode="plain", encoding_aes_key="")
    wx = h.wechat(srv)
    query, body = wx.signed(text_msg("oResidentReplay1", "第一条"), encrypted=False)
    first = await wx.send(query, body)
    assert first.content == "收到：第一条"
    # the same signed query (captured), another body: plain mode does not sign the body
    forged = await wx.send(query, text_msg("oResidentReplay1", "伪造的消息"))
    assert forged.status == 403 and "replay" in forged.body
    # the very same request again (what a retry looks like): answered, not processed again
    again = await wx.send(query, body)
    assert again.status == 200 and again.content == "收到：第一条"
    assert h.bot.texts == ["第一条"]


@pytest.mark.asyncio
async def test_oversized_body_without_content_length_is_413(h):
    """Chunked transfer: the channel stops reading after 64 KiB."""
    srv = await h.channel(mode="plain", encoding_aes_key="")
    wx = h.wechat(srv)
    query, _ = wx.signed(b"", encrypted=False)

    async def chunks():
        for _ in range(40):  # 40 × 4 KiB = 160 KiB
            yield b"<" * 4096

    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(wx.url, params=query, data=chunks()) as r:
            assert r.status == 413
    assert h.bot.messages == []

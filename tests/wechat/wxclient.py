"""What WeChat's servers do, written from the published protocol and independently of
bot/channels/wechat/crypto.py (a shared bug must not hide): sign and encrypt the
requests, decrypt and check the replies.

Deliberately different code paths from the channel: padding via cryptography's PKCS7
(block 256 bits) over the whole message (the channel unpads only the last block; the raw
padding bytes are checked in test_wechat_protocol.py), the length via int.to_bytes, XML
via xml.etree (the test trusts itself).
"""
from __future__ import annotations

import base64
import hashlib
import os
import random
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def wx_sign(*parts: str) -> str:
    items = list(parts)
    items.sort()
    h = hashlib.sha1()
    for item in items:
        h.update(item.encode())
    return h.hexdigest()


class WxAes:
    """AES-256-CBC as WeChat does it: key = b64(EncodingAESKey + '='), IV = key[:16], PKCS#7/32."""

    def __init__(self, encoding_aes_key: str, appid: str):
        self.key = base64.b64decode(encoding_aes_key + "=")
        assert len(self.key) == 32
        self.appid = appid.encode()

    def seal(self, xml: bytes, prefix: bytes | None = None) -> str:
        prefix = prefix if prefix is not None else os.urandom(16)
        body = prefix + len(xml).to_bytes(4, "big") + xml + self.appid
        padder = padding.PKCS7(256).padder()
        padded = padder.update(body) + padder.finalize()
        enc = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).encryptor()
        return base64.b64encode(enc.update(padded) + enc.finalize()).decode()

    def open(self, b64: str) -> tuple[bytes, bytes]:
        """→ (xml, appid)"""
        raw = base64.b64decode(b64)
        dec = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).decryptor()
        padded = dec.update(raw) + dec.finalize()
        unpadder = padding.PKCS7(256).unpadder()
        body = unpadder.update(padded) + unpadder.finalize()
        n = int.from_bytes(body[16:20], "big")
        return body[20:20 + n], body[20 + n:]


def xml_message(**fields: object) -> bytes:
    """<xml> with one child per field (strings in CDATA, numbers bare), as WeChat sends."""
    parts = ["<xml>"]
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"<{name}>{value}</{name}>")
        else:
            parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


def xml_fields(body: str) -> dict[str, str]:
    root = ET.fromstring(body)
    return {child.tag: (child.text or "") for child in root}


_msg_ids = iter(range(24_000_000_000_000_000, 25_000_000_000_000_000, 7919))


def next_msg_id() -> int:
    return next(_msg_ids)


ACCOUNT = "gh_qingcheng12345"


def text_msg(openid: str, content: str, msg_id: int | None = None, create_time: int | None = None) -> bytes:
    return xml_message(ToUserName=ACCOUNT, FromUserName=openid, CreateTime=create_time or int(time.time()),
                       MsgType="text", Content=content, MsgId=msg_id or next_msg_id())


def image_msg(openid: str, media_id: str, msg_id: int | None = None) -> bytes:
    return xml_message(ToUserName=ACCOUNT, FromUserName=openid, CreateTime=int(time.time()), MsgType="image",
                       PicUrl=f"http://mmbiz.qpic.cn/{media_id}", MediaId=media_id, MsgId=msg_id or next_msg_id())


def location_msg(openid: str, lat: float, lng: float, label: str, msg_id: int | None = None) -> bytes:
    return xml_message(ToUserName=ACCOUNT, FromUserName=openid, CreateTime=int(time.time()), MsgType="location",
                       Location_X=lat, Location_Y=lng, Scale=15, Label=label, MsgId=msg_id or next_msg_id())


def voice_msg(openid: str, recognition: str | None, msg_id: int | None = None) -> bytes:
    return xml_message(ToUserName=ACCOUNT, FromUserName=openid, CreateTime=int(time.time()), MsgType="voice",
                       MediaId="voice-media-1", Format="amr", Recognition=recognition, MsgId=msg_id or next_msg_id())


def event_msg(openid: str, event: str, event_key: str | None = None, create_time: int | None = None) -> bytes:
    return xml_message(ToUserName=ACCOUNT, FromUserName=openid, CreateTime=create_time or int(time.time()),
                       MsgType="event", Event=event, EventKey=event_key)


@dataclass
class Reply:
    status: int
    body: str
    fields: dict[str, str] = field(default_factory=dict)  # the (decrypted) reply XML, if any
    elapsed: float = 0.0

    @property
    def content(self) -> str:
        return self.fields.get("Content", "")

    @property
    def is_success(self) -> bool:
        return self.status == 200 and self.body.strip() in ("success", "")


@dataclass
class WeChatServer:
    """Posts to a channel the way WeChat's servers would."""

    url: str  # …/webhooks/wechat/webhook
    token: str
    appid: str
    encoding_aes_key: str = ""
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.aes = WxAes(self.encoding_aes_key, self.appid) if self.encoding_aes_key else None

    def _stamp(self, timestamp: int | None, nonce: str | None) -> tuple[str, str]:
        ts = str(int(self.clock()) if timestamp is None else timestamp)
        return ts, nonce or str(random.randrange(10 ** 9, 10 ** 10))

    async def verify(self, echostr: str, signature: str | None = None, timestamp: int | None = None,
                     nonce: str | None = None, omit: tuple = ()) -> tuple[int, str]:
        ts, nonce = self._stamp(timestamp, nonce)
        params = {"signature": signature or wx_sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce,
                  "echostr": echostr}
        for k in omit:
            params.pop(k, None)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
            async with s.get(self.url, params=params) as r:
                return r.status, await r.text()

    def signed(self, body: bytes, encrypted: bool, timestamp: int | None = None, nonce: str | None = None,
               bad: str = "", prefix: bytes | None = None) -> tuple[dict[str, str], bytes]:
        """(query, body) exactly as WeChat sends them; `bad` spoils one part on purpose."""
        ts, nonce = self._stamp(timestamp, nonce)
        openid = "o" + hashlib.md5(body).hexdigest()[:27]
        query = {"signature": wx_sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce, "openid": openid}
        if bad == "signature":
            query["signature"] = wx_sign("not-the-token", ts, nonce)
        if encrypted:
            assert self.aes is not None
            enc = self.aes.seal(body, prefix)
            query.update(encrypt_type="aes", msg_signature=wx_sign(self.token, ts, nonce, enc))
            if bad == "msg_signature":
                query["msg_signature"] = wx_sign(self.token, ts, nonce, enc + "x")
            body = xml_message(ToUserName=ACCOUNT, Encrypt=enc)
        if bad == "missing":
            query.pop("signature")
            query.pop("msg_signature", None)
        return query, body

    async def send(self, query: dict[str, str], body: bytes, headers: dict[str, str] | None = None) -> Reply:
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            async with s.post(self.url, params=query, data=body, headers=headers or {"Content-Type": "text/xml"}) as r:
                text = await r.text()
                reply = Reply(r.status, text, elapsed=time.monotonic() - started)
        if reply.status == 200 and text.strip().startswith("<xml"):
            outer = xml_fields(text)
            if "Encrypt" in outer:
                reply.fields = self.open_reply(outer)
            else:
                reply.fields = outer
        return reply

    def open_reply(self, outer: dict[str, str]) -> dict[str, str]:
        """Check the reply's MsgSignature and AppID as WeChat does, then read it."""
        assert self.aes is not None
        expected = wx_sign(self.token, outer["TimeStamp"], outer["Nonce"], outer["Encrypt"])
        assert outer["MsgSignature"] == expected, "reply MsgSignature does not verify"
        xml, appid = self.aes.open(outer["Encrypt"])
        assert appid == self.appid.encode(), f"reply AppID {appid!r}"
        return xml_fields(xml.decode("utf-8"))

    async def post(self, body: bytes, encrypted: bool = False, **kw) -> Reply:
        query, data = self.signed(body, encrypted, **kw)
        return await self.send(query, data)

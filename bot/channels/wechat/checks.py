"""Every check a WeChat request passes before anything is stored or processed: signature,
timestamp window, encryption mode, safe XML, well-formed sender and message key. Pure:
no I/O; the clock's reading is an argument."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.channels.wechat.config import WeChatConfig
from bot.channels.wechat.crypto import CryptoError, MessageCrypto, signature_ok
from bot.channels.wechat.xmlio import BadXml, parse_message

OPENID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
NONCE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
TIMESTAMP = re.compile(r"^\d{1,12}$")
SIGNATURE = re.compile(r"^[0-9a-fA-F]{40}$")
ECHOSTR = re.compile(r"^[A-Za-z0-9_\-+/=]{1,512}$")
MSG_TYPE = re.compile(r"^[A-Za-z_]{1,32}$")
MEDIA_ID = re.compile(r"^[A-Za-z0-9_\-]{1,256}$")
COMMUNITY = re.compile(r"^\d{6,12}$")
MSG_ID = re.compile(r"^\d{1,32}$")


@dataclass
class HttpReply:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def error(status: int, code: str) -> HttpReply:
    return HttpReply(status, json.dumps({"error": code}), "application/json")


SUCCESS = HttpReply(200, "success")


@dataclass
class Inbound:
    fields: dict[str, str]
    openid: str
    account: str  # ToUserName: our account's id, the FromUserName of replies
    msg_type: str
    msg_key: str
    encrypted: bool


def mask(openid: str) -> str:
    return openid[:6] + "…" if openid else "?"


def mask_key(msg_key: str) -> str:
    """A message key for the log: an event's key holds the sender's openid (evt:<openid>:…)."""
    kind, _, rest = msg_key.partition(":")
    if kind != "evt":
        return msg_key
    openid, _, tail = rest.partition(":")
    return f"evt:{mask(openid)}:{tail}"


def stale(config: WeChatConfig, timestamp: str, now: float) -> bool:
    return abs(now - int(timestamp)) > config.timestamp_window


def verify_url(config: WeChatConfig, args: Mapping[str, str], now: float) -> HttpReply:
    """GET: WeChat checks that the server URL is ours (echostr back when signed by our token)."""
    if not config.enabled:
        return error(503, "wechat_not_configured")
    signature, timestamp, nonce = args.get("signature"), args.get("timestamp"), args.get("nonce")
    echostr = args.get("echostr") or ""
    if not (signature and timestamp and nonce) or not TIMESTAMP.match(timestamp) or not NONCE.match(nonce):
        return error(403, "bad_signature")
    if stale(config, timestamp, now):
        return error(403, "stale_timestamp")
    if not signature_ok((config.token, timestamp, nonce), signature):
        return error(403, "bad_signature")
    if not ECHOSTR.match(echostr):
        return error(400, "bad_echostr")
    return HttpReply(200, echostr)


def check_query(config: WeChatConfig, crypto: MessageCrypto | None, args: Mapping[str, str],
                now: float) -> tuple[HttpReply | None, bool]:
    """(refusal or None, encrypted?)"""
    timestamp, nonce = args.get("timestamp") or "", args.get("nonce") or ""
    signature = args.get("signature")
    encrypted = (args.get("encrypt_type") or "raw").lower() == "aes"
    if not TIMESTAMP.match(timestamp) or not NONCE.match(nonce):
        return error(403, "bad_signature"), encrypted
    if stale(config, timestamp, now):
        return error(403, "stale_timestamp"), encrypted
    mode = config.effective_mode
    if encrypted and crypto is None:
        return error(403, "encryption_not_configured"), encrypted
    if not encrypted and mode == "safe":
        return error(403, "encrypted_message_required"), encrypted
    if not encrypted or signature is not None:  # plain: required; safe: checked when sent
        if not signature or not SIGNATURE.match(signature) or \
                not signature_ok((config.token, timestamp, nonce), signature):
            return error(403, "bad_signature"), encrypted
    if encrypted:
        msg_signature = args.get("msg_signature") or ""
        if not SIGNATURE.match(msg_signature):
            return error(403, "bad_signature"), encrypted
    return None, encrypted


def open_message(config: WeChatConfig, crypto: MessageCrypto | None, args: Mapping[str, str], body: bytes,
                 encrypted: bool) -> HttpReply | dict[str, str]:
    """The message's fields (decrypted in safe mode), or the refusal."""
    try:
        outer = parse_message(body)
    except BadXml as exc:
        return error(400, exc.reason.split(":")[0])
    if not encrypted:
        return outer
    enc = outer.get("Encrypt")
    if not enc:
        return error(400, "missing_encrypt")
    if not signature_ok((config.token, args["timestamp"], args["nonce"], enc), args.get("msg_signature")):
        return error(403, "bad_signature")
    assert crypto is not None
    try:
        inner = crypto.decrypt(enc)
    except CryptoError as exc:
        return error(403 if exc.reason == "appid_mismatch" else 400, exc.reason)
    try:
        return parse_message(inner)
    except BadXml as exc:
        return error(400, exc.reason.split(":")[0])


def inbound_of(fields: dict[str, str], encrypted: bool) -> HttpReply | Inbound:
    """The message with its key (MsgId; events: sender + CreateTime + event), or a 400."""
    openid, account = fields.get("FromUserName", ""), fields.get("ToUserName", "")
    msg_type = fields.get("MsgType", "")
    create_time = fields.get("CreateTime", "")
    if not OPENID.match(openid) or not account or len(account) > 64 or not MSG_TYPE.match(msg_type) \
            or not TIMESTAMP.match(create_time):
        return error(400, "bad_message")
    msg_type = msg_type.lower()
    msg_id = fields.get("MsgId", "")
    if msg_type != "event" and MSG_ID.match(msg_id):
        key = f"msg:{msg_id}"
    else:
        what = (fields.get("Event") or msg_type)[:32]
        key = f"evt:{openid}:{create_time}:{what}"
    return Inbound(fields, openid, account, msg_type, key, encrypted)

"""WeChat Official Account (公众号) channel: a Rasa input/output channel.

    GET  /webhooks/wechat/webhook   server URL verification (signature, timestamp, nonce, echostr)
    POST /webhooks/wechat/webhook   messages and events, plain or safe (encrypted) mode

Every request is checked before anything else: body ≤ 64 KiB (413), timestamp within
5 minutes and a valid signature (403; msg_signature over Encrypt in safe mode), a
(timestamp, nonce) never seen with another body (403: replay), UTF-8 XML without DTDs,
entities or external references (400). Only then is the message recorded under its MsgId
(events: sender + CreateTime + event) with a unique key: WeChat's retries and concurrent
duplicates are answered from that row and never reach the bot twice, across workers and
restarts. The row is a lease while the bot works (renewed every few seconds): when the
worker dies, the lease runs out and WeChat's next retry, on any instance, takes the
message over — exactly one taker. A sender over 20 messages a minute is told to slow
down, nothing processed.

What reaches the bot:
  text          the text (a number or a button title answers the buttons last offered)
  location      the Label (our gazetteer extractor resolves it); lat/lng in metadata
  image         downloaded via the media API, checked by magic bytes, stored under
                var/uploads/ (outside any web root), passed as '/inform{"photo": "<ref>"}'
  voice         the Recognition text, if WeChat recognised any
  subscribe     '/inform{"community": "<code>"}' for EventKey qrscene_<code> (SCAN: <code>),
                remembered for the resident (wechat_residents.scene_community) and sent
                with each later message as metadata scene_community: the complaint form
                takes it as the location when the resident names none; else /greet
  other types   not processed; a polite "请发送文字" reply

WeChat waits 5 seconds: when the bot answers within `passive_budget` (4 s) the answer
goes back in the HTTP response (passive reply); otherwise "success" at once and the answer
follows through the customer-service API. WeChat does not retry after "success", so until
that answer is delivered the row ("async") keeps the message (wechat_inbound.replay_body)
and its worker's lease, renewed as for "processing": if the worker dies first, a recovery
sweep that every instance runs every few seconds (started and stopped with the server)
claims the row once its lease has expired — compare-and-set, one taker — re-runs the bot
on the stored message and sends the answer through the customer-service API, then marks
the row and clears the body. A living worker's row is never taken (its lease is renewed),
an answered one never replayed; after `replay_max_attempts` tries in all or
`replay_max_age_hours` (47 h: the answer must still fit in the 48-hour customer-service
window) the message is given up (status gave_up, body cleared, logged with the openid
masked). `send_to_resident(openid, text)` is the output
path for later notifications: a customer-service message within 48 hours of the
resident's last message, a template message otherwise (or when WeChat says 45015).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Set, Text, Tuple, Union

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

from bot.channels import wechat_store as st
from bot.rasa_ext.actions_down import ActionServerUnavailable
from bot.channels.rest import MSG_BUSY, MSG_KEPT
from bot.channels.wechat_api import DEFAULT_API_BASE, OUT_OF_WINDOW, Timeouts, WeChatApi, WeChatApiError, to_thread
from bot.channels.wechat_crypto import CryptoError, MessageCrypto, sha1_signature, signature_ok
from bot.channels.wechat_xml import BadXml, encrypted_envelope, parse_message, text_reply
from bot.paths import VAR_DIR
from bot.uploads import SNIFF_BYTES, PhotoUnreadable, save_photo, sniff_image, upload_folder
from bot.text import clean_message, normalise
from bot.rasa_ext.trackerstore import TrackerStoreUnavailable

log = logging.getLogger(__name__)

# What the resident reads (one place, Chinese).
MSG_TOO_FAST = "您发送太频繁了，请稍后再试。"
MSG_TEXT_ONLY = "您好，这类消息暂时无法处理，请发送文字描述您遇到的问题（也可以发图片或位置）。"
MSG_VOICE_UNCLEAR = "没有识别出您的语音内容，请发送文字。"
MSG_PHOTO_FAILED = "图片没有接收成功，请重新发送；不方便的话回复“跳过”。"
CHOOSE_HINT = "（回复数字即可选择）"

ENV = {
    "token": "QC_WECHAT_TOKEN",
    "encoding_aes_key": "QC_WECHAT_AES_KEY",
    "appid": "QC_WECHAT_APPID",
    "secret": "QC_WECHAT_SECRET",
}
API_BASE_ENV = "QC_WECHAT_API_BASE"
TEMPLATE_ENV = "QC_WECHAT_TEMPLATE_ID"
MODES = ("auto", "plain", "safe", "compatible")
EMPTY_MESSAGE = "\u200b"  # as in the REST channel: the NLU guard asks for text
MAX_REPLY_BYTES = 2000  # WeChat text messages: 2048 bytes
NOT_CONFIGURED = -3

_OPENID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_NONCE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_TIMESTAMP = re.compile(r"^\d{1,12}$")
_SIGNATURE = re.compile(r"^[0-9a-fA-F]{40}$")
_ECHOSTR = re.compile(r"^[A-Za-z0-9_\-+/=]{1,512}$")
_MSG_TYPE = re.compile(r"^[A-Za-z_]{1,32}$")
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_\-]{1,256}$")
_COMMUNITY = re.compile(r"^\d{6,12}$")
_XML_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# What of a message is kept for a replay (see _prepare): nothing else the XML carried.
REPLAY_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "Content", "Recognition",
                 "MediaId", "Location_X", "Location_Y", "Scale", "Label", "Event", "EventKey")


def mask(openid: str) -> str:
    return openid[:6] + "…" if openid else "?"


def mask_key(msg_key: str) -> str:
    """A message key for the log: an event's key holds the sender's openid (evt:<openid>:…)."""
    kind, _, rest = msg_key.partition(":")
    if kind != "evt":
        return msg_key
    openid, _, tail = rest.partition(":")
    return f"evt:{mask(openid)}:{tail}"


@dataclass
class WeChatConfig:
    token: str = ""
    appid: str = ""
    secret: str = ""
    encoding_aes_key: str = ""
    mode: str = "auto"  # auto: safe when an EncodingAESKey is set, else plain
    api_base: str = DEFAULT_API_BASE
    database_url: Optional[str] = None  # None: QC_DATABASE_URL / var/qingcheng.db, like the ticket store
    upload_dir: Path = VAR_DIR / "uploads"
    public_url: str = ""  # photo references: {public_url}/widget/photo/<name> (relative when empty)
    template_id: str = ""
    template_field: str = "content"
    passive_budget: float = 4.0
    rate_limit: int = 20
    rate_window: float = 60.0
    max_body: int = 64 * 1024
    timestamp_window: int = 300
    max_image_bytes: int = 10 * 1024 * 1024
    bot_timeout: float = 120.0
    processing_lease: float = 8.0  # < WeChat's retry spacing x2, so a retry can take over from a dead worker
    cs_window_hours: float = 48.0
    # the recovery sweep for async messages whose worker died before sending the answer
    replay_sweep_interval: float = 5.0
    replay_max_attempts: int = 4  # in all: the first try, takeovers and replays
    replay_max_age_hours: float = 47.0  # the answer must still fit in the 48-hour CS window
    timeouts: Timeouts = field(default_factory=Timeouts)

    @property
    def enabled(self) -> bool:
        return bool(self.token and self.appid)

    @property
    def effective_mode(self) -> str:
        if self.mode == "auto":
            return "safe" if self.encoding_aes_key else "plain"
        return self.mode

    @classmethod
    def from_credentials(cls, credentials: Optional[Mapping[str, Any]]) -> "WeChatConfig":
        """credentials.yml values: a direct value (`token: ${QC_WECHAT_TOKEN}`, expanded by
        Rasa) or the NAME of the environment variable holding it (`token_env: …`); the
        default names are QC_WECHAT_TOKEN / _AES_KEY / _APPID / _SECRET."""
        creds = dict(credentials or {})

        def secret(key: str) -> str:
            direct = creds.get(key)
            if direct:
                return str(direct).strip()
            return os.environ.get(str(creds.get(f"{key}_env") or ENV[key]), "").strip()

        def number(key: str, default: float) -> float:
            value = creds.get(key)
            return default if value in (None, "") else float(value)

        cfg = cls(
            token=secret("token"),
            appid=secret("appid"),
            secret=secret("secret"),
            encoding_aes_key=secret("encoding_aes_key"),
            mode=str(creds.get("mode") or "auto"),
            api_base=str(creds.get("api_base") or os.environ.get(API_BASE_ENV) or DEFAULT_API_BASE),
            database_url=creds.get("database_url") or None,
            upload_dir=Path(creds.get("upload_dir") or upload_folder()),
            public_url=str(creds.get("public_url") or os.environ.get("QC_PUBLIC_URL") or "").rstrip("/"),
            template_id=str(creds.get("template_id") or os.environ.get(TEMPLATE_ENV) or ""),
            template_field=str(creds.get("template_field") or "content"),
            passive_budget=number("passive_budget", 4.0),
            rate_limit=int(number("rate_limit", 20)),
            processing_lease=number("processing_lease", 8.0),
            replay_sweep_interval=number("replay_sweep_interval", 5.0),
            replay_max_attempts=int(number("replay_max_attempts", 4)),
            replay_max_age_hours=number("replay_max_age_hours", 47.0),
        )
        cfg.validate()
        return cfg

    @classmethod
    def from_env(cls) -> "WeChatConfig":
        return cls.from_credentials({})

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"wechat mode must be one of {MODES}, not {self.mode!r}")
        if self.enabled and self.effective_mode in ("safe", "compatible"):
            MessageCrypto(self.encoding_aes_key, self.appid)  # raises on a malformed key
        if not 0 < self.passive_budget < 5:
            raise ValueError("passive_budget must be under WeChat's 5 seconds")
        if self.processing_lease < 1:
            raise ValueError("processing_lease must be at least 1 second")
        if self.replay_sweep_interval <= 0 or self.replay_max_attempts < 2 or self.replay_max_age_hours <= 0:
            raise ValueError("replay_sweep_interval and replay_max_age_hours must be positive, "
                             "replay_max_attempts at least 2")


@dataclass
class HttpReply:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def _error(status: int, code: str) -> HttpReply:
    return HttpReply(status, json.dumps({"error": code}), "application/json")


SUCCESS = HttpReply(200, "success")


@dataclass
class SendResult:
    ok: bool
    via: Optional[str]  # "custom" | "template" | None
    errcode: int = 0
    errmsg: str = ""


@dataclass
class Inbound:
    fields: Dict[str, str]
    openid: str
    account: str  # ToUserName: our account's id, the FromUserName of replies
    msg_type: str
    msg_key: str
    encrypted: bool


@dataclass
class BotTurn:
    text: str
    metadata: Dict[str, Any]


@dataclass
class WorkResult:
    chunks: List[str]
    failed: bool = False
    buttons: Any = st.KEEP  # the buttons the bot offered (None: none), or KEEP when it was not asked


def render(messages: List[Dict[str, Any]]) -> Tuple[str, List[Dict[str, str]]]:
    """Rasa's messages → one text (buttons as numbered lines) and the buttons offered."""
    blocks: List[str] = []
    buttons: List[Dict[str, str]] = []
    for m in messages:
        lines = []
        if m.get("text"):
            lines.append(str(m["text"]).strip())
        if m.get("image"):
            lines.append(f"图片：{m['image']}")
        if m.get("attachment"):
            lines.append(str(m["attachment"]))
        for b in m.get("buttons") or []:
            title = str(b.get("title") or "").strip()
            if not title:
                continue
            buttons.append({"title": title, "payload": str(b.get("payload") or title)})
            lines.append(f"{len(buttons)}. {title}")
        if lines:
            blocks.append("\n".join(lines))
    if buttons:
        blocks.append(CHOOSE_HINT)
    return "\n\n".join(blocks), buttons


def chunks(text: str, limit: int = MAX_REPLY_BYTES) -> List[str]:
    """Split on line boundaries into pieces of at most `limit` UTF-8 bytes."""
    text = _XML_BAD_CHARS.sub("", text or "").strip()
    if not text:
        return []
    out: List[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line.encode("utf-8")) > limit:  # one very long line: cut by characters
            cut = limit // 3
            head, line = line[:cut], line[cut:]
            if current:
                out.append(current)
                current = ""
            out.append(head)
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode("utf-8")) > limit:
            out.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        out.append(current)
    return [c.strip("\n") for c in out if c.strip()]


def payload(intent: str, entities: Optional[Dict[str, str]] = None) -> str:
    return f"/{intent}" + (json.dumps(entities, ensure_ascii=False) if entities else "")


class WeChatGateway:
    """The channel's logic, independent of the web framework (the blueprint adapts it)."""

    def __init__(self, config: WeChatConfig, clock: Optional[Callable[[], float]] = None, engine: Any = None):
        self.config = config
        self.clock = clock or time.time
        mode = config.effective_mode
        self.crypto = MessageCrypto(config.encoding_aes_key, config.appid) \
            if config.enabled and mode in ("safe", "compatible") else None
        self._engine = engine
        self._store: Optional[st.WeChatStore] = None
        self._api: Optional[WeChatApi] = None
        self._init_lock = threading.Lock()
        self._tasks: Set[asyncio.Future] = set()
        self._sweeper: Optional[asyncio.Task] = None
        self._last_prune = 0.0
        # who holds a message's processing lease (wechat_inbound.lease_owner): this instance
        self.owner = f"{socket.gethostname()[:48]}:{os.getpid()}:{secrets.token_hex(4)}"

    # --- resources (created on first use: starting Rasa touches neither DB nor network) ---
    @property
    def store(self) -> st.WeChatStore:
        if self._store is None:
            with self._init_lock:
                if self._store is None:
                    engine = self._engine
                    if engine is None:
                        from bot.storage.engine import make_engine

                        engine = make_engine(self.config.database_url)
                    self._store = st.WeChatStore(engine, self.clock)
        return self._store

    @property
    def api(self) -> WeChatApi:
        if self._api is None:
            self._api = WeChatApi(self.config.api_base, self.config.appid, self.config.secret, self.store,
                                  self.clock, self.config.timeouts)
        return self._api

    async def db(self, method: str, *args: Any) -> Any:
        store = self.store

        def call() -> Any:
            store.ensure_tables()
            return getattr(store, method)(*args)

        return await to_thread(call)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Future:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start_sweeper(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        """Start the recovery sweep for async messages (idempotent; with the server)."""
        if not self.config.enabled or (self._sweeper is not None and not self._sweeper.done()):
            return
        self._sweeper = asyncio.ensure_future(self._sweep_loop(on_new_message))

    async def stop_sweeper(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and not sweeper.done():
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)

    async def _sweep_loop(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.config.replay_sweep_interval)
            try:
                await self.sweep(on_new_message)
                failing = False
            except Exception as exc:  # the store hiccuped: the next beat tries again
                if not failing:
                    log.exception("wechat: the async-message sweep failed")
                else:  # still failing: one line per beat, not a traceback every few seconds
                    log.warning("wechat: the async-message sweep failed again: %s", type(exc).__name__)
                failing = True

    async def sweep(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> List[asyncio.Future]:
        """One pass: claim the async messages whose worker died, replay each in the
        background; give up on those past the limits. Returns the replays started."""
        claimed, gave_up = await self.db("claim_async", self.owner, self.config.processing_lease,
                                         self.config.replay_max_attempts, self.config.replay_max_age_hours * 3600)
        for row in gave_up:
            log.error("wechat: %s for %s not answered and given up after %d attempt(s) (received %s): "
                      "its worker stopped before delivering the answer", mask_key(row["msg_key"]), mask(row["openid"]),
                      row["attempts"], row["received_at"])
        return [self._spawn(self._replay(row, on_new_message)) for row in claimed]

    async def _replay(self, row: Dict[str, Any], on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        body = row.get("replay_body") or {}
        fields = {k: str(v) for k, v in (body.get("fields") or {}).items()}
        inbound = Inbound(fields, row["openid"], fields.get("ToUserName", ""), row["msg_type"], row["msg_key"],
                          False)
        log.warning("wechat: %s for %s answered \"success\" but its worker stopped before the answer went out: "
                    "replaying it (attempt %d)", mask_key(inbound.msg_key), mask(inbound.openid), row["attempts"])
        settled: asyncio.Future = asyncio.get_running_loop().create_future()
        work = self._spawn(self._work(inbound, on_new_message))
        self._spawn(self._keep_lease(inbound.msg_key, work, settled))
        try:
            result: WorkResult = await work
            if not await self._still_ours(inbound, result):
                return
            if result.chunks:
                await self._deliver(inbound, result.chunks, mark=True)
            else:
                await self.db("finish", inbound.msg_key, st.IGNORED)
        except Exception:  # a background task: log; the lease runs out and a later sweep retries
            log.exception("wechat: replaying %s failed", mask_key(inbound.msg_key))
        finally:
            settled.set_result(None)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for background deliveries (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    # --- request checks ------------------------------------------------------------------
    def _stale(self, timestamp: str) -> bool:
        return abs(self.clock() - int(timestamp)) > self.config.timestamp_window

    def verify_url(self, args: Mapping[str, str]) -> HttpReply:
        if not self.config.enabled:
            return _error(503, "wechat_not_configured")
        signature, timestamp, nonce = args.get("signature"), args.get("timestamp"), args.get("nonce")
        echostr = args.get("echostr") or ""
        if not (signature and timestamp and nonce) or not _TIMESTAMP.match(timestamp) or not _NONCE.match(nonce):
            return _error(403, "bad_signature")
        if self._stale(timestamp):
            return _error(403, "stale_timestamp")
        if not signature_ok((self.config.token, timestamp, nonce), signature):
            return _error(403, "bad_signature")
        if not _ECHOSTR.match(echostr):
            return _error(400, "bad_echostr")
        return HttpReply(200, echostr)

    def _check_query(self, args: Mapping[str, str]) -> Tuple[Optional[HttpReply], bool]:
        """(refusal or None, encrypted?)"""
        timestamp, nonce = args.get("timestamp") or "", args.get("nonce") or ""
        signature = args.get("signature")
        encrypted = (args.get("encrypt_type") or "raw").lower() == "aes"
        if not _TIMESTAMP.match(timestamp) or not _NONCE.match(nonce):
            return _error(403, "bad_signature"), encrypted
        if self._stale(timestamp):
            return _error(403, "stale_timestamp"), encrypted
        mode = self.config.effective_mode
        if encrypted and self.crypto is None:
            return _error(403, "encryption_not_configured"), encrypted
        if not encrypted and mode == "safe":
            return _error(403, "encrypted_message_required"), encrypted
        if not encrypted or signature is not None:  # plain: required; safe: checked when sent
            if not signature or not _SIGNATURE.match(signature) or \
                    not signature_ok((self.config.token, timestamp, nonce), signature):
                return _error(403, "bad_signature"), encrypted
        if encrypted:
            msg_signature = args.get("msg_signature") or ""
            if not _SIGNATURE.match(msg_signature):
                return _error(403, "bad_signature"), encrypted
        return None, encrypted

    def _open(self, args: Mapping[str, str], body: bytes, encrypted: bool) -> Union[HttpReply, Dict[str, str]]:
        try:
            outer = parse_message(body)
        except BadXml as exc:
            return _error(400, exc.reason.split(":")[0])
        if not encrypted:
            return outer
        enc = outer.get("Encrypt")
        if not enc:
            return _error(400, "missing_encrypt")
        if not signature_ok((self.config.token, args["timestamp"], args["nonce"], enc), args.get("msg_signature")):
            return _error(403, "bad_signature")
        assert self.crypto is not None
        try:
            inner = self.crypto.decrypt(enc)
        except CryptoError as exc:
            return _error(403 if exc.reason == "appid_mismatch" else 400, exc.reason)
        try:
            return parse_message(inner)
        except BadXml as exc:
            return _error(400, exc.reason.split(":")[0])

    @staticmethod
    def _inbound(fields: Dict[str, str], encrypted: bool) -> Union[HttpReply, Inbound]:
        openid, account = fields.get("FromUserName", ""), fields.get("ToUserName", "")
        msg_type = fields.get("MsgType", "")
        create_time = fields.get("CreateTime", "")
        if not _OPENID.match(openid) or not account or len(account) > 64 or not _MSG_TYPE.match(msg_type) \
                or not _TIMESTAMP.match(create_time):
            return _error(400, "bad_message")
        msg_type = msg_type.lower()
        msg_id = fields.get("MsgId", "")
        if msg_type != "event" and re.match(r"^\d{1,32}$", msg_id):
            key = f"msg:{msg_id}"
        else:
            what = (fields.get("Event") or msg_type)[:32]
            key = f"evt:{openid}:{create_time}:{what}"
        return Inbound(fields, openid, account, msg_type, key, encrypted)

    # --- the POST ----------------------------------------------------------------------
    async def receive(self, args: Mapping[str, str], body: bytes, content_length: Optional[int],
                      on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> HttpReply:
        started = time.monotonic()
        if not self.config.enabled:
            return _error(503, "wechat_not_configured")
        if (content_length or 0) > self.config.max_body or len(body) > self.config.max_body:
            return _error(413, "body_too_large")
        refusal, encrypted = self._check_query(args)
        if refusal:
            return refusal
        opened = self._open(args, body, encrypted)
        if isinstance(opened, HttpReply):
            return opened
        inbound = self._inbound(opened, encrypted)
        if isinstance(inbound, HttpReply):
            return inbound
        admission = await self.db("admit", args["timestamp"], args["nonce"], hashlib.sha256(body).hexdigest(),
                                  inbound.msg_key, inbound.openid, inbound.msg_type, self.config.rate_window,
                                  self.owner, self.config.processing_lease)
        if admission.outcome == st.TAKEOVER:
            log.warning("wechat: %s was left processing by a worker that stopped; taken over", inbound.msg_key)
        if admission.outcome == st.REPLAY:
            log.warning("wechat: replayed signature with another body refused (%s)", mask(inbound.openid))
            return _error(403, "replay")
        if admission.outcome == st.DUPLICATE:
            return await self._duplicate(inbound, admission.row or {}, started)
        self._maybe_prune()
        if admission.recent > self.config.rate_limit:
            log.warning("wechat: %s over %d messages/min, not processed", mask(inbound.openid), self.config.rate_limit)
            await self.db("finish", inbound.msg_key, st.LIMITED, MSG_TOO_FAST)
            return self.passive(inbound, MSG_TOO_FAST)

        # the lease is kept while the bot works and, should the answer go out later, until it is sent
        settled: asyncio.Future = asyncio.get_running_loop().create_future()
        work = self._spawn(self._work(inbound, on_new_message))
        self._spawn(self._keep_lease(inbound.msg_key, work, settled))
        deferred: List[bool] = []  # set when the answer goes out later: late() settles then
        try:
            return await self._answer(inbound, work, settled, started, deferred)
        finally:
            if not deferred and not settled.done():
                settled.set_result(None)

    async def _answer(self, inbound: Inbound, work: asyncio.Future, settled: asyncio.Future, started: float,
                      deferred: List[bool]) -> HttpReply:
        remaining = self.config.passive_budget - (time.monotonic() - started)
        done, _ = await asyncio.wait({work}, timeout=max(0.0, remaining))
        if work in done:
            result: WorkResult = work.result()
            if not result.chunks:
                await self.db("finish", inbound.msg_key, st.IGNORED, None, inbound.openid, result.buttons)
                return SUCCESS
            await self.db("finish", inbound.msg_key, st.FAILED if result.failed else st.PASSIVE, result.chunks[0],
                          inbound.openid, result.buttons)
            if len(result.chunks) > 1:
                self._spawn(self._deliver(inbound, result.chunks[1:], mark=False))
            return self.passive(inbound, result.chunks[0])
        # Too slow for a passive reply: "success" now, the answer through the CS API later.
        # The row keeps the message and our lease until the answer is sent: should this
        # worker die first, the recovery sweep on any instance replays it.
        # (No await between the wait and the callback: the work cannot finish unnoticed.)
        body = {"fields": {k: v for k, v in inbound.fields.items() if k in REPLAY_FIELDS}}
        marked = self._spawn(self.db("defer", inbound.msg_key, self.owner, body, self.config.processing_lease))
        deferred.append(True)

        async def late(done_work: asyncio.Future) -> None:
            try:
                if done_work.cancelled():
                    return
                result = done_work.result()
                try:
                    if not await marked:  # the row says "async" before it can say "sent"
                        log.warning("wechat: %s is not ours any more: its answer is not sent from here",
                                    mask_key(inbound.msg_key))
                        return
                    if not await self._still_ours(inbound, result):
                        return
                except Exception:  # the store hiccuped: still deliver the answer
                    log.exception("wechat: recording %s failed", inbound.msg_key)
                await self._deliver(inbound, result.chunks, mark=True)
            finally:
                if not settled.done():
                    settled.set_result(None)

        work.add_done_callback(lambda t: self._spawn(late(t)))
        log.info("wechat: %s answered asynchronously", inbound.msg_key)
        return SUCCESS

    async def _still_ours(self, inbound: Inbound, result: WorkResult) -> bool:
        """Before a later answer goes out (async or replayed): record its buttons and renew
        the lease; False when another instance has taken the message over meanwhile."""
        if result.buttons is not st.KEEP:
            await self.db("set_buttons", inbound.openid, result.buttons)
        if await self.db("renew", inbound.msg_key, self.owner, self.config.processing_lease):
            return True
        log.warning("wechat: %s was taken over meanwhile: its answer is not sent from here", mask_key(inbound.msg_key))
        return False

    async def _keep_lease(self, msg_key: str, work: asyncio.Future, settled: asyncio.Future) -> None:
        """Renew the lease while the bot works on the message and, when the answer goes
        out later ("async"), until it is sent (`settled`): only a worker that stopped
        (crash, kill, restart) lets it expire."""
        every = self.config.processing_lease / 3
        while True:
            await asyncio.wait({work, settled}, timeout=every)
            if work.done() and settled.done():
                return
            try:
                if not await self.db("renew", msg_key, self.owner, self.config.processing_lease):
                    return  # answered meanwhile (or taken over)
            except Exception:  # the store hiccuped: try again at the next beat
                log.exception("wechat: renewing the lease on %s failed", msg_key)

    async def _duplicate(self, inbound: Inbound, row: Dict[str, Any], started: float) -> HttpReply:
        """A retry (or a concurrent copy): never processed again; answered like the first."""
        while row.get("status") == st.PROCESSING and time.monotonic() - started < self.config.passive_budget:
            await asyncio.sleep(0.1)
            row = await self.db("inbound", inbound.msg_key) or {"status": st.IGNORED}
        log.info("wechat: duplicate %s (%s)", inbound.msg_key, row.get("status"))
        if row.get("status") in (st.PASSIVE, st.LIMITED, st.FAILED) and row.get("reply"):
            return self.passive(inbound, row["reply"])
        return SUCCESS

    def passive(self, inbound: Inbound, text: str) -> HttpReply:
        now = str(int(self.clock()))
        xml = text_reply(inbound.openid, inbound.account, int(now), text)
        if not inbound.encrypted:
            return HttpReply(200, xml, "application/xml; charset=utf-8")
        assert self.crypto is not None
        encrypt = self.crypto.encrypt(xml.encode("utf-8"))
        nonce = str(secrets.randbelow(10 ** 10))
        signature = sha1_signature(self.config.token, now, nonce, encrypt)
        return HttpReply(200, encrypted_envelope(encrypt, signature, now, nonce), "application/xml; charset=utf-8")

    # --- what the bot hears ----------------------------------------------------------------
    async def _work(self, inbound: Inbound, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> WorkResult:
        try:
            turn = await self._prepare(inbound)
            if not isinstance(turn, BotTurn):
                return WorkResult(chunks(turn) if turn else [])
            collector = CollectingOutputChannel()
            message = UserMessage(turn.text, collector, inbound.openid, input_channel=WeChatInput.name(),
                                  metadata=turn.metadata)
            await asyncio.wait_for(on_new_message(message), timeout=self.config.bot_timeout)
            text, buttons = render(collector.messages)
            return WorkResult(chunks(text), buttons=buttons or None)
        except ActionServerUnavailable:  # the message is kept and handled first thing next time
            log.error("wechat: %s kept: the action server is down", inbound.msg_key)
            return WorkResult([MSG_KEPT], failed=True)
        except (Exception, TrackerStoreUnavailable):  # the bot or a store failed: the resident is asked to resend
            log.exception("wechat: %s failed", inbound.msg_key)
            return WorkResult([MSG_BUSY], failed=True)

    async def _prepare(self, inbound: Inbound) -> Union[BotTurn, str, None]:
        """A turn for the bot, a direct reply (str), or None (nothing to say)."""
        f = inbound.fields
        meta: Dict[str, Any] = {"msg_type": inbound.msg_type, "create_time": f.get("CreateTime")}
        if f.get("MsgId"):
            meta["msg_id"] = f["MsgId"]
        kind = inbound.msg_type
        if kind == "event":
            return await self._event(inbound, meta)
        if kind not in ("text", "voice", "location", "image"):
            return MSG_TEXT_ONLY
        resident = await self.db("resident", inbound.openid) or {}
        if resident.get("scene_community"):  # the community of the QR code they subscribed through
            meta["scene_community"] = resident["scene_community"]
        if kind == "text":
            return BotTurn(self._resident_text(resident, f.get("Content", "")), {"wechat": meta})
        if kind == "voice":
            recognition = (f.get("Recognition") or "").strip()
            if not recognition:
                return MSG_VOICE_UNCLEAR
            meta["voice"] = True
            return BotTurn(self._resident_text(resident, recognition), {"wechat": meta})
        if kind == "location":
            return self._location(f, meta)
        return await self._image(inbound, meta)

    @staticmethod
    def _resident_text(resident: Mapping[str, Any], text: str) -> str:
        text = clean_message(text)  # controls, CR/LF, bidi overrides: bot/text.py
        if not text.strip():
            return EMPTY_MESSAGE
        buttons = resident.get("buttons") or []
        if buttons:
            answer = normalise(text).strip()
            if answer.isdigit() and 1 <= int(answer) <= len(buttons):
                return buttons[int(answer) - 1]["payload"]
            for b in buttons:
                if answer == normalise(b["title"]).strip():
                    return b["payload"]
        # Only the channel writes payloads ('/intent{…}'): a typed one is read as text.
        return "／" + text[1:] if text.startswith("/") else text

    @staticmethod
    def _location(f: Dict[str, str], meta: Dict[str, Any]) -> Union[BotTurn, str]:
        try:
            lat, lng = float(f.get("Location_X", "")), float(f.get("Location_Y", ""))
        except ValueError:
            return MSG_TEXT_ONLY
        if not (-90 <= lat <= 90 and -180 <= lng <= 180):
            return MSG_TEXT_ONLY
        label = (f.get("Label") or "").strip()
        meta["location"] = {"lat": lat, "lng": lng, "scale": f.get("Scale"), "label": label}
        return BotTurn(label or f"我的位置（纬度 {lat:.5f}，经度 {lng:.5f}）", {"wechat": meta})

    async def _image(self, inbound: Inbound, meta: Dict[str, Any]) -> Union[BotTurn, str]:
        media_id = inbound.fields.get("MediaId", "")
        if not _MEDIA_ID.match(media_id):
            return MSG_PHOTO_FAILED
        try:
            data = await self.api.get_media(media_id, self.config.max_image_bytes)
        except WeChatApiError as exc:
            log.warning("wechat: image %s not downloaded: %s", inbound.msg_key, exc)
            return MSG_PHOTO_FAILED
        ext = sniff_image(data[:SNIFF_BYTES])
        if ext is None:
            log.warning("wechat: media %s is not a JPEG/PNG/WebP image (%d bytes)", inbound.msg_key, len(data))
            return MSG_PHOTO_FAILED
        try:  # stored without GPS position, device or thumbnail (bot.uploads.save_photo)
            name = await to_thread(self._save_upload, data, ext)
        except PhotoUnreadable:
            log.warning("wechat: media %s could not be decoded (%d bytes)", inbound.msg_key, len(data))
            return MSG_PHOTO_FAILED
        ref = f"{self.config.public_url}/widget/photo/{name}"
        meta["photo"] = {"name": name, "bytes": len(data)}
        return BotTurn(payload("inform", {"photo": ref}), {"wechat": meta})

    def _save_upload(self, data: bytes, ext: str) -> str:
        """Under var/uploads/ (never a web root) with a random name, like the widget's uploads."""
        return save_photo(data, ext, Path(self.config.upload_dir))

    async def _event(self, inbound: Inbound, meta: Dict[str, Any]) -> Union[BotTurn, str, None]:
        event = (inbound.fields.get("Event") or "").lower()
        key = (inbound.fields.get("EventKey") or "").strip()
        meta["event"] = event
        if event in ("subscribe", "scan"):
            code = key[len("qrscene_"):] if key.startswith("qrscene_") else (key if event == "scan" else "")
            if _COMMUNITY.match(code):
                await self.db("set_scene", inbound.openid, code)
                meta["scene_community"] = code
                return BotTurn(payload("inform", {"community": code}), {"wechat": meta})
            return BotTurn(payload("greet"), {"wechat": meta}) if event == "subscribe" else None
        if event == "click":
            return MSG_TEXT_ONLY
        return None  # unsubscribe, VIEW, LOCATION reports, template receipts: nothing to say

    # --- answers outside the HTTP response ------------------------------------------------
    async def _deliver(self, inbound: Inbound, texts: List[str], mark: bool) -> None:
        ok = True
        try:
            for text in texts:
                result = await self.send_to_resident(inbound.openid, text)
                ok = ok and result.ok
                if not result.ok:
                    log.error("wechat: answer to %s not delivered: %s %s", inbound.msg_key, result.errcode,
                              result.errmsg)
            if mark:
                await self.db("finish", inbound.msg_key, st.SENT if ok else st.SEND_FAILED)
        except Exception:  # a background task: log, never lose the exception silently
            log.exception("wechat: delivering the answer to %s failed", inbound.msg_key)

    async def send_to_resident(self, openid: str, text: str) -> SendResult:
        """A customer-service message within 48 hours of the resident's last message,
        else (or when WeChat answers 45015/45047) a template message."""
        if not self.config.enabled:
            return SendResult(False, None, NOT_CONFIGURED, "wechat channel not configured")
        if not _OPENID.match(openid or ""):
            return SendResult(False, None, NOT_CONFIGURED, "not a WeChat openid")
        resident = await self.db("resident", openid)
        last = (resident or {}).get("last_inbound_at")
        window = self.config.cs_window_hours * 3600 - 60  # a minute's margin for clock skew
        pieces = chunks(text)
        if last is not None and self.clock() - last.timestamp() < window:
            sent = 0
            try:
                for piece in pieces:
                    await self.api.send_custom_text(openid, piece)
                    sent += 1
                return SendResult(True, "custom")
            except WeChatApiError as exc:
                if exc.errcode not in OUT_OF_WINDOW:
                    return SendResult(False, "custom", exc.errcode, exc.errmsg)
                log.info("wechat: %s outside the customer-service window (%s): template", mask(openid), exc.errcode)
                text = "\n".join(pieces[sent:])
        return await self._send_template(openid, text)

    async def _send_template(self, openid: str, text: str) -> SendResult:
        if not self.config.template_id:
            return SendResult(False, None, NOT_CONFIGURED, f"no template configured ({TEMPLATE_ENV})")
        value = text if len(text) <= 200 else text[:199] + "…"
        try:
            await self.api.send_template(openid, self.config.template_id,
                                         {self.config.template_field: {"value": value}})
        except WeChatApiError as exc:
            return SendResult(False, "template", exc.errcode, exc.errmsg)
        return SendResult(True, "template")

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < 600:
            return
        self._last_prune = now
        window = self.config.timestamp_window * 2

        async def prune() -> None:
            try:
                await self.db("prune", window, 2, 24)  # nonces 10 min, rows 2 days, stored replies 24 h
            except Exception:  # housekeeping: the next request tries again
                log.exception("wechat: pruning old rows failed")

        self._spawn(prune())


class WeChatDeliveryError(RuntimeError):
    """WeChat did not take a message for the resident (window closed and no template, an API error)."""


class WeChatOutput(OutputChannel):
    """Rasa's output channel for WeChat (e.g. /conversations/{id}/execute?output_channel=wechat)."""

    def __init__(self, gateway: WeChatGateway):
        self.gateway = gateway

    @classmethod
    def name(cls) -> Text:
        return "wechat"

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        self._check(await self.gateway.send_to_resident(recipient_id, text))

    async def send_text_with_buttons(self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]],
                                     **kwargs: Any) -> None:
        rendered, offered = render([{"text": text, "buttons": buttons}])
        await self.gateway.db("set_buttons", recipient_id, offered or None)
        self._check(await self.gateway.send_to_resident(recipient_id, rendered))

    @staticmethod
    def _check(result: SendResult) -> None:
        # Raised, not logged: Rasa's trigger_intent then answers 500 and the console's
        # notification outbox keeps the message and tries again later.
        if not result.ok:
            raise WeChatDeliveryError(f"not delivered via {result.via or 'wechat'}: {result.errcode} {result.errmsg}")


class WeChatInput(InputChannel):
    """credentials.yml key: bot.channels.wechat.WeChatInput (see WeChatConfig.from_credentials)."""

    @classmethod
    def name(cls) -> Text:
        return "wechat"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "WeChatInput":
        return cls(WeChatConfig.from_credentials(credentials))

    def __init__(self, config: Optional[WeChatConfig] = None, gateway: Optional[WeChatGateway] = None):
        self.gateway = gateway or WeChatGateway(config or WeChatConfig.from_env())
        if not self.gateway.config.enabled:
            log.warning("wechat channel not configured (%s, %s unset): /webhooks/wechat answers 503",
                        ENV["token"], ENV["appid"])

    def get_output_channel(self) -> Optional[OutputChannel]:
        return WeChatOutput(self.gateway)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint(f"qingcheng_wechat_webhook_{id(self):x}", __name__)
        gateway = self.gateway

        def reply(r: HttpReply) -> Any:
            return response.text(r.body, status=r.status, content_type=r.content_type)

        def args(request: Request) -> Dict[str, str]:
            return {k: v[0] for k, v in request.args.items() if v}

        # the recovery sweep for async messages lives as long as the server
        @bp.listener("after_server_start")
        async def start_sweeper(_app: Any, _loop: Any) -> None:
            gateway.start_sweeper(on_new_message)

        @bp.listener("before_server_stop")
        async def stop_sweeper(_app: Any, _loop: Any) -> None:
            await gateway.stop_sweeper()

        @bp.route("/", methods=["GET"])
        async def health(_: Request) -> Any:
            return response.json({"status": "ok" if gateway.config.enabled else "not_configured"})

        @bp.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> Any:
            return reply(gateway.verify_url(args(request)))

        @bp.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> Any:
            # streamed: an oversized body is refused after 64 KiB, not buffered whole first
            limit = gateway.config.max_body
            try:
                length = int(request.headers.get("content-length") or 0)
            except ValueError:
                length = 0
            if length > limit:
                return reply(_error(413, "body_too_large"))
            body = bytearray()
            while True:
                chunk = await request.stream.read()
                if chunk is None:
                    break
                body += chunk
                if len(body) > limit:
                    return reply(_error(413, "body_too_large"))
            gateway.start_sweeper(on_new_message)  # in case the server's start listeners did not run
            try:
                return reply(await gateway.receive(args(request), bytes(body), length, on_new_message))
            except Exception:
                log.exception("wechat: request failed")
                return reply(_error(503, "unavailable"))

        return bp


_default_gateway: Optional[WeChatGateway] = None


async def send_to_resident(openid: str, text: str) -> SendResult:
    """For the console's notification outbox: reach a resident by openid, whatever the
    48-hour window (configuration from the environment: QC_WECHAT_*)."""
    global _default_gateway
    if _default_gateway is None:
        _default_gateway = WeChatGateway(WeChatConfig.from_env())
    return await _default_gateway.send_to_resident(openid, text)

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
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rasa.core.channels.channel import UserMessage

from bot.channels.wechat import checks
from bot.channels.wechat import handoff as wh
from bot.channels.wechat import store as st
from bot.channels.wechat.api import OUT_OF_WINDOW, WeChatApi, WeChatApiError
from bot.channels.wechat.checks import OPENID, SUCCESS, HttpReply, Inbound, error, mask, mask_key
from bot.channels.wechat.config import TEMPLATE_ENV, WeChatConfig
from bot.channels.wechat.crypto import MessageCrypto, sha1_signature
from bot.channels.wechat.replies import MSG_TOO_FAST, chunks
from bot.channels.wechat.store import InThread, WeChatStore
from bot.channels.wechat.turns import Turns, WorkResult
from bot.channels.wechat.xmlio import encrypted_envelope, text_reply, transfer_reply

log = logging.getLogger(__name__)

NOT_CONFIGURED = -3
WINDOW_CLOSED = 45015  # WeChat's errcode for a customer-service message outside the 48 hours
WINDOW_CLOSED_MESSAGE = "customer-service window closed: the resident has not written for 48 hours"
# What of a message is kept for a replay: nothing else the XML carried.
REPLAY_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "Content", "Recognition",
                 "MediaId", "Location_X", "Location_Y", "Scale", "Label", "Event", "EventKey")


@dataclass
class SendResult:
    ok: bool
    via: str | None  # "custom" | "template" | None
    errcode: int = 0
    errmsg: str = ""


class WeChatGateway:
    """The channel's logic, independent of the web framework (the blueprint adapts it)."""

    def __init__(self, config: WeChatConfig, clock: Callable[[], float] | None = None, engine: Any = None):
        self.config = config
        self.clock = clock or time.time
        mode = config.effective_mode
        self.crypto = MessageCrypto(config.encoding_aes_key, config.appid) \
            if config.enabled and mode in ("safe", "compatible") else None
        self._engine = engine
        self._store: st.WeChatStore | None = None
        self._api: WeChatApi | None = None
        self._init_lock = threading.Lock()
        self._tasks: set[asyncio.Future] = set()
        self._sweeper: asyncio.Task | None = None
        self._pusher: asyncio.Task | None = None
        self._last_prune = 0.0
        # who holds a message's processing lease (wechat_inbound.lease_owner): this instance
        self.owner = f"{socket.gethostname()[:48]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.db = InThread(lambda: self.store)  # typed store calls, each in a worker thread
        self.turns = Turns(config, self.db, lambda: self.api)
        self.handoff = wh.Pusher(config, self.db, lambda: self.api, self.clock)  # the agents' messages

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
        self._pusher = asyncio.ensure_future(self.handoff.run())  # the agents' messages, same lifetime

    async def stop_sweeper(self) -> None:
        for task in (self._sweeper, self._pusher):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._sweeper = self._pusher = None

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

    async def sweep(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> list[asyncio.Future]:
        """One pass: claim the async messages whose worker died, replay each in the
        background; give up on those past the limits. Returns the replays started."""
        claimed, gave_up = await self.db(WeChatStore.claim_async, self.owner, self.config.processing_lease,
                                         self.config.replay_max_attempts, self.config.replay_max_age_hours * 3600)
        for row in gave_up:
            log.error("wechat: %s for %s not answered and given up after %d attempt(s) (received %s): "
                      "its worker stopped before delivering the answer", mask_key(row["msg_key"]), mask(row["openid"]),
                      row["attempts"], row["received_at"])
        return [self._spawn(self._replay(row, on_new_message)) for row in claimed]

    async def _replay(self, row: dict[str, Any], on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        body = row.get("replay_body") or {}
        fields = {k: str(v) for k, v in (body.get("fields") or {}).items()}
        inbound = Inbound(fields, row["openid"], fields.get("ToUserName", ""), row["msg_type"], row["msg_key"],
                          False)
        log.warning("wechat: %s for %s answered \"success\" but its worker stopped before the answer went out: "
                    "replaying it (attempt %d)", mask_key(inbound.msg_key), mask(inbound.openid), row["attempts"])
        settled: asyncio.Future = asyncio.get_running_loop().create_future()
        work = self._spawn(self.turns.work(inbound, on_new_message))
        self._spawn(self._keep_lease(inbound.msg_key, work, settled))
        try:
            result: WorkResult = await work
            if not await self._still_ours(inbound, result):
                return
            if result.chunks:
                await self._deliver(inbound, result.chunks, mark=True)
            else:
                await self.db(WeChatStore.finish, inbound.msg_key, st.IGNORED)
        except Exception:  # a background task: log; the lease runs out and a later sweep retries
            log.exception("wechat: replaying %s failed", mask_key(inbound.msg_key))
        finally:
            settled.set_result(None)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for background deliveries (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    # --- request checks (bot/channels/wechat/checks.py) ------------------------------------
    def verify_url(self, args: Mapping[str, str]) -> HttpReply:
        return checks.verify_url(self.config, args, self.clock())

    # --- the POST ----------------------------------------------------------------------
    async def receive(self, args: Mapping[str, str], body: bytes, content_length: int | None,
                      on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> HttpReply:
        started = time.monotonic()
        if not self.config.enabled:
            return error(503, "wechat_not_configured")
        if (content_length or 0) > self.config.max_body or len(body) > self.config.max_body:
            return error(413, "body_too_large")
        refusal, encrypted = checks.check_query(self.config, self.crypto, args, self.clock())
        if refusal:
            return refusal
        opened = checks.open_message(self.config, self.crypto, args, body, encrypted)
        if isinstance(opened, HttpReply):
            return opened
        inbound = checks.inbound_of(opened, encrypted)
        if isinstance(inbound, HttpReply):
            return inbound
        admission = await self.db(WeChatStore.admit, args["timestamp"], args["nonce"],
                                  hashlib.sha256(body).hexdigest(), inbound.msg_key, inbound.openid,
                                  inbound.msg_type, self.config.rate_window, self.owner, self.config.processing_lease)
        if admission.outcome == st.TAKEOVER:
            log.warning("wechat: %s was left processing by a worker that stopped; taken over", inbound.msg_key)
        if admission.outcome == st.REPLAY:
            log.warning("wechat: replayed signature with another body refused (%s)", mask(inbound.openid))
            return error(403, "replay")
        if admission.outcome == st.DUPLICATE:
            return await self._duplicate(inbound, admission.row or {}, started)
        self._maybe_prune()
        if admission.recent > self.config.rate_limit:
            log.warning("wechat: %s over %d messages/min, not processed", mask(inbound.openid), self.config.rate_limit)
            await self.db(WeChatStore.finish, inbound.msg_key, st.LIMITED, MSG_TOO_FAST)
            return self.passive(inbound, MSG_TOO_FAST)

        # the lease is kept while the bot works and, should the answer go out later, until it is sent
        settled: asyncio.Future = asyncio.get_running_loop().create_future()
        work = self._spawn(self.turns.work(inbound, on_new_message))
        self._spawn(self._keep_lease(inbound.msg_key, work, settled))
        deferred: list[bool] = []  # set when the answer goes out later: late() settles then
        try:
            return await self._answer(inbound, work, settled, started, deferred)
        finally:
            if not deferred and not settled.done():
                settled.set_result(None)

    async def _answer(self, inbound: Inbound, work: asyncio.Future, settled: asyncio.Future, started: float,
                      deferred: list[bool]) -> HttpReply:
        remaining = self.config.passive_budget - (time.monotonic() - started)
        done, _ = await asyncio.wait({work}, timeout=max(0.0, remaining))
        if work in done:
            result: WorkResult = work.result()
            if result.transfer and await self.db(wh.transferred, inbound.openid):
                await self.db(WeChatStore.finish, inbound.msg_key, st.PASSIVE, None, inbound.openid, None)
                log.info("wechat: %s handed to the Official Account's 客服 (transfer_customer_service)",
                         mask(inbound.openid))
                return self.reply_xml(inbound, transfer_reply(inbound.openid, inbound.account, int(self.clock())))
            if not result.chunks:
                await self.db(WeChatStore.finish, inbound.msg_key, st.IGNORED, None, inbound.openid,
                              result.buttons)
                return SUCCESS
            await self.db(WeChatStore.finish, inbound.msg_key, st.FAILED if result.failed else st.PASSIVE,
                          result.chunks[0], inbound.openid, result.buttons)
            if len(result.chunks) > 1:
                self._spawn(self._deliver(inbound, result.chunks[1:], mark=False))
            return self.passive(inbound, result.chunks[0])
        # Too slow for a passive reply: "success" now, the answer through the CS API later.
        # The row keeps the message and our lease until the answer is sent: should this
        # worker die first, the recovery sweep on any instance replays it.
        # (No await between the wait and the callback: the work cannot finish unnoticed.)
        body = {"fields": {k: v for k, v in inbound.fields.items() if k in REPLAY_FIELDS}}
        marked = self._spawn(self.db(WeChatStore.defer, inbound.msg_key, self.owner, body,
                                     self.config.processing_lease))
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
            await self.db(WeChatStore.set_buttons, inbound.openid, result.buttons)
        if await self.db(WeChatStore.renew, inbound.msg_key, self.owner, self.config.processing_lease):
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
                if not await self.db(WeChatStore.renew, msg_key, self.owner, self.config.processing_lease):
                    return  # answered meanwhile (or taken over)
            except Exception:  # the store hiccuped: try again at the next beat
                log.exception("wechat: renewing the lease on %s failed", msg_key)

    async def _duplicate(self, inbound: Inbound, row: dict[str, Any], started: float) -> HttpReply:
        """A retry (or a concurrent copy): never processed again; answered like the first."""
        while row.get("status") == st.PROCESSING and time.monotonic() - started < self.config.passive_budget:
            await asyncio.sleep(0.1)
            row = await self.db(WeChatStore.inbound, inbound.msg_key) or {"status": st.IGNORED}
        log.info("wechat: duplicate %s (%s)", inbound.msg_key, row.get("status"))
        if row.get("status") in (st.PASSIVE, st.LIMITED, st.FAILED) and row.get("reply"):
            return self.passive(inbound, row["reply"])
        return SUCCESS

    def passive(self, inbound: Inbound, text: str) -> HttpReply:
        return self.reply_xml(inbound, text_reply(inbound.openid, inbound.account, int(self.clock()), text))

    def reply_xml(self, inbound: Inbound, xml: str) -> HttpReply:
        now = str(int(self.clock()))
        if not inbound.encrypted:
            return HttpReply(200, xml, "application/xml; charset=utf-8")
        assert self.crypto is not None
        encrypt = self.crypto.encrypt(xml.encode("utf-8"))
        nonce = str(secrets.randbelow(10 ** 10))
        signature = sha1_signature(self.config.token, now, nonce, encrypt)
        return HttpReply(200, encrypted_envelope(encrypt, signature, now, nonce), "application/xml; charset=utf-8")

    # --- answers outside the HTTP response ------------------------------------------------
    async def _deliver(self, inbound: Inbound, texts: list[str], mark: bool) -> None:
        ok = True
        try:
            for text in texts:
                result = await self.send_to_resident(inbound.openid, text)
                ok = ok and result.ok
                if not result.ok:
                    log.error("wechat: answer to %s not delivered: %s %s", inbound.msg_key, result.errcode,
                              result.errmsg)
            if mark:
                await self.db(WeChatStore.finish, inbound.msg_key, st.SENT if ok else st.SEND_FAILED)
        except Exception:  # a background task: log, never lose the exception silently
            log.exception("wechat: delivering the answer to %s failed", inbound.msg_key)

    async def send_to_resident(self, openid: str, text: str) -> SendResult:
        """A customer-service message within 48 hours of the resident's last message,
        else (or when WeChat answers 45015/45047) a template message."""
        if not self.config.enabled:
            return SendResult(False, None, NOT_CONFIGURED, "wechat channel not configured")
        if not OPENID.match(openid or ""):
            return SendResult(False, None, NOT_CONFIGURED, "not a WeChat openid")
        resident = await self.db(WeChatStore.resident, openid)
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

    async def send_in_window(self, openid: str, text: str) -> SendResult:
        """Customer-service messages only (a handler's question, which wants an answer in the
        chat): outside the 48-hour window nothing is sent and the result says why (45015,
        WeChat's own code for it), so the outbox reports it and tries again later — after the
        resident writes again the window is open."""
        if not self.config.enabled:
            return SendResult(False, None, NOT_CONFIGURED, "wechat channel not configured")
        if not OPENID.match(openid or ""):
            return SendResult(False, None, NOT_CONFIGURED, "not a WeChat openid")
        resident = await self.db(WeChatStore.resident, openid)
        last = (resident or {}).get("last_inbound_at")
        window = self.config.cs_window_hours * 3600 - 60
        if last is None or self.clock() - last.timestamp() >= window:
            return SendResult(False, "custom", WINDOW_CLOSED, WINDOW_CLOSED_MESSAGE)
        try:
            for piece in chunks(text):
                await self.api.send_custom_text(openid, piece)
        except WeChatApiError as exc:
            return SendResult(False, "custom", exc.errcode, exc.errmsg)
        return SendResult(True, "custom")

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
                await self.db(WeChatStore.prune, window, 2, 24)  # nonces 10 min, rows 2 days, stored replies 24 h
            except Exception:  # housekeeping: the next request tries again
                log.exception("wechat: pruning old rows failed")

        self._spawn(prune())

"""REST channel: Rasa's, with the checks a public endpoint needs.

POST /webhooks/rest/webhook {"sender": "...", "message": "..."} → [bot messages].
- a missing or malformed sender is refused (Rasa would file it under a shared "default"
  conversation, mixing residents);
- a missing message or a non-JSON body gets a 400 with a clear error;
- an empty or whitespace-only message still reaches the assistant (which asks for text)
  instead of being silently dropped;
- an oversized message gets a 413 and nothing is processed;
- a sender over QC_RATE_LIMIT messages a minute (default 20, like WeChat) gets a 429 with a
  polite message and nothing is processed (bot/security/ratelimit.py: shared through Redis when
  QC_REDIS_URL is set). credentials.yml may set `rate_limit` / `rate_window` instead;
- a client address (behind QC_TRUSTED_PROXIES: the forwarded one) over QC_CLIENT_RATE_LIMIT
  messages a minute (default 300, for carrier NAT) gets the same 429, however many sender
  ids it rotates through;
- it is for trusted front-ends: with QC_REST_TOKEN set (production), a call without
  `Authorization: Bearer <QC_REST_TOKEN>` gets a 401 and nothing is processed;
- the conversation (and the tickets filed in it) is "rest:<sender>": a REST client cannot
  name a WeChat openid or a widget session and reach that resident (bot/security/identity.py);
- text Rasa would read as `/intent{…}` passes only when it is one of our buttons' payloads
  (bot/channels/payloads.py); any other is ordinary text;
- while a person holds the conversation (bot/channels/handoff_gate.py) the message is kept for
  them and the assistant stays silent; what the person (or the hand-off) says comes back with
  the reply, or from GET /webhooks/rest/messages?sender=… (a poll), once.

GET /webhooks/rest/pushed?sender=…&after=<timestamp> → what the assistant was made to say
outside the resident's own requests since `after` (a handler's question, ticket news: the
console's outbox through Rasa's trigger_intent, which a REST client never hears in a response
of its own), each with its timestamp for the next poll. Same bearer token as the webhook.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic import Blueprint, response
from sanic.request import Request

from bot.channels import handoff_gate
from bot.channels.answers import AnswerDesk, default_desk
from bot.channels.common import MSG_BUSY, MSG_KEPT, TOO_FAST, TOO_LONG, admit, text_for_rasa
from bot.ops.production import is_production
from bot.rasa_ext.actions_down import ActionServerUnavailable
from bot.rasa_ext.actions_down import install as _install_actions_down
from bot.rasa_ext.trackerstore import TrackerStoreUnavailable
from bot.security.bearer import bearer_ok
from bot.security.identity import rest_sender
from bot.security.ratelimit import LIMIT_ENV, RateLimiter, client_limiter, env_int
from bot.text import clean_message, mask_personal_data
from bot.web.clientaddr import client_address, trusted_proxies_from_env

log = logging.getLogger(__name__)

_install_actions_down()
# REST's 413 has always read without the widget's full stop (a client may match it): kept so.
REST_TOO_LONG = TOO_LONG.message.rstrip("。")
_SENDER = re.compile(r"^[\w\-:.@]{1,128}$")
TOKEN_ENV = "QC_REST_TOKEN"


def pushed_messages(events: list[Any], after: float) -> list[dict[str, Any]]:
    """The assistant's messages that followed a trigger_intent (not an answer to the resident's
    own message), newer than `after`: (text, timestamp)."""
    out: list[dict[str, Any]] = []
    pushed = False
    for e in events:
        kind = getattr(e, "type_name", None)
        if kind == "user":
            pushed = str(getattr(e, "text", "") or "").startswith("EXTERNAL: ")
        elif kind == "bot" and pushed and (e.timestamp or 0) > after and e.text:
            out.append({"text": e.text, "timestamp": e.timestamp})
    return out


def error(status: int, code: str, message: str):
    return response.json({"error": code, "message": message}, status=status)


class RestInput(RasaRestInput):
    @classmethod
    def name(cls) -> str:
        return "rest"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> RestInput:
        creds = credentials or {}
        return cls(int(creds.get("rate_limit") or env_int(LIMIT_ENV, 20)), float(creds.get("rate_window") or 60))

    def __init__(self, rate_limit: int | None = None, rate_window: float = 60.0,
                 limiter: RateLimiter | None = None, answers: AnswerDesk | None = None) -> None:
        self.answers = answers or default_desk()  # answers to handlers' questions, before the assistant
        self.limiter = limiter or RateLimiter(rate_limit or env_int(LIMIT_ENV, 20), rate_window, "rest")
        # per client address, whatever the sender ids (QC_CLIENT_RATE_LIMIT; behind QC_TRUSTED_PROXIES)
        self.client_limiter = client_limiter()  # the one counter REST and Socket.IO share
        self.trusted_proxies = trusted_proxies_from_env()
        self.token = os.environ.get(TOKEN_ENV) or None
        if self.token is None and is_production():
            log.warning("REST channel without %s: anyone who reaches Rasa can talk as any REST sender", TOKEN_ENV)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        handoff_gate.install()  # the hand-off checked again inside the conversation lock
        bp = Blueprint("qingcheng_rest_webhook", __name__)
        on_new_message = self.answers.wrap(on_new_message)

        @bp.route("/", methods=["GET"])
        async def health(_: Request):
            return response.json({"status": "ok"})

        @bp.route("/messages", methods=["GET"])
        async def poll(request: Request):
            if self.token and not bearer_ok(request.headers.get("Authorization"), self.token):
                return error(401, "unauthorized", "REST 通道仅供受信任的前端使用：需要 Authorization: Bearer 令牌")
            sender = request.args.get("sender")
            if not isinstance(sender, str) or not _SENDER.match(sender):
                return error(400, "bad_sender", "sender 必填：1-128 位字母、数字或 - _ : . @")
            client = client_address(request.ip, request.headers.get("X-Forwarded-For", ""), self.trusted_proxies)
            if not await self.client_limiter.hit(client):
                return error(TOO_FAST.status, TOO_FAST.code, TOO_FAST.message)
            try:
                texts = await handoff_gate.pickup(rest_sender(sender))
            except Exception:  # noqa: BLE001 - nothing was claimed: the next poll gets it
                log.exception("poll for %s failed", mask_personal_data(sender))
                return error(503, "unavailable", MSG_BUSY)
            return response.json([{"recipient_id": sender, "text": t} for t in texts])

        @bp.route("/pushed", methods=["GET"])
        async def pushed(request: Request):
            if self.token and not bearer_ok(request.headers.get("Authorization"), self.token):
                return error(401, "unauthorized", "REST 通道仅供受信任的前端使用：需要 Authorization: Bearer 令牌")
            sender = request.args.get("sender")
            if not isinstance(sender, str) or not _SENDER.match(sender):
                return error(400, "bad_sender", "sender 必填：1-128 位字母、数字或 - _ : . @")
            try:
                after = float(request.args.get("after") or 0)
            except ValueError:
                return error(400, "bad_after", "after 须为上次取到的 timestamp（数字）")
            client = client_address(request.ip, request.headers.get("X-Forwarded-For", ""), self.trusted_proxies)
            if not await self.client_limiter.hit(client):
                return error(TOO_FAST.status, TOO_FAST.code, TOO_FAST.message)
            agent = getattr(request.app.ctx, "agent", None)
            if agent is None or getattr(agent, "tracker_store", None) is None:
                return error(503, "unavailable", MSG_BUSY)
            try:
                tracker = await agent.tracker_store.retrieve(rest_sender(sender))
            except (Exception, TrackerStoreUnavailable):
                log.exception("pushed messages for %s failed", mask_personal_data(sender))
                return error(503, "unavailable", MSG_BUSY)
            events = list(tracker.events) if tracker is not None else []
            return response.json([{"recipient_id": sender, **m} for m in pushed_messages(events, after)])

        @bp.route("/webhook", methods=["POST"])
        async def receive(request: Request):
            if self.token and not bearer_ok(request.headers.get("Authorization"), self.token):
                return error(401, "unauthorized", "REST 通道仅供受信任的前端使用：需要 Authorization: Bearer 令牌")
            try:
                body = request.json
            except Exception:
                body = None
            if not isinstance(body, dict):
                return error(400, "bad_json", "请求体必须是 JSON 对象 / body must be a JSON object")
            sender = body.get("sender")
            if not isinstance(sender, str) or not _SENDER.match(sender):
                return error(400, "bad_sender", "sender 必填：1-128 位字母、数字或 - _ : . @")
            message = body.get("message")
            if not isinstance(message, str):
                return error(400, "bad_message", "message 必填，且必须是字符串")
            client = client_address(request.ip, request.headers.get("X-Forwarded-For", ""), self.trusted_proxies)
            refusal = await admit("rest", message, client, sender, self.client_limiter, self.limiter)
            if refusal is not None:
                return error(refusal.status, refusal.code, REST_TOO_LONG if refusal is TOO_LONG else refusal.message)
            conversation = rest_sender(sender)
            # a photo payload only for this conversation's upload
            text = text_for_rasa(message, conversation)
            metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else None
            gate = await handoff_gate.on_message(conversation, clean_message(message))
            waiting = [{"recipient_id": sender, "text": t} for t in gate.replies]
            if gate.held:  # a person holds the conversation: kept for them, the assistant is silent
                return response.json(waiting)
            collector = CollectingOutputChannel()
            try:
                await on_new_message(UserMessage(text, collector, conversation, input_channel=self.name(),
                                                 metadata=handoff_gate.gated(metadata, clean_message(message))))
            except asyncio.CancelledError:
                log.error("message from %s timed out", mask_personal_data(sender))
            except ActionServerUnavailable:
                log.error("message from %s kept: the action server is down", mask_personal_data(sender))
                return error(503, "actions_unavailable", MSG_KEPT)
            except (Exception, TrackerStoreUnavailable):  # the latter is a BaseException (bot/rasa_ext/trackerstore.py)
                log.exception("message from %s failed", mask_personal_data(sender))
                return error(503, "unavailable", MSG_BUSY)
            # the front-end named the resident `sender`: answer in its terms
            return response.json(waiting + [{**m, "recipient_id": sender} if m.get("recipient_id") == conversation
                                            else m for m in collector.messages])

        return bp

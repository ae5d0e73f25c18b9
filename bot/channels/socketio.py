"""Socket.IO channel for the web widget: Rasa's, with the fixes a public endpoint needs.

Configured in credentials.yml as `bot.channels.socketio.SocketIOInput` (channel name
"socketio", the same events and options as Rasa's `socketio:` entry). Differences:

- session persistence works: Rasa 3.6 calls python-socketio 5's `enter_room` coroutine
  without awaiting it (RasaHQ/rasa#13027), so a persistent session never joins its room
  and the bot's answers reach nobody; here it is awaited;
- the server issues session ids: 32 lowercase hex digits, a random half and an HMAC of it
  under the server secret (QC_SESSION_SECRET, else QC_RASA_TOKEN, else one made at start);
  a session id the client made up (or another channel's sender id, e.g. a REST sender
  "resident-1") is replaced by a fresh one at session_request and ignored on a message, so
  nobody can pick a conversation to join;
- messages are checked like the REST channel's: not a string → ignored, longer than
  MAX_MESSAGE_CHARS → the resident is told, empty → reaches the assistant (which asks
  for text) instead of being dropped;
- a sender (session) over QC_RATE_LIMIT messages a minute (default 20) is told to slow down
  and nothing is processed (bot/security/ratelimit.py; shared through Redis when QC_REDIS_URL is set);
  so is a client address (behind QC_TRUSTED_PROXIES the forwarded one) over
  QC_CLIENT_RATE_LIMIT messages a minute (default 300), however many sessions it opens;
- while a person holds the conversation (bot/channels/handoff_gate.py) a message is kept for
  them and the assistant stays silent; what the person says is pushed to the open session.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import rasa.core.channels.channel
from rasa.core.channels.channel import UserMessage
from rasa.core.channels.socketio import SocketBlueprint, SocketIOOutput
from rasa.core.channels.socketio import SocketIOInput as RasaSocketIOInput
from sanic import Blueprint, response
from sanic.request import Request
from socketio import AsyncServer

from bot.channels import handoff_gate
from bot.channels.answers import default_desk
from bot.channels.common import MSG_BUSY, MSG_KEPT, admit, text_for_rasa
from bot.rasa_ext.actions_down import ActionServerUnavailable
from bot.rasa_ext.trackerstore import TrackerStoreUnavailable
from bot.security.ratelimit import RateLimiter, client_limiter
from bot.security.sessionid import SECRET_ENV, SESSION_ID, issued_by_us, new_session_id  # noqa: F401
from bot.text import clean_message, mask_personal_data
from bot.web.clientaddr import client_address, trusted_proxies_from_env

log = logging.getLogger(__name__)


def session_id_for(data: Any) -> str:
    """The client's session id when we issued it, else a new one."""
    sid = data.get("session_id") if isinstance(data, dict) else None
    return sid if issued_by_us(sid) else new_session_id()


class SocketIOInput(RasaSocketIOInput):
    @classmethod
    def name(cls) -> str:
        return "socketio"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        handoff_gate.install()  # the hand-off checked again inside the conversation lock
        # cors_allowed_origins=[]: engine.io leaves CORS to Sanic (`rasa run --cors`), as Rasa does.
        sio = AsyncServer(async_mode="sanic", cors_allowed_origins=[])
        bp = SocketBlueprint(sio, self.socketio_path, "qingcheng_socketio_webhook", __name__)
        self.sio = sio
        namespace = self.namespace
        if getattr(self, "answers", None) is None:
            self.answers = default_desk()  # answers to handlers' questions, before the assistant
        on_new_message = self.answers.wrap(on_new_message)
        if getattr(self, "limiter", None) is None:
            self.limiter = RateLimiter.from_env("socketio", 20)
        if getattr(self, "client_limiter", None) is None:
            self.client_limiter = client_limiter()  # the one counter REST and Socket.IO share
        trusted = trusted_proxies_from_env()
        clients: dict[str, str] = {}  # socket id → client address, for the per-client limit
        joined: dict[str, str] = {}  # socket id → its session (conversation), for hand-off pushes

        async def push(conversation: str, text: str) -> None:
            await SocketIOOutput(sio, self.bot_message_evt).send_text_message(conversation, text)

        pusher = handoff_gate.Pusher(push)
        self.pusher = pusher

        @bp.route("/", methods=["GET"])
        async def health(_: Request):
            return response.json({"status": "ok"})

        @sio.on("connect", namespace=namespace)
        async def connect(sid: str, environ: dict, auth: dict | None) -> bool:
            request = environ.get("sanic.request")
            clients[sid] = client_address(getattr(request, "ip", None) or environ.get("REMOTE_ADDR"),
                                          environ.get("HTTP_X_FORWARDED_FOR", ""), trusted)
            if not self.jwt_key:
                return True
            token = auth.get("token") if isinstance(auth, dict) else None
            payload = None
            if token:
                payload = rasa.core.channels.channel.decode_bearer_token(token, self.jwt_key, self.jwt_algorithm)
            if not payload:
                clients.pop(sid, None)  # refused: no disconnect event will come
            return bool(payload)

        @sio.on("disconnect", namespace=namespace)
        async def disconnect(sid: str) -> None:
            clients.pop(sid, None)
            if sid in joined:
                pusher.closed(joined.pop(sid))

        @sio.on("session_request", namespace=namespace)
        async def session_request(sid: str, data: Any = None) -> None:  # an emit without data: no argument
            session_id = session_id_for(data)
            if self.session_persistence:
                await sio.enter_room(sid, session_id, namespace=namespace)
                if sid in joined:
                    pusher.closed(joined.pop(sid))
                joined[sid] = session_id
                pusher.opened(session_id)
            await sio.emit("session_confirm", session_id, room=sid, namespace=namespace)

        @sio.on(self.user_message_evt, namespace=namespace)
        async def handle_message(sid: str, data: Any = None) -> None:
            if not isinstance(data, dict):
                return
            if self.session_persistence:
                session_id = data.get("session_id")
                if not issued_by_us(session_id):
                    log.warning("socket.io message without a session id we issued ignored")
                    return
                sender_id = session_id
            else:
                sender_id = sid
            output = SocketIOOutput(sio, self.bot_message_evt)
            message = data.get("message")
            if not isinstance(message, str):
                return
            refusal = await admit("socket.io", message, clients.get(sid, "?"), sender_id, self.client_limiter,
                                  self.limiter)
            if refusal is not None:
                await output.send_text_message(sender_id, refusal.message)
                return
            gate = await handoff_gate.on_message(sender_id, clean_message(message))
            for reply in gate.replies:
                await output.send_text_message(sender_id, reply)
            if gate.held:  # a person holds the conversation: kept for them, the assistant is silent
                return
            text = text_for_rasa(message, sender_id)
            metadata = data.get(self.metadata_key) or {}
            if isinstance(metadata, str):
                try:
                    metadata = json.loads(metadata)
                except ValueError:
                    metadata = {}
            if not isinstance(metadata, dict):
                metadata = {}
            try:
                await on_new_message(UserMessage(text, output, sender_id, input_channel=self.name(),
                                                 metadata=handoff_gate.gated(metadata, clean_message(message))))
            except ActionServerUnavailable:
                log.error("socket.io message from %s kept: the action server is down", mask_personal_data(sender_id))
                await output.send_text_message(sender_id, MSG_KEPT)
            except (Exception, TrackerStoreUnavailable):  # the latter is a BaseException (bot/rasa_ext/trackerstore.py)
                log.exception("socket.io message from %s failed", mask_personal_data(sender_id))
                await output.send_text_message(sender_id, MSG_BUSY)

        return bp

"""The Rasa input and output channels for WeChat: Sanic routes over the gateway.

credentials.yml names `bot.channels.wechat.WeChatInput` (re-exported by the package)."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

from bot.channels.answers import AnswerDesk
from bot.channels.wechat.checks import HttpReply, error
from bot.channels.wechat.config import CHANNEL_NAME, ENV, WeChatConfig
from bot.channels.wechat.gateway import SendResult, WeChatGateway
from bot.channels.wechat.replies import render
from bot.channels.wechat.store import WeChatStore

log = logging.getLogger(__name__)
# A bot message's metadata key (utter_message(..., qc_window_only=True)): only inside the
# 48-hour customer-service window, never as a template message.
WINDOW_ONLY = "qc_window_only"


class WeChatDeliveryError(RuntimeError):
    """WeChat did not take a message for the resident (window closed and no template, an API error)."""


class WeChatOutput(OutputChannel):
    """Rasa's output channel for WeChat (e.g. /conversations/{id}/execute?output_channel=wechat)."""

    def __init__(self, gateway: WeChatGateway):
        self.gateway = gateway

    @classmethod
    def name(cls) -> str:
        return CHANNEL_NAME

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        if kwargs.get(WINDOW_ONLY):  # a handler's question (actions/followup.py): no template
            self._check(await self.gateway.send_in_window(recipient_id, text))
            return
        self._check(await self.gateway.send_to_resident(recipient_id, text))

    async def send_text_with_buttons(self, recipient_id: str, text: str, buttons: list[dict[str, Any]],
                                     **kwargs: Any) -> None:
        rendered, offered = render([{"text": text, "buttons": buttons}])
        await self.gateway.db(WeChatStore.set_buttons, recipient_id, offered or None)
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
    def name(cls) -> str:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> WeChatInput:
        return cls(WeChatConfig.from_credentials(credentials))

    def __init__(self, config: WeChatConfig | None = None, gateway: WeChatGateway | None = None):
        self.gateway = gateway or WeChatGateway(config or WeChatConfig.from_env())
        if not self.gateway.config.enabled:
            log.warning("wechat channel not configured (%s, %s unset): /webhooks/wechat answers 503",
                        ENV["token"], ENV["appid"])

    def get_output_channel(self) -> OutputChannel | None:
        return WeChatOutput(self.gateway)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint(f"qingcheng_wechat_webhook_{id(self):x}", __name__)
        gateway = self.gateway
        # answers to handlers' questions, before the assistant (the replay sweep's too)
        on_new_message = AnswerDesk(engine_of=lambda: gateway.store.engine).wrap(on_new_message)

        def reply(r: HttpReply) -> Any:
            return response.text(r.body, status=r.status, content_type=r.content_type)

        def args(request: Request) -> dict[str, str]:
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
                return reply(error(413, "body_too_large"))
            body = bytearray()
            while True:
                chunk = await request.stream.read()
                if chunk is None:
                    break
                body += chunk
                if len(body) > limit:
                    return reply(error(413, "body_too_large"))
            gateway.start_sweeper(on_new_message)  # in case the server's start listeners did not run
            try:
                return reply(await gateway.receive(args(request), bytes(body), length, on_new_message))
            except Exception:
                log.exception("wechat: request failed")
                return reply(error(503, "unavailable"))

        return bp


_default_gateway: WeChatGateway | None = None


async def send_to_resident(openid: str, text: str) -> SendResult:
    """For the console's notification outbox: reach a resident by openid, whatever the
    48-hour window (configuration from the environment: QC_WECHAT_*)."""
    global _default_gateway
    if _default_gateway is None:
        _default_gateway = WeChatGateway(WeChatConfig.from_env())
    return await _default_gateway.send_to_resident(openid, text)

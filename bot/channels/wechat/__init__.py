"""WeChat Official Account (公众号) channel.

  channel   the Rasa input/output channels (Sanic routes)     gateway  the request flow, leases, delivery
  checks    signature, timestamp, XML, message key (pure)     turns    message → a turn for the bot
  replies   what the resident reads, rendering (pure)         config   credentials.yml / QC_WECHAT_*
  api       WeChat's HTTP API, the shared access_token        crypto   signatures, safe-mode AES
  xmlio     safe XML in, passive replies out                  store    the tables, typed calls in a thread

Public names are loaded on first use: credentials.yml names
`bot.channels.wechat.WeChatInput`, and bot.storage imports `.store` without pulling in Rasa.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

# No import statements here, not even for type checkers: every submodule import runs this
# file first, so an edge from here to channel/gateway would close a circle.
_PUBLIC = {
    "WeChatInput": "channel",
    "WeChatOutput": "channel",
    "send_to_resident": "channel",
    "WeChatConfig": "config",
    "WeChatGateway": "gateway",
}
__all__ = ["WeChatConfig", "WeChatGateway", "WeChatInput", "WeChatOutput", "send_to_resident"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

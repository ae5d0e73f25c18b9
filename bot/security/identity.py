"""A resident's identity is channel + sender: conversations and tickets are keyed by a sender
id that says which channel it came from, so one channel cannot reach another's residents.

- WeChat: the openid WeChat signs (bot/channels/wechat.py; [A-Za-z0-9_-], never ":");
- widget (Socket.IO): a session id of exactly 32 lowercase hex digits (bot/channels/socketio.py);
- REST: "rest:" + the sender the front-end names (bot/channels/rest.py). A REST client naming
  an openid or a session id gets its own "rest:…" conversation, never that resident's.

Tickets filed over REST before the prefix (ticket_reports.sender_id = the bare sender,
channel "rest") still belong to "rest:<sender>" (bot/storage/repository.py).
"""
from __future__ import annotations

REST_PREFIX = "rest:"
REST_CHANNEL = "rest"


def rest_sender(sender: str) -> str:
    return REST_PREFIX + sender


def legacy_rest_sender(sender_id: str) -> str | None:
    """The bare sender a REST ticket was stored under before the prefix, for "rest:<sender>"."""
    return sender_id[len(REST_PREFIX):] if sender_id.startswith(REST_PREFIX) else None

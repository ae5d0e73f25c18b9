"""Shared helpers: read the resident's turn from a tracker; log without personal data."""
from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Tracker

from bot.conversation import Turn
from bot.text import mask_personal_data

log = logging.getLogger("actions")


def latest_turn(tracker: Tracker) -> Turn:
    msg: dict[str, Any] = tracker.latest_message or {}
    intent = msg.get("intent") or {}
    text = msg.get("text") or ""
    return Turn(
        text=text,
        intent=intent.get("name"),
        confidence=float(intent.get("confidence") or 0.0),
        entities=list(msg.get("entities") or []),
        # Button payloads ("/affirm", '/inform{"community": "…"}') skip the NLU.
        from_button=text.startswith("/"),
        scene_community=scene_community(msg),
    )


def scene_community(msg: dict[str, Any]) -> str | None:
    """The community code of the QR code a WeChat resident followed us through (the
    channel sends it with every message: bot/channels/wechat.py)."""
    meta = msg.get("metadata") or {}
    wechat = meta.get("wechat") if isinstance(meta, dict) else None
    code = wechat.get("scene_community") if isinstance(wechat, dict) else None
    return code if isinstance(code, str) and code.isdigit() and len(code) <= 16 else None


def intent_ranking(tracker: Tracker) -> list[dict[str, Any]]:
    return list((tracker.latest_message or {}).get("intent_ranking") or [])


def safe(text: str) -> str:
    """For log lines: phone and ID numbers masked."""
    return mask_personal_data(text or "")

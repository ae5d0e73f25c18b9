"""Shared helpers: read the resident's turn from a tracker; log without personal data."""
from __future__ import annotations

import logging
from typing import Any, Dict, List

from rasa_sdk import Tracker

from bot.conversation import Turn
from bot.text import mask_personal_data

log = logging.getLogger("actions")


def latest_turn(tracker: Tracker) -> Turn:
    msg: Dict[str, Any] = tracker.latest_message or {}
    intent = msg.get("intent") or {}
    text = msg.get("text") or ""
    return Turn(
        text=text,
        intent=intent.get("name"),
        confidence=float(intent.get("confidence") or 0.0),
        entities=list(msg.get("entities") or []),
        # Button payloads ("/affirm", '/inform{"community": "…"}') skip the NLU.
        from_button=text.startswith("/"),
    )


def intent_ranking(tracker: Tracker) -> List[Dict[str, Any]]:
    return list((tracker.latest_message or {}).get("intent_ranking") or [])


def safe(text: str) -> str:
    """For log lines: phone and ID numbers masked."""
    return mask_personal_data(text or "")

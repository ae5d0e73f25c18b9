"""Which `/intent{…}` texts a resident's channel (REST, the widget) may pass to Rasa.

Rasa reads a message that starts with "/" as an intent with entities, skipping the NLU:
a resident could set any slot (`/inform{"photo": "javascript:…"}`) or play our own server
(`/EXTERNAL_ticket_update{…}`). Only the payloads of buttons we send pass, a closed list
with their values checked; anything else starting with "/" reaches the assistant as
ordinary text (its "/" made full-width, as the WeChat channel does). `EXTERNAL_*` intents
come only through Rasa's authenticated HTTP API (bot/console/notifier.py).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache

from bot.domain.model import CATEGORIES
from bot.uploads import photo_belongs_to

# domain.yml's buttons, actions/fallback.py's category buttons, the 回访 buttons
BARE_INTENTS = frozenset({"affirm", "deny", "followup_satisfied", "followup_basic", "followup_unsatisfied",
                          "followup_unsolved", *CATEGORIES})
# the widget's location (widget/src/widget.js, coordinateText)
_PLACE = re.compile(r"^定位坐标 [北南]纬\d{1,2}\.\d{5} [东西]经\d{1,3}\.\d{5}（WGS-84，精度约\d{1,7}米）$")
# actions/complaint.py's location choices: /inform{"<level>":"<gazetteer code>"}
PLACE_LEVELS = ("district", "street", "community", "place")
_SYNTAX = re.compile(r"^/(\w+)(\{.*\})?$", re.S)
FULL_WIDTH_SLASH = "／"


@lru_cache(maxsize=1)
def _gazetteer():  # noqa: ANN202
    from bot.reference.gazetteer import default_gazetteer

    return default_gazetteer()


def _entity_ok(key: str, value: str, conversation: str) -> bool:
    if key == "photo":  # our upload URL, uploaded in this very conversation (bot/uploads.py)
        return photo_belongs_to(value, conversation)
    if key == "place" and _PLACE.match(value):
        return True
    if key in PLACE_LEVELS:
        place = _gazetteer().get(value)
        return place is not None and place.level == key
    return False


def is_our_payload(text: str, conversation: str = "") -> bool:
    m = _SYNTAX.match(text)
    if not m:
        return False
    intent, entities = m.group(1), m.group(2)
    if entities is None:
        return intent in BARE_INTENTS
    if intent != "inform":
        return False
    try:
        parsed = json.loads(entities)
    except ValueError:
        return False
    if not isinstance(parsed, dict) or len(parsed) != 1:
        return False
    [(key, value)] = parsed.items()
    return isinstance(value, str) and _entity_ok(key, value, conversation)


def resident_text(text: str, conversation: str = "") -> str:
    """What Rasa gets for a resident's message in `conversation` (the tracker's sender id): one
    of our payloads as it is, any other text that Rasa would read as `/intent` with its first
    "/" made full-width. A photo payload is ours only for a photo uploaded in `conversation`."""
    stripped = text.strip()  # Rasa strips the text before looking for "/"
    if not stripped.startswith("/") or is_our_payload(stripped, conversation):
        return text
    i = text.index("/")
    return text[:i] + FULL_WIDTH_SLASH + text[i + 1:]


"""What a tracker store writes: the event as Rasa serialises it, phone and ID numbers masked
(issue 19, "at rest"). Every tracker store of ours stores `masked_event(event.as_dict())`
(bot/rasa_ext/sqlite_trackerstore.py, bot/rasa_ext/trackerstore.py); the event broker and
the event broker publishes them masked too (bot/rasa_ext/eventbroker.py); the tracker Rasa
holds during the turn keeps the original.

Masked: what the resident typed (a user event's text, its parse_data text and entity
values), what the bot said (text, data, metadata) and slot values (strings inside lists
and dicts too), with bot.text.mask_personal_data: 13912345678 → 139****5678. The real
phone number never needs the transcript: the complaint form keeps it server-side until the
ticket is filed (bot/storage/pending_phones.py).

Left as they are: button payloads the channels let through ("/inform{…}": codes and our
own references), the photo entity, and the slots holding references we made (an upload's
hex name or a uuid may hold a run of eleven digits that is no phone)."""
from __future__ import annotations

from typing import Any

from bot.text import mask_personal_data

REFERENCE_SLOTS = frozenset({"photo", "kept_photo", "draft_id"})
PENDING_KEY = "qc_pending"  # bot/rasa_ext/actions_down.py (which imports this module)
REFERENCE_ENTITIES = frozenset({"photo"})


def masked_value(value: Any) -> Any:
    """Strings masked, lists and dicts walked (new objects: the caller's stay as they are)."""
    if isinstance(value, str):
        return mask_personal_data(value)
    if isinstance(value, list):
        return [masked_value(v) for v in value]
    if isinstance(value, dict):
        return {k: masked_value(v) for k, v in value.items()}
    return value


def masked_text(text: Any) -> Any:
    """A user message as stored: typed text masked, a payload ("/affirm", "/inform{…}") kept."""
    if isinstance(text, str) and not text.startswith("/"):
        return mask_personal_data(text)
    return text


def _masked_entity(entity: Any) -> Any:
    if not isinstance(entity, dict) or entity.get("entity") in REFERENCE_ENTITIES:
        return entity
    return {k: masked_value(v) if k in ("value", "text") else v for k, v in entity.items()}


def _masked_parse_data(parse: dict[str, Any]) -> dict[str, Any]:
    out = dict(parse)
    if "text" in out:
        out["text"] = masked_text(out["text"])
    if isinstance(out.get("entities"), list):
        out["entities"] = [_masked_entity(e) for e in out["entities"]]
    return out


def masked_event(data: dict[str, Any], keep_pending: bool = True) -> dict[str, Any]:
    """A serialised event (Event.as_dict()) as a tracker store may keep it; a new dict.
    `keep_pending=False` masks a kept message too (the event broker: nothing replays from it)."""
    kind = data.get("event")
    if kind == "user" and keep_pending and (data.get("metadata") or {}).get(PENDING_KEY):
        # kept while the action server was down: stored as typed, or the phone number the form
        # is waiting for would come back masked when the message is replayed ("号码格式不对")
        return data
    if kind == "user":
        out = dict(data, text=masked_text(data.get("text")))
        if isinstance(data.get("parse_data"), dict):
            out["parse_data"] = _masked_parse_data(data["parse_data"])
        return out
    if kind == "bot":
        return {k: masked_value(v) if k in ("text", "data", "metadata") else v for k, v in data.items()}
    if kind == "slot" and data.get("name") not in REFERENCE_SLOTS:
        return dict(data, value=masked_value(data.get("value")))
    return data

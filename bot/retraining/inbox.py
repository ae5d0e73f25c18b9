"""The review inbox: what the model was unsure about, what residents denied, what
people corrected in the console. Texts are masked (phone/ID numbers) before they are
stored; similar texts share a group key and the inbox lists groups by size."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.retraining.tables import REVIEW_SOURCES, review_items
from bot.text import mask_personal_data, normalise

MAX_TEXT = 1000
_FOLD = re.compile(r"[\s\W_]+", re.UNICODE)
# The sources whose items are the resident's own unsure message (the category buttons
# were offered for it); their dedupe key is f"{source}:{sender_id}:{message_id}".
CHOICE_SOURCES = ("fallback", "unsure")
_LIKE_ESCAPE = "\\"


def group_key(text: str) -> str:
    """Case, width, spaces and punctuation folded: "楼下 狗叫！！" and "楼下狗叫" group together."""
    folded = unicodedata.normalize("NFKC", normalise(text or "")).lower()
    return _FOLD.sub("", folded)[:255] or "-"


@dataclass(frozen=True)
class Sample:
    source: str
    text: str
    dedupe_key: str
    predicted_intent: str | None = None
    confidence: float | None = None
    second_intent: str | None = None
    second_confidence: float | None = None
    correction: dict[str, Any] = field(default_factory=dict)
    ticket_id: int | None = None


def sample_from_parse(source: str, text: str, ranking: Sequence[Mapping[str, Any]], dedupe_key: str,
                      correction: dict[str, Any] | None = None) -> Sample:
    """A sample from Rasa's intent ranking (nlu_fallback left out: it is no intent)."""
    ranked = [r for r in ranking if r.get("name") and r.get("name") != "nlu_fallback"]
    first = ranked[0] if ranked else {}
    second = ranked[1] if len(ranked) > 1 else {}
    return Sample(
        source=source, text=text, dedupe_key=dedupe_key,
        predicted_intent=first.get("name"), confidence=_num(first.get("confidence")),
        second_intent=second.get("name"), second_confidence=_num(second.get("confidence")),
        correction=dict(correction or {}),
    )


def stored_text(text: str | None) -> str:
    """The text as the inbox stores it: spaces collapsed, personal data masked, cut."""
    return mask_personal_data(" ".join((text or "").split()))[:MAX_TEXT]


def _num(value: Any) -> float | None:
    try:
        return round(float(value), 4) if value is not None else None
    except (TypeError, ValueError):
        return None


def record(conn: Connection, sample: Sample, now: datetime) -> int | None:
    """Store one sample (masked) in the caller's transaction; None when it is there already
    (a retried action or request) or has no text. Uses a savepoint so a duplicate does not
    spoil the caller's transaction."""
    if sample.source not in REVIEW_SOURCES:
        raise ValueError(f"unknown review source {sample.source!r}")
    text = stored_text(sample.text)
    if not text or text.startswith("/"):  # button payloads are no resident wording
        return None
    key = sample.dedupe_key[:255]
    if conn.execute(select(review_items.c.id).where(review_items.c.dedupe_key == key)).first():
        return None
    values = dict(
        source=sample.source, text=text, group_key=group_key(text),
        predicted_intent=sample.predicted_intent, confidence=sample.confidence,
        second_intent=sample.second_intent, second_confidence=sample.second_confidence,
        correction=sample.correction, ticket_id=sample.ticket_id, dedupe_key=key,
        status="new", intent=None, entities=[], created_at=now,
    )
    try:
        with conn.begin_nested():
            return conn.execute(insert(review_items).values(**values)).inserted_primary_key[0]
    except IntegrityError:
        return None  # a concurrent duplicate won


def _like_literal(value: str) -> str:
    """value for a LIKE pattern, matched literally (its %, _ and the escape char escaped)."""
    return (value.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
            .replace("%", _LIKE_ESCAPE + "%").replace("_", _LIKE_ESCAPE + "_"))


def record_choice(conn: Connection, sender_id: str, intent: str, now: datetime,
                  text: str | None = None) -> int | None:
    """The category the resident picked from the buttons offered after an unsure turn:
    stored as the correction {"intent", "chosen_by": "resident", "chosen_at"} of that
    conversation's most recent item still 'new' (fallback/unsure, matched on the sender
    part of its dedupe key; with `text`, only an item of that message). Returns the
    item's id, None when there is no such item (not collected, or already reviewed)."""
    if not sender_id or not intent:
        return None
    key = review_items.c.dedupe_key
    senders = []
    for source in CHOICE_SOURCES:
        prefix = _like_literal(f"{source}:{sender_id}:")
        # "<source>:<sender>:<message id>" exactly: message ids have no ":", so a sender
        # "A" does not pick up the items of a sender "A:B"
        senders.append(and_(key.like(prefix + "%", escape=_LIKE_ESCAPE),
                            key.not_like(prefix + "%:%", escape=_LIKE_ESCAPE)))
    query = (
        select(review_items.c.id, review_items.c.correction)
        .where(review_items.c.status == "new", review_items.c.source.in_(CHOICE_SOURCES), or_(*senders))
        .order_by(review_items.c.id.desc())
        .limit(1)
    )
    if text is not None:
        query = query.where(review_items.c.text == stored_text(text))
    row = conn.execute(query).first()
    if row is None:
        return None
    correction = dict(row.correction or {})
    correction.update(intent=intent, chosen_by="resident", chosen_at=now.isoformat())
    result = conn.execute(
        update(review_items)
        .where(and_(review_items.c.id == row.id, review_items.c.status == "new"))  # not reviewed meanwhile
        .values(correction=correction)
    )
    return row.id if result.rowcount else None


@dataclass
class InboxGroup:
    group_key: str
    count: int
    item: dict[str, Any]  # the newest item of the group (shown)
    sources: list[str]


def inbox_groups(conn: Connection, status: str = "new", limit: int = 100) -> list[InboxGroup]:
    """Groups of similar texts, most frequent first (then newest)."""
    counts = (
        select(review_items.c.group_key, func.count().label("n"), func.max(review_items.c.id).label("last_id"))
        .where(review_items.c.status == status)
        .group_by(review_items.c.group_key)
        .order_by(func.count().desc(), func.max(review_items.c.id).desc())
        .limit(limit)
    )
    rows = conn.execute(counts).all()
    out: list[InboxGroup] = []
    for key, n, last_id in rows:
        item = conn.execute(select(review_items).where(review_items.c.id == last_id)).mappings().one()
        sources = conn.execute(
            select(review_items.c.source).distinct()
            .where(and_(review_items.c.group_key == key, review_items.c.status == status))
        ).scalars().all()
        out.append(InboxGroup(key, int(n), dict(item), sorted(sources)))
    return out


def get_item(conn: Connection, item_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(review_items).where(review_items.c.id == item_id)).mappings().first()
    return dict(row) if row else None


def review_group(conn: Connection, item_id: int, status: str, reviewer: str, now: datetime,
                 intent: str | None = None, entities: list[dict[str, Any]] | None = None) -> int:
    """Accept or reject every new item of the group the item belongs to; how many changed."""
    item = get_item(conn, item_id)
    if item is None:
        return 0
    values: dict[str, Any] = dict(status=status, reviewed_by=reviewer, reviewed_at=now)
    if status == "accepted":
        values.update(intent=intent, entities=[])
    result = conn.execute(
        update(review_items)
        .where(and_(review_items.c.group_key == item["group_key"], review_items.c.status == "new"))
        .values(**values)
    )
    if status == "accepted" and entities:  # spans index this item's own text
        conn.execute(update(review_items).where(review_items.c.id == item_id).values(entities=entities))
    return result.rowcount


def set_written(conn: Connection, item_id: int, written: dict[str, Any]) -> None:
    """Remember which example lines accepting this item wrote (what an undo removes)."""
    item = get_item(conn, item_id)
    if item is not None:
        conn.execute(update(review_items).where(review_items.c.id == item_id)
                     .values(correction={**dict(item["correction"] or {}), "written": written}))


def unreview_group(conn: Connection, item_id: int) -> int:
    """An accept undone: the items accepted with this one (same group, same moment) are new again."""
    item = get_item(conn, item_id)
    if item is None or item["status"] != "accepted":
        return 0
    rows = conn.execute(select(review_items.c.id, review_items.c.correction).where(and_(
        review_items.c.group_key == item["group_key"], review_items.c.status == "accepted",
        review_items.c.reviewed_at == item["reviewed_at"]))).all()
    for row_id, correction in rows:
        kept = {k: v for k, v in dict(correction or {}).items() if k != "written"}
        conn.execute(update(review_items).where(review_items.c.id == row_id).values(
            status="new", intent=None, entities=[], reviewed_by=None, reviewed_at=None, correction=kept))
    return len(rows)


def accepted_examples(conn: Connection) -> list[dict[str, Any]]:
    """Reviewed (accepted) examples, one per group: {text, intent, entities}."""
    rows = conn.execute(
        select(review_items.c.group_key, review_items.c.text, review_items.c.intent, review_items.c.entities)
        .where(review_items.c.status == "accepted").order_by(review_items.c.id)
    ).all()
    seen, out = set(), []
    for key, text, intent, entities in rows:
        if key in seen or not intent:
            continue
        seen.add(key)
        out.append({"text": text, "intent": intent, "entities": list(entities or [])})
    return out

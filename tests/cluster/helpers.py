"""Helpers for the cluster tests: pick residents through the cluster's own NLU, read a
conversation back from the tracker store, and check its events are whole and in order."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import cycle
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, text

from bot.ops.cluster import RasaHttpParser as HttpParser  # noqa: E402,F401  (re-exported for the tests)
from bot.security.identity import rest_sender


class AlternatingSession:
    """An aiohttp session whose POSTs go to the given servers in turn (same path):
    bench.load.converse drives one resident across both Rasa servers with it."""

    def __init__(self, session, base_urls: Sequence[str]) -> None:
        self.session = session
        self.bases = list(base_urls)
        self._next = cycle(self.bases)
        self.sent_to: list[str] = []

    def post(self, url: str, **kwargs):
        base = next(self._next)
        for b in self.bases:
            if url.startswith(b):
                url = base + url[len(b):]
                break
        self.sent_to.append(base)
        return self.session.post(url, **kwargs)


def tracker_url(env: Mapping[str, str]) -> str:
    url = env["QC_TRACKER_DB_URL"]
    schema = env.get("QC_TRACKER_DB_SCHEMA")
    if schema:
        url += ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={schema}")
    return url


def stored_events(env: Mapping[str, str], sender: str) -> list[dict[str, Any]]:
    """The conversation of this REST sender (stored as "rest:<sender>", bot/security/identity.py), as
    the tracker store holds it, in insertion order."""
    engine = create_engine(tracker_url(env), future=True)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, type_name, timestamp, action_name, data FROM events "
                                     "WHERE sender_id = :s ORDER BY id"), {"s": rest_sender(sender)}).all()
    finally:
        engine.dispose()
    return [{"id": r.id, "event": r.type_name, "timestamp": r.timestamp, "name": r.action_name,
             "data": json.loads(r.data)} for r in rows]


def check_conversation(events: Sequence[dict[str, Any]], messages: Sequence[str]) -> list[str]:
    """Problems with a stored conversation (empty when none): the user messages must be
    exactly `messages` (in that order, each once), timestamps never go back, and every
    message is answered completely (… action_listen) before the next one starts."""
    problems = []
    users = [e["data"].get("text") for e in events if e["event"] == "user"]
    if users != list(messages):
        problems.append(f"user messages stored {users!r}, sent {list(messages)!r}")
    stamps = [e["timestamp"] for e in events]
    if any(b < a for a, b in zip(stamps, stamps[1:])):
        problems.append("timestamps go back")
    last_action = None
    seen_user = False
    for e in events:
        if e["event"] == "user":
            if seen_user and last_action != "action_listen":
                problems.append(f"user message {e['data'].get('text')!r} stored before the previous turn ended "
                                f"(last action {last_action!r})")
            seen_user = True
            last_action = None
        elif e["event"] == "action":
            last_action = e["name"]
    if seen_user and last_action != "action_listen":
        problems.append(f"last turn not finished (last action {last_action!r})")
    return problems

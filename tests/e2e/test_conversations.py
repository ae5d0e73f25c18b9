"""Conversation tests in Chinese: tests/conversations/test_*.yml, run against the live
servers. Each step names the response keys the assistant must answer with; a
conversation that files a complaint names the exact ticket row it must leave behind."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from bot.storage.tables import ticket_reports, tickets
from tests.e2e.chat import Chat

CONVERSATIONS = Path(__file__).resolve().parents[1] / "conversations"


def _load():
    for path in sorted(CONVERSATIONS.glob("test_*.yml")):
        for conv in yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]:
            yield pytest.param(conv, id=f"{path.stem}:{conv['name']}")


@pytest.mark.parametrize("conv", list(_load()))
def test_conversation(stack, conv):
    chat = Chat(stack)
    for i, step in enumerate(conv["steps"]):
        message = step["user"]
        if isinstance(message, dict):  # generated input, e.g. {"repeat": "楼下…", "times": 500}
            message = message["repeat"] * message["times"]
        turn = chat.say(message)
        where = f"step {i + 1} ({message[:30]!r})"
        assert turn["keys"] == step["expect"], f"{where}: bot answered {turn['keys']}"
        for payload in step.get("buttons", []):
            offered = [b["payload"] for e in turn["bot"] for b in (e.get("data") or {}).get("buttons") or []]
            assert payload in offered, f"{where}: button {payload} not offered (got {offered})"
        for text in step.get("says", []):
            said = "\n".join(e.get("text") or "" for e in turn["bot"])
            assert text in said, f"{where}: {text!r} not in {said!r}"

    with stack.engine().connect() as conn:
        rows = conn.execute(
            select(tickets).join(ticket_reports, ticket_reports.c.ticket_id == tickets.c.id)
            .where(ticket_reports.c.sender_id == chat.conversation_id)
        ).mappings().all()
        expected = conv.get("ticket")
        if expected is None:
            assert rows == [], f"no ticket should be filed, found {[r['number'] for r in rows]}"
            return
        assert len(rows) == 1, f"expected exactly one ticket, found {len(rows)}"
        row = dict(rows[0])
        for key, value in expected.items():
            if key == "description":
                continue
            assert row[key] == value, f"ticket.{key} = {row[key]!r}, expected {value!r}"
        report = conn.execute(select(ticket_reports).where(ticket_reports.c.sender_id == chat.conversation_id)).mappings().one()
        if "description" in expected:
            want = expected["description"]
            if isinstance(want, dict):
                want = want["repeat"] * want["times"]
            assert report["description"] == want
        assert report["sender_id"] == chat.conversation_id

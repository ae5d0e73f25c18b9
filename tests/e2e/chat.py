"""A resident talking to the live assistant over HTTP (aiohttp), and what it answered."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.storage.engine import make_engine

TOKEN = "e2e-" + uuid.uuid4().hex


@dataclass
class Stack:
    rasa_url: str
    db_url: str
    uploads: str | None = None  # QC_UPLOAD_DIR of the stack: a web server next to it uses the same

    def engine(self):
        return make_engine(self.db_url)


class Chat:
    """One resident talking to the assistant; records what the bot answered per turn."""

    def __init__(self, stack: Stack, sender: str | None = None):
        self.stack = stack
        self.sender = sender or "e2e-" + uuid.uuid4().hex[:12]
        self.conversation_id = "rest:" + self.sender  # the REST channel's key (bot/security/identity.py)
        self._seen = 0

    async def _post(self, message: str) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            async with s.post(f"{self.stack.rasa_url}/webhooks/rest/webhook",
                              json={"sender": self.sender, "message": message}) as r:
                assert r.status == 200, await r.text()
                return await r.json()

    async def _events(self) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            async with s.get(f"{self.stack.rasa_url}/conversations/{self.conversation_id}/tracker",
                             params={"token": TOKEN, "include_events": "ALL"}) as r:
                assert r.status == 200, await r.text()
                return (await r.json())["events"]

    def events(self) -> list[dict[str, Any]]:
        """Every event the Rasa server holds for this conversation now."""
        return asyncio.run(self._events())

    def say(self, message: str) -> dict[str, Any]:
        """Send a message; returns {"messages": REST output, "keys": response keys, "bot": bot events}."""
        async def go():
            out = await self._post(message)
            events = await self._events()
            return out, events

        out, events = asyncio.run(go())
        if len(events) < self._seen:
            self._seen = 0  # the conversation was erased (删除我的信息): it starts again
        new = events[self._seen:]
        self._seen = len(events)
        bot = [e for e in new if e.get("event") == "bot"]
        keys = [(e.get("metadata") or {}).get("utter_action") for e in bot]
        return {"messages": out, "keys": keys, "bot": bot, "events": new}

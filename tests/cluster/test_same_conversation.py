"""One resident's conversation served by both Rasa servers: the tracker lives in
PostgreSQL, the Redis lock store serialises the servers, so messages sent alternately
(and even at the same moment) to the two servers are processed one after another, in
order, none lost or stored twice."""
from __future__ import annotations

import asyncio
import uuid

import aiohttp

from bench.load import check_tickets, converse, pick_residents
from tests.cluster.helpers import AlternatingSession, HttpParser, check_conversation, stored_events


def test_alternating_servers_complete_one_complaint(cluster, production_env):
    resident = pick_residents(HttpParser(cluster.rasa_urls[0], cluster.api_token), 8)[7]
    sender = "cluster-alt-" + uuid.uuid4().hex[:10]

    async def go():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            alt = AlternatingSession(s, cluster.rasa_urls)
            return await converse(alt, cluster.rasa_urls[0], resident, sender), alt.sent_to

    outcome, sent_to = asyncio.run(go())
    assert outcome.error is None and outcome.ticket, outcome
    assert sent_to[:4] == cluster.rasa_urls * 2  # really alternated: 1, 2, 1, 2 …
    events = stored_events(production_env, sender)
    users = [e["data"].get("text") for e in events if e["event"] == "user"]
    assert users[0] == resident.first and users[-1] == "/affirm" and len(users) == outcome.turns
    assert check_conversation(events, users) == []
    assert check_tickets(production_env["QC_DATABASE_URL"], [outcome])["duplicates"] == 0


def test_simultaneous_messages_on_both_servers_are_serialised(cluster, production_env):
    """Four messages of one sender posted at the same moment, two to each server: each is
    stored once, and each turn ends (action_listen) before the next message's turn starts."""
    sender = "cluster-race-" + uuid.uuid4().hex[:10]
    messages = ["你好", "楼下有人遛狗不牵绳", "在哪里反映问题", "谢谢"]

    async def post(session, base, message):
        async with session.post(f"{base}/webhooks/rest/webhook", json={"sender": sender, "message": message}) as r:
            return r.status, await r.json(content_type=None)

    async def go():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            return await asyncio.gather(*(post(s, cluster.rasa_urls[i % 2], m) for i, m in enumerate(messages)))

    replies = asyncio.run(go())
    assert [status for status, _ in replies] == [200] * 4
    assert all(body for _, body in replies), replies  # every message answered
    events = stored_events(production_env, sender)
    users = [e["data"].get("text") for e in events if e["event"] == "user"]
    listing = [(e["id"], e["event"], e["name"] or e["data"].get("text")) for e in events]
    assert sorted(users) == sorted(messages), (replies, listing)  # none lost, none twice
    assert check_conversation(events, users) == []

"""Faults injected into the running cluster; each test says what it injected and what
it checked."""
from __future__ import annotations

import asyncio
import uuid

import aiohttp

from bench.load import check_tickets, converse, pick_residents
from tests.cluster.helpers import HttpParser, check_conversation, stored_events


class _FaultAt:
    """aiohttp session wrapper: runs `inject` just before the n-th POST (1-based)."""

    def __init__(self, session, n: int, inject) -> None:
        self.session, self.n, self.inject, self.posts = session, n, inject, 0

    def post(self, url, **kwargs):
        self.posts += 1
        if self.posts == self.n:
            self.inject()
        return self.session.post(url, **kwargs)


def test_action_server_killed_mid_conversation(cluster, production_env):
    """Injected: SIGKILL of action server 1 after the resident's first turn (the form and
    the ticket submission still to come). Checked: every later turn is answered normally
    (nginx passes the action call to action server 2), the complaint is filed once, the
    conversation is whole in the tracker store, and nginx really met the dead server."""
    resident = pick_residents(HttpParser(cluster.rasa_urls[0], cluster.api_token), 9)[8]
    sender = "cluster-fault-actions-" + uuid.uuid4().hex[:8]
    dead_port = cluster.action_ports[0]

    async def go():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            return await converse(_FaultAt(s, 2, lambda: cluster.kill("actions-1")), cluster.proxy_url, resident,
                                  sender)

    try:
        outcome = asyncio.run(go())
    finally:
        cluster.start_process("actions-1")  # restore for the other tests
    assert outcome.error is None and outcome.ticket, outcome
    assert outcome.submit_failures == 0
    tickets = check_tickets(production_env["QC_DATABASE_URL"], [outcome])
    assert (tickets["lost"], tickets["duplicates"], tickets["number_mismatch"]) == (0, 0, 0)
    events = stored_events(production_env, sender)
    users = [e["data"].get("text") for e in events if e["event"] == "user"]
    assert check_conversation(events, users) == []
    # nginx tried the killed server, got "connection refused", went on to the other one.
    error_log = (cluster.work_dir / "nginx-error.log").read_text(encoding="utf-8")
    assert "Connection refused) while connecting to upstream" in error_log
    assert f"127.0.0.1:{dead_port}/webhook" in error_log


def test_all_action_servers_down_at_submission_then_retry(cluster, production_env):
    """Injected: both action servers killed just before the resident confirms (/affirm).
    Checked: the resident is told 系统繁忙，您刚才的信息已记下… (nginx's 502 reaches Rasa,
    bot/rasa_ext/actions_down.py), no ticket is stored while they are down; after they are restarted
    the resident's next message first handles the kept /affirm, which files the complaint
    exactly once, under the number the resident is told."""
    from bench.load import TICKET_RE, Outcome, reply_kind
    from bot.channels.common import MSG_KEPT

    resident = pick_residents(HttpParser(cluster.rasa_urls[0], cluster.api_token), 10)[9]
    sender = "cluster-fault-noactions-" + uuid.uuid4().hex[:8]
    url = f"{cluster.proxy_url}/webhooks/rest/webhook"
    answers = {"photo": "/deny", "phone": "/deny", "confidential": "/deny", "summary": "/affirm",
               "submit_failed": "提交", "location": resident.place, "category": f"/{resident.category}"}

    async def say(s, message, status=200):
        async with s.post(url, json={"sender": sender, "message": message}) as r:
            assert r.status == status, await r.text()
            body = await r.json(content_type=None)
            return body, reply_kind("\n".join(m.get("text") or "" for m in body) if status == 200 else "")

    async def go():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            message, kind = resident.first, None
            for _ in range(8):
                _, kind = await say(s, message)
                if kind == "summary":
                    break
                message = answers.get(kind, resident.first)
            assert kind == "summary", kind
            cluster.kill("actions-1")
            cluster.kill("actions-2")
            try:
                down, _ = await say(s, "/affirm", 503)
                stored_while_down = check_tickets(production_env["QC_DATABASE_URL"], [])["reports_stored"]
            finally:
                cluster.start_process("actions-1")
                cluster.start_process("actions-2")
                cluster.wait_actions_reachable()  # past nginx's fail_timeout: the resident retries later
            # The resident writes again: the kept /affirm is handled first.
            message, texts = "好了吗", []
            for _ in range(8):
                body, kind = await say(s, message)
                texts.append("\n".join(m.get("text") or "" for m in body))
                if kind == "filed":
                    break
                message = answers.get(kind, resident.first)
            return down, stored_while_down, kind, texts

    before = check_tickets(production_env["QC_DATABASE_URL"], [])["reports_stored"]
    down, stored_while_down, kind, texts = asyncio.run(go())
    assert down == {"error": "actions_unavailable", "message": MSG_KEPT}
    assert len(texts) == 1  # filed on the first message after the outage
    assert stored_while_down == before
    assert kind == "filed", texts
    outcome = Outcome(sender, confirmed=True, ticket=TICKET_RE.search(texts[-1]).group(0))
    tickets = check_tickets(production_env["QC_DATABASE_URL"], [outcome])
    assert (tickets["lost"], tickets["duplicates"], tickets["number_mismatch"]) == (0, 0, 0)
    assert tickets["reports_stored"] == before + 1
    events = stored_events(production_env, sender)
    assert check_conversation(events, [e["data"].get("text") for e in events if e["event"] == "user"]) == []

"""Load: N residents complete whole complaints at once through nginx, spread over both
Rasa servers; every confirmed complaint exactly once in PostgreSQL, every conversation
whole and in order in the tracker store, zero errors."""
from __future__ import annotations

import asyncio

from bench.load import check_tickets, pick_residents, run_residents
from tests.cluster.helpers import HttpParser, check_conversation, stored_events

RESIDENTS = 6  # small here; bench/cluster.py runs 50
# The last ticket event stored before the load run: other tests share the cluster (and read the
# subscriber queue), so the event check below counts only what the run caused.
_BEFORE_RUN = {"event_id": 0}


def _last_event_id(url: str) -> int:
    from sqlalchemy import func, select

    from bot.storage.engine import make_engine
    from bot.storage.tables import ticket_events

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.coalesce(func.max(ticket_events.c.id), 0))).scalar_one()
    finally:
        engine.dispose()


def test_residents_complete_complaints_through_the_proxy(cluster, production_env):
    before = check_tickets(production_env["QC_DATABASE_URL"], [])  # other tests share the cluster
    _BEFORE_RUN["event_id"] = _last_event_id(production_env["QC_DATABASE_URL"])
    residents = pick_residents(HttpParser(cluster.rasa_urls[0], cluster.api_token), RESIDENTS)
    run = asyncio.run(run_residents(cluster.proxy_url, residents, concurrency=RESIDENTS, tag="cluster-load"))

    summary = run.summary()
    assert summary["errors"] == 0, summary["error_samples"]
    assert summary["tickets"] == RESIDENTS
    tickets = check_tickets(production_env["QC_DATABASE_URL"], run.outcomes)
    # A complaint may join an earlier test's open ticket (并单: same category and community within
    # 7 days), so tickets grow by at most RESIDENTS; every confirmed complaint is a report, once.
    new_tickets = tickets.pop("tickets_stored") - before["tickets_stored"]
    assert 1 <= new_tickets <= RESIDENTS
    assert tickets == {
        "confirmed": RESIDENTS, "reports_stored": before["reports_stored"] + RESIDENTS,
        "lost": 0, "duplicates": 0, "number_mismatch": 0,
        "stored_without_confirmation": before["reports_stored"], "numbers_match": before["reports_stored"] == 0,
    }
    for outcome in run.outcomes:
        events = stored_events(production_env, outcome.sender)
        users = [e["data"].get("text") for e in events if e["event"] == "user"]
        # The resident's own turns, as many as it sent, the last its confirmation.
        assert len(users) == outcome.turns and users[-1] == "/affirm", users
        assert check_conversation(events, users) == []
        bot_texts = [e["data"].get("text") or "" for e in events if e["event"] == "bot"]
        assert sum(outcome.ticket in t for t in bot_texts) == 1  # the number told once


def test_both_rasa_servers_served_residents(cluster):
    """Round robin really spread the residents: nginx's log names both Rasa servers as
    the upstream of REST requests."""
    from pathlib import Path

    access = Path(cluster.work_dir, "nginx-access.log").read_text(encoding="utf-8").splitlines()
    rest = [line for line in access if "POST /webhooks/rest/webhook" in line]
    assert len(rest) >= RESIDENTS * 4
    for port in cluster.rasa_ports:
        assert sum(f"upstream=127.0.0.1:{port} " in line for line in rest) >= RESIDENTS, port


def test_conversation_and_ticket_events_reached_rabbitmq(cluster, production_env):
    """After the load run: Rasa's Pika broker put every resident's conversation events in
    its queue, and the web server's publisher put every ticket event on our exchange
    (read by the subscriber queue bound before the cluster started), each once."""
    import json
    import time

    from sqlalchemy import select

    from bot.storage.engine import make_engine
    from bot.storage.tables import ticket_events
    from tests.cluster.conftest import read_queue

    rasa_events = asyncio.run(read_queue(production_env["QC_RASA_EVENTS_QUEUE"]))
    senders = {json.loads(body)["sender_id"] for _, _, body in rasa_events}
    assert sum(s.startswith("rest:bench-cluster-load-") for s in senders) == RESIDENTS

    engine = make_engine(production_env["QC_DATABASE_URL"])
    with engine.connect() as conn:
        expected = {f"ticket_event:{i}" for (i,) in conn.execute(
            select(ticket_events.c.id).where(ticket_events.c.id > _BEFORE_RUN["event_id"]))}
    engine.dispose()
    got = []
    deadline = time.monotonic() + 30  # the notifier publishes every 2 s
    while time.monotonic() < deadline:
        got += [m for m, _, _ in asyncio.run(read_queue(production_env["QC_TEST_SUBSCRIBER_QUEUE"], 1.0))]
        if expected <= set(got):
            break
    assert expected and expected <= set(got)
    ids = [m for m in got if m.startswith("ticket_event:")]
    assert len(ids) == len(set(ids))  # none twice

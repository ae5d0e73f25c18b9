"""Issue 13 item 1, from the outside: the action server as an attacker on the network sees it.

The real stack (bot.ops.serve.start_stack: action server + Rasa, a fresh SQLite ticket store)
with a known QC_ACTIONS_TOKEN in its environment. The attacker posts a recorded tracker that
files a complaint straight to /webhook (what filed a ticket on 1b9772b); a resident talks
through Rasa, which sends the secret, and is served as before."""
from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import aiohttp
import pytest

from bot.nlu.explain import latest_model
from bot.ops.serve import start_stack, stop_stack
from bot.services.setup import prepare_store
from bot.storage.engine import make_engine
from tests.security.conftest import row_counts

TRACKER = Path(__file__).resolve().parents[1] / "data" / "trackers" / "confirm_submit.json"
SECRET = "act-" + uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("actions_exposure")
    db_url = f"sqlite:///{tmp / 'tickets.db'}"
    prepare_store(make_engine(db_url))
    rasa_port, actions_port = _free_port(), _free_port()
    procs = start_stack(rasa_port, actions_port, model=str(latest_model()), log_dir=tmp,
                        env={"QC_DATABASE_URL": db_url, "QC_ACTIONS_TOKEN": SECRET})
    try:
        yield {"rasa": f"http://127.0.0.1:{rasa_port}", "actions_port": actions_port, "db": db_url, "procs": procs}
    finally:
        stop_stack(procs)


def _action_call() -> dict:
    tracker = json.loads(TRACKER.read_text(encoding="utf-8"))
    tracker["sender_id"] = "oForgedWeChatResident0000001"
    return {"next_action": "action_submit_complaint", "sender_id": tracker["sender_id"], "tracker": tracker,
            "domain": {}, "version": "3.6.21"}


async def _post(url: str, headers: dict) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.post(url, json=_action_call(), headers=headers) as r:
            return r.status, await r.text()


def _ticket_rows(db_url: str) -> dict:
    counts = row_counts(make_engine(db_url))
    return {k: counts[k] for k in ("tickets", "ticket_reports", "ticket_events")}


@pytest.mark.asyncio
async def test_a_forged_action_call_without_the_secret_gets_401_and_files_nothing(served):
    url = f"http://127.0.0.1:{served['actions_port']}/webhook"
    before = _ticket_rows(served["db"])
    for headers in ({}, {"Authorization": "Bearer wrong-" + SECRET}, {"Authorization": SECRET},
                    {"Authorization": "Bearer " + SECRET[:-1]}):
        status, body = await _post(url, headers)
        assert (status, json.loads(body)) == (401, {"error": "unauthorized"}), headers
    assert _ticket_rows(served["db"]) == before == {"tickets": 0, "ticket_reports": 0, "ticket_events": 0}


@pytest.mark.asyncio
async def test_the_action_list_needs_the_secret_too_and_health_does_not(served):
    base = f"http://127.0.0.1:{served['actions_port']}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.get(f"{base}/actions") as r:
            assert r.status == 401
        async with s.get(f"{base}/actions", headers={"Authorization": f"Bearer {SECRET}"}) as r:
            assert r.status == 200 and {"name": "action_submit_complaint"} in await r.json()
        async with s.get(f"{base}/health") as r:
            assert (r.status, await r.json()) == (200, {"status": "ok"})


def test_the_action_server_listens_on_loopback_only(served):
    """127.0.0.2 is loopback too: only a server bound to every address (0.0.0.0, rasa_sdk's
    default) answers there. Every non-loopback address of this machine must refuse as well."""
    port = served["actions_port"]
    addresses = {"127.0.0.2"}
    try:
        addresses |= {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
                      if not a[4][0].startswith("127.")}
    except socket.gaierror:
        pass
    for address in sorted(addresses):
        with socket.socket() as s:
            s.settimeout(3)
            assert s.connect_ex((address, port)) != 0, f"action server answers on {address}:{port}"
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass  # and it does answer on loopback


def test_the_secret_is_in_no_command_line(served):
    for proc in served["procs"]:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert SECRET.encode() not in cmdline


@pytest.mark.asyncio
async def test_rasa_sends_the_secret_so_residents_are_served_and_tickets_filed(served):
    """The positive control: a whole complaint over REST files exactly one ticket (the
    action calls carry the secret Rasa was given in its environment)."""
    sender = "exposure-" + uuid.uuid4().hex[:8]
    before = _ticket_rows(served["db"])["tickets"]
    said = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        for message in ("小区门口的垃圾好几天没人清运了，臭得很", "新城区海拉尔东路街道公主府社区", "/deny", "/deny", "/affirm"):
            async with s.post(f"{served['rasa']}/webhooks/rest/webhook",
                              json={"sender": sender, "message": message}) as r:
                assert r.status == 200
                said.append(" ".join(m.get("text") or "" for m in await r.json()))
    assert "工单号 QC-" in said[-1], said
    assert _ticket_rows(served["db"])["tickets"] == before + 1

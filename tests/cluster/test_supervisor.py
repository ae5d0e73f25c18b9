"""issue 20 items 1 and 4: `python -m bot cluster` run as a real process (its own supervisor
loop, not the test's), on the tests' private schemas, lock prefix and queues.

Injected, in turn, under load through nginx: SIGKILL of rasa-1, actions-1, web and nginx.
Checked from outside: the supervisor logs each death (name, pid, signal) and the killed
process is back (a new pid that answers); residents keep being served; every complaint
a resident got a number for is stored exactly once and no resident has two (database
rows). Every child listens on loopback only. Finally a child that keeps dying makes the
cluster exit 1 saying so, with nothing left serving."""
from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from pathlib import Path

import aiohttp
import psutil

from bench.load import check_tickets, converse, pick_residents
from bot.ops.cluster import RasaHttpParser
from tests.ops.supervised import Supervised, answers

TOKEN = "cluster-supervisor-" + uuid.uuid4().hex[:8]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _upstreams(conf: str, name: str) -> list:
    block = re.search(rf"upstream {name} \{{(.*?)\}}", conf, re.S).group(1)
    return re.findall(r"server (127\.0\.0\.1:\d+)", block)


class _KillAt:
    """aiohttp session wrapper: runs `inject` just before the n-th POST of all residents."""

    def __init__(self, session, n: int, inject) -> None:
        self.session, self.n, self.inject, self.posts = session, n, inject, 0

    def post(self, url, **kwargs):
        self.posts += 1
        if self.posts == self.n:
            self.inject()
        return self.session.post(url, **kwargs)


def test_cluster_supervisor_restarts_each_kind_of_process_under_load(production_env, tmp_path):
    proxy_port = _free_port()
    env = {**production_env, "QC_CLUSTER_DIR": str(tmp_path / "cluster"), "QC_RASA_TOKEN": TOKEN,
           "QC_RESTART_BACKOFF": "0.5", "QC_RESTART_LIMIT": "3"}
    c = Supervised(["cluster", "--instances", "2", "--proxy-port", str(proxy_port)], env, tmp_path / "cluster.out")
    try:
        c.wait_for("Press Ctrl-C to stop.", 480)
        work_dir = re.search(r"Config and logs:\s+(\S+)/ \(nginx.conf", c.output()).group(1)  # as printed
        conf = (Path(work_dir) / "nginx.conf").read_text(encoding="utf-8")
        proxy = f"http://127.0.0.1:{proxy_port}"
        rasa = _upstreams(conf, "qc_rasa")
        addresses = {"rasa-1": rasa[0], "rasa-2": rasa[1], "actions-1": _upstreams(conf, "qc_actions")[0],
                     "actions-2": _upstreams(conf, "qc_actions")[1], "web": _upstreams(conf, "qc_web")[0],
                     "nginx": f"127.0.0.1:{proxy_port}"}
        c.ports = {name: int(a.rsplit(":", 1)[1]) for name, a in addresses.items()}
        health = {"rasa-1": f"http://{rasa[0]}/", "actions-1": f"http://{_upstreams(conf, 'qc_actions')[0]}/health",
                  "web": f"http://{_upstreams(conf, 'qc_web')[0]}/health", "nginx": f"{proxy}/health"}

        # issue 20 item 4: nothing listens beyond loopback
        for name in ("rasa-1", "rasa-2", "actions-1", "actions-2", "web", "nginx"):
            proc = psutil.Process(c.pid(name))
            listening = [conn.laddr for p in [proc, *proc.children(recursive=True)]
                         for conn in p.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN]
            assert listening and all(a.ip == "127.0.0.1" for a in listening), (name, listening)

        residents = pick_residents(RasaHttpParser(f"http://{rasa[0]}", TOKEN), 12)
        outcomes = []
        for phase, name in enumerate(("rasa-1", "actions-1", "web", "nginx")):
            killed = []

            async def load():
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as s:
                    session = _KillAt(s, 4, lambda: killed.append(c.kill(name)))
                    return await asyncio.gather(*[
                        converse(session, proxy, r, f"cl-sup-{name}-{i}-{uuid.uuid4().hex[:6]}")
                        for i, r in enumerate(residents[phase * 3:phase * 3 + 3])])

            got = asyncio.run(load())
            assert killed, name
            c.wait_restarted(name, killed[0], health[name])
            outcomes += got
            if name != "nginx":  # the others kept serving while it was down
                assert any(o.ticket for o in got), (name, got)
            # and the cluster serves a resident from start to end after the restart
            after = asyncio.run(_one(proxy, residents[(phase + 1) % 12], f"cl-sup-after-{name}-{uuid.uuid4().hex[:6]}"))
            assert after.ticket, after
            outcomes.append(after)

        filed = [o for o in outcomes if o.ticket]
        tickets = check_tickets(production_env["QC_DATABASE_URL"], filed)
        assert (tickets["lost"], tickets["duplicates"], tickets["number_mismatch"]) == (0, 0, 0), (tickets, outcomes)

        # a child that keeps dying: web killed each time it comes back (3 restarts allowed, then exit 1)
        kills = 1  # web died once above
        while c.proc.poll() is None and kills < 5:
            old = c.kill("web")
            kills += 1
            deadline = time.monotonic() + 60
            while c.proc.poll() is None and c.pid("web") in (None, old) and time.monotonic() < deadline:
                time.sleep(0.2)
        c.proc.wait(timeout=120)
        assert c.proc.returncode == 1
        assert re.search(r"supervisor: giving up: web \(pid \d+\) died: killed by SIGKILL; it died 4 times within "
                         r"300 s; stopping everything", c.output())
        assert not answers(proxy + "/health") and not answers(health["rasa-1"])
    finally:
        c.kill_all()


async def _one(proxy: str, resident, sender: str):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as s:
        return await converse(s, proxy, resident, sender)

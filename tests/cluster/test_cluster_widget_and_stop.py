"""`python -m bot cluster` as an operator runs it, checked from outside:

- The web widget works through nginx. /widget/ used to tell browsers to reach Socket.IO
  at http://<Host header>:<internal proxy port> — a port that is never public (the
  handshake failed, residents saw 暂时连不上服务器) and an address any client could choose
  with its Host header. Now the cluster's widget connects to the origin the page came
  from (nginx proxies /socket.io/ to Rasa) and the Host header is never echoed: a resident
  in Chromium files a complaint through nginx and it is stored once, from the widget.
- SIGTERM stops everything quickly. The web server used to linger until stop_stack's
  SIGKILL (its RabbitMQ connection, opened after start-up, kept aiohttp's shutdown waiting
  for 60 s): the command took 17–35 s. Now it exits 0 well within 15 s (a generous bound),
  every child is gone and nothing listens on any of the cluster's ports."""
from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, select

from bot.storage.tables import ticket_reports, tickets
from tests.cluster.conftest import read_queue
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.ops.supervised import Supervised

TICKET = re.compile(r"QC-\d{6}-\d{4}")
BOT_WAIT_MS = 60000
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raw_get(port: int, path: str, host: str) -> str:
    """A GET with a Host header of the client's choosing (what a browser cannot forge, a script can)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode("utf-8", errors="replace")




def test_widget_files_a_complaint_through_nginx_then_sigterm_stops_the_cluster_fast(production_env, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make browser-deps)")
    proxy_port = _free_port()
    env = {**production_env, "QC_CLUSTER_DIR": str(tmp_path / "cluster"),
           "QC_RASA_TOKEN": "cluster-widget-" + uuid.uuid4().hex[:8]}
    env.pop("QC_WIDGET_SOCKET_URL", None)
    c = Supervised(["cluster", "--instances", "2", "--proxy-port", str(proxy_port)], env, tmp_path / "cluster.out")
    try:
        c.wait_for("Press Ctrl-C to stop.", 480)
        conf = (tmp_path / "cluster" / "nginx.conf").read_text(encoding="utf-8")
        ports = {int(p) for p in re.findall(r"(?:server|listen) 127\.0\.0\.1:(\d+)", conf)}
        internal = int(re.search(r"# Internal.*?listen 127\.0\.0\.1:(\d+);", conf, re.S).group(1))
        assert proxy_port in ports and internal in ports

        # the page names no address of its own choosing: same origin, whatever the Host header says
        page = _raw_get(proxy_port, "/widget/", "evil.example")
        assert page.startswith("HTTP/1.1 200"), page[:300]
        assert '<meta name="qc-socket-url" content="">' in page
        assert "evil.example" not in page and str(internal) not in page
        csp = re.search(r"(?im)^Content-Security-Policy: (.*)$", page).group(1)
        assert "connect-src 'self';" in csp

        # a resident in Chromium, on the widget page nginx serves
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                ctx = browser.new_context(locale="zh-CN")
                pg = ctx.new_page()
                pg.goto(f"http://127.0.0.1:{proxy_port}/widget/")
                expect(pg.get_by_label("输入您要反映的问题")).to_be_visible()
                expect(pg.locator("#qc-status")).to_be_empty(timeout=BOT_WAIT_MS)  # connected
                bots = pg.locator(".qc-msg-bot")

                def say(text: str, expect_bot: str) -> None:
                    pg.get_by_label("输入您要反映的问题").fill(text)
                    pg.get_by_role("button", name="发送", exact=True).click()
                    expect(bots.last).to_contain_text(expect_bot, timeout=BOT_WAIT_MS)

                def click(title: str, expect_bot) -> None:
                    pg.locator("#qc-replies").get_by_role("button", name=title, exact=True).click()
                    expect(bots.last).to_contain_text(expect_bot, timeout=BOT_WAIT_MS)

                say("新城区公主府社区 楼下有人遛狗不牵绳", "照片")
                click("跳过", "联系电话")
                click("跳过", "请确认您的诉求")
                click("确认提交", TICKET)
                number = TICKET.search(bots.last.inner_text()).group(0)
                ctx.close()
            finally:
                browser.close()

        engine = create_engine(production_env["QC_DATABASE_URL"], future=True)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(tickets.c.number, tickets.c.category, ticket_reports.c.channel)
                                    .join(ticket_reports, ticket_reports.c.ticket_id == tickets.c.id)
                                    .where(tickets.c.number == number)).all()
        finally:
            engine.dispose()
        assert [tuple(r) for r in rows] == [(number, "dog", "socketio")]

        # the web server's notifier published the new ticket's events (its RabbitMQ connection is open)
        deadline = time.monotonic() + 60
        published = []
        while not published and time.monotonic() < deadline:
            published = [m for m in asyncio.run(read_queue(production_env["QC_TEST_SUBSCRIBER_QUEUE"], 1))
                         if json.loads(m[2]).get("ticket_number") == number]
        assert published

        # SIGTERM, as systemd or Ctrl-C would: exit 0, every child gone, nothing listening
        children = [q.pid for q in psutil.Process(c.proc.pid).children(recursive=True)]
        assert len(children) >= 6
        started = time.monotonic()
        c.proc.send_signal(signal.SIGTERM)
        try:
            code = c.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 15 s after SIGTERM:\n{c.output()[-2000:]}")
        took = time.monotonic() - started
        assert code == 0, c.output()[-2000:]
        left = [pid for pid in children
                if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert not left, (left, took)
        listening = {conn.laddr.port for conn in psutil.net_connections(kind="inet")
                     if conn.status == psutil.CONN_LISTEN and conn.laddr.ip == "127.0.0.1"}
        assert not (ports & listening), (ports & listening, took)
    finally:
        c.kill_all()

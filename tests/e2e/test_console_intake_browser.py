"""来电登记 in a real browser (Debian's headless Chromium driven by Playwright): our web server
as a process, its /model/parse answered by a stand-in that replays what the real model
answered (tests/data/parses/intake.json; a real Rasa server takes minutes to start, and the
console only needs its parse). The page's own script (static/intake.js) asks for the
proposal as the operator types and prefills the form; the operator corrects the category
and files. Screenshot: docs/screenshots/console-intake.png (QC_UPDATE_SCREENSHOTS=1, or when missing).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.console import services as svc
from bot.console.uow import ConsoleUnitOfWork
from bot.paths import REPO_ROOT
from bot.retraining.tables import review_items
from bot.services.setup import prepare_store
from bot.storage.engine import make_engine
from bot.storage.tables import ticket_reports, tickets
from tests.e2e.conftest import CHROMIUM, _free_port, wait_http

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
PARSES = json.loads((REPO_ROOT / "tests" / "data" / "parses" / "intake.json").read_text(encoding="utf-8"))["parses"]
PASSWORD = "dispatcher-password"
NLU_TOKEN = "stand-in-token"

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (make browser-deps)")


class _Parse(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        found = PARSES.get(body.get("text")) if f"token={NLU_TOKEN}" in self.path else None
        data = json.dumps(found or {"message": "not recorded"}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(our web server's URL, its database URL), /model/parse served by the stand-in."""
    tmp = tmp_path_factory.mktemp("intake")
    db_url = f"sqlite:///{tmp / 'tickets.db'}"
    engine = make_engine(db_url)
    prepare_store(engine)
    svc.create_user(ConsoleUnitOfWork(engine), "disp_e2e", "话务席（测试）", PASSWORD, "dispatcher",
                    ["dispatch_center"], datetime.now(timezone.utc))
    engine.dispose()
    nlu = ThreadingHTTPServer(("127.0.0.1", 0), _Parse)
    thread = threading.Thread(target=nlu.serve_forever, daemon=True)
    thread.start()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_WEB_HOST": "127.0.0.1", "QC_WEB_PORT": str(port),
           "QC_RASA_URL": f"http://127.0.0.1:{nlu.server_address[1]}", "QC_RASA_TOKEN": NLU_TOKEN,
           "QC_DATABASE_URL": db_url, "QC_UPLOAD_DIR": str(tmp / "uploads"), "QC_NOTIFIER": "0"}
    with open(tmp / "web.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.web.app"], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}", db_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        nlu.shutdown()
        nlu.server_close()
        thread.join(timeout=5)


def test_operator_types_the_call_gets_a_proposal_corrects_it_and_files(web, browser, tmp_path) -> None:
    base, db_url = web
    errors: list[str] = []
    desk = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    try:
        page = desk.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/console/")
        page.get_by_label("用户名").fill("disp_e2e")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.get_by_role("link", name="来电登记").click()
        expect(page.get_by_role("heading", name="来电登记")).to_be_visible()

        page.get_by_label("地点").fill("新城区公主府社区")
        page.get_by_label("来电内容").fill("楼下有人遛狗不牵绳")
        proposal = page.locator("#intake-proposal-text")
        expect(proposal).to_contain_text("类别：文明养犬")
        expect(proposal).to_contain_text("新城区 海拉尔东路街道 公主府社区居委会")
        expect(proposal).to_contain_text("主办 市公安局养犬管理")
        category, street = page.get_by_label("类别"), page.get_by_label("街道（属地）")
        expect(category).to_have_value("dog")
        expect(street).to_have_value("150102001")

        page.get_by_label("联系电话").fill("13847115678")
        category.select_option("noise")  # the caller's real complaint: the barking
        _screenshot(page, "console-intake.png", tmp_path)
        page.get_by_role("button", name="登记工单").click()
        expect(page.get_by_role("status")).to_contain_text("已登记，工单号")
        number = re.search(r"QC-\d{6}-\d{4}", page.get_by_role("status").inner_text()).group(0)
        assert errors == []
    finally:
        desk.close()

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            ticket = conn.execute(select(tickets)).one()
            report = conn.execute(select(ticket_reports)).one()
            item = conn.execute(select(review_items)).one()
    finally:
        engine.dispose()
    assert (ticket.number, ticket.category, ticket.street_code, ticket.community_code) == (
        number, "noise", "150102001", "150102001001")
    assert (report.channel, report.phone) == ("phone", "13847115678")
    assert (item.source, item.predicted_intent, item.correction) == (
        "ticket_category", "dog", {"intent": "noise", "chosen_by": "operator"})


def _screenshot(page, name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    target = SCREENSHOTS / name
    if os.environ.get("QC_UPDATE_SCREENSHOTS") == "1" or not target.exists():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)

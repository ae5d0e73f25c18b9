"""The work console in a real browser (Debian's headless Chromium driven by Playwright,
no browser download), against the real servers: Rasa + actions + our web server.

A resident files a complaint in the chat (REST); the grid worker of that street logs in
on a phone-sized screen, accepts and resolves it; the outbox pushes the news to the
resident through Rasa's HTTP API; the resident's status query says 办结, and their
回访 answer closes the ticket. Screenshots of the queue (phone) and the dashboard
(desktop) go to docs/screenshots/ when QC_UPDATE_SCREENSHOTS=1 (or when missing).
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.console import services as svc
from bot.console.uow import ConsoleUnitOfWork
from bot.paths import REPO_ROOT
from bot.storage.tables import ticket_events, tickets
from tests.e2e.chat import TOKEN, Chat, Stack
from tests.e2e.conftest import CHROMIUM, _free_port, wait_http

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
PASSWORD = "grid-worker-password"
TICKET = re.compile(r"QC-\d{6}-\d{4}")

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (make browser-deps)")



@pytest.fixture(scope="module")
def console(stack: Stack, tmp_path_factory):
    """Our web server on the stack's store, pushing notices to its Rasa server."""
    if not (REPO_ROOT / "bot" / "console" / "static" / "vendor" / "echarts.min.js").exists():
        subprocess.run(["make", "-s", "console-assets"], cwd=REPO_ROOT, check=True)
    tmp = tmp_path_factory.mktemp("console")
    now = datetime.now(timezone.utc)
    engine = stack.engine()
    for name, role, queues in (("grid_e2e", "worker", ["street:150102001"]), ("admin_e2e", "admin", [])):
        svc.create_user(ConsoleUnitOfWork(engine), name, f"{name}（测试）", PASSWORD, role, queues, now)
    _demo_tickets(engine, now)
    engine.dispose()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_WEB_HOST": "127.0.0.1", "QC_WEB_PORT": str(port),
           "QC_RASA_URL": stack.rasa_url, "QC_RASA_TOKEN": TOKEN, "QC_DATABASE_URL": stack.db_url,
           "QC_UPLOAD_DIR": str(tmp / "uploads"), "QC_NOTIFIER_INTERVAL": "0.5"}
    with open(tmp / "web.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.web.app"], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _demo_tickets(engine, now: datetime) -> None:
    """A few more tickets so the screenshots show a working day: one overdue, one nearly
    due, and handled tickets with 回访 answers in other streets for the ranking. (No
    community: conversation tests in the same session never merge into them.)"""
    from datetime import timedelta

    from bot.domain.model import ComplaintDraft, DispatchClass, Route
    from bot.services.tickets import file_complaint

    def new(key, category, text, street, lead, cls, at):
        draft = ComplaintDraft(f"demo-{key}", "rest", category, text, text[:12], None, None, False, f"demo-{key}")
        route = Route(lead, (f"street:{street}",), street[:6], street, None, cls, "演示")
        return file_complaint(ConsoleUnitOfWork(engine), draft, route, at)

    new("ads", "illegal_ads", "哲里木路社区单元门贴满小广告 撕了又贴", "150102001", "urban_management",
        DispatchClass.NORMAL, now - timedelta(days=3))
    new("drain", "drainage", "八一路社区下水道堵了 污水漫到路上", "150102001", "drainage_authority",
        DispatchClass.UTILITIES, now - timedelta(minutes=100))
    with ConsoleUnitOfWork(engine) as uow:
        admin = svc.Principal.of(uow.console.get_user_by_username("admin_e2e"))
    for i, (street, answer) in enumerate((("150102002", "满意"), ("150103001", "基本满意"), ("150105001", None))):
        t = new(f"done{i}", "sanitation", "垃圾桶满了好几天没人清运", street, "sanitation_authority",
                DispatchClass.NORMAL, now - timedelta(hours=5))
        svc.perform(ConsoleUnitOfWork(engine), admin, t.ticket_id, "accept", {}, now - timedelta(hours=4))
        svc.perform(ConsoleUnitOfWork(engine), admin, t.ticket_id, "resolve", {"result": "已清运"}, now - timedelta(hours=1))
        svc.record_follow_up(ConsoleUnitOfWork(engine), t.number, f"demo-done{i}", answer is not None, answer, now)


def _screenshot(page, name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    target = SCREENSHOTS / name
    if os.environ.get("QC_UPDATE_SCREENSHOTS") == "1" or not target.exists():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/console/")
    expect(page.get_by_role("heading", name="登录工作台")).to_be_visible()
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(re.compile(r"/console/queue"))


def _off_loop(fn, *args):
    """Playwright's sync API keeps an event loop running in this thread: the chat client
    (asyncio.run) runs in a worker thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def _say(chat: Chat, text: str) -> dict:
    return _off_loop(chat.say, text)


def _events(chat: Chat) -> list:
    return _off_loop(lambda: asyncio.run(chat._events()))


def _bot_events(chat: Chat) -> list:
    return [e for e in _events(chat) if e.get("event") == "bot"]


def test_resident_files_worker_resolves_resident_sees_it(stack, console, browser, tmp_path):
    # 1. The resident complains in the chat (REST channel).
    chat = Chat(stack)
    assert _say(chat, "新城区体校巷社区 楼下天天有人遛狗不牵绳 狗屎也不清理")["keys"] == ["utter_ask_photo"]
    assert _say(chat, "没有照片")["keys"] == ["utter_ask_phone"]
    assert _say(chat, "不留了")["keys"] == ["utter_complaint_summary"]
    filed = _say(chat, "确认提交")
    assert filed["keys"] in (["utter_complaint_filed"], ["utter_complaint_merged"])
    number = TICKET.search(filed["bot"][0]["text"]).group(0)

    # 2. The grid worker of 海拉尔东路街道 works it on a phone.
    errors: list[str] = []
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                has_touch=True, locale="zh-CN")
    try:
        page = phone.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        _log_in(page, console, "grid_e2e")
        card = page.locator(".ticket-card", has_text=number)
        expect(card).to_be_visible()
        expect(card).to_contain_text("剩余")
        _screenshot(page, "console-queue.png", tmp_path)
        card.click()
        expect(page.get_by_role("heading", name=number)).to_be_visible()
        page.get_by_role("button", name="签收").click()
        expect(page.get_by_role("status")).to_contain_text("已签收")
        page.get_by_label("办理结果").fill("已约谈犬主，现场已清理，承诺遛狗牵绳")
        page.get_by_role("button", name="办结", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("已办结")
        expect(page.locator(".timeline")).to_contain_text("已约谈犬主")
    finally:
        phone.close()

    # 3. The outbox tells the resident (Rasa's trigger_intent) and asks for the 回访.
    deadline = time.monotonic() + 60
    keys: list = []
    while time.monotonic() < deadline:
        keys = [(e.get("metadata") or {}).get("utter_action") for e in _bot_events(chat)]
        if "utter_ticket_resolved" in keys:
            break
        time.sleep(0.5)
    assert "utter_ticket_accepted" in keys and "utter_ticket_resolved" in keys, keys
    resolved = [e for e in _bot_events(chat) if (e.get("metadata") or {}).get("utter_action") == "utter_ticket_resolved"]
    assert number in resolved[-1]["text"] and "已约谈犬主" in resolved[-1]["text"]
    chat._seen = len(_events(chat))

    # 4. The resident's status query says 办结 …
    status = _say(chat, "我反映的遛狗的事处理得怎么样了")
    assert status["keys"][-1] == "utter_status_one"
    assert "办结" in status["bot"][-1]["text"] and number in "".join(e["text"] for e in status["bot"])
    # … and their answer to the 回访 closes the ticket.
    assert _say(chat, "/followup_satisfied")["keys"] == ["utter_followup_thanks"]
    with stack.engine().connect() as conn:
        state = conn.execute(select(tickets.c.state).where(tickets.c.number == number)).scalar_one()
        last = conn.execute(
            select(ticket_events.c.kind, ticket_events.c.data)
            .join(tickets, tickets.c.id == ticket_events.c.ticket_id)
            .where(tickets.c.number == number)
            .order_by(ticket_events.c.seq.desc())
        ).first()
    assert state == "回访" and tuple(last) == ("回访", {"solved": True, "satisfaction": "满意"})

    # 5. The dashboard, with its charts drawn by the bundled ECharts (desktop).
    desktop = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    try:
        page = desktop.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        _log_in(page, console, "admin_e2e")
        page.goto(f"{console}/console/dashboard")
        expect(page.locator("#chart-per-day svg")).to_be_visible()
        expect(page.locator("#chart-per-street svg")).to_be_visible()
        expect(page.get_by_text("街道三率与月排比")).to_be_visible()
        _screenshot(page, "console-dashboard.png", tmp_path)
    finally:
        desktop.close()
    assert errors == []  # no CSP violations, no script errors

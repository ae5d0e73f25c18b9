"""转人工 in a real browser (Debian's headless Chromium driven by Playwright), two contexts side
by side against the real servers (Rasa with its Socket.IO channel, actions, our web server): a
resident on the web widget page asks for a person; a 坐席 logged into the console takes the
conversation from /console/handoff, they write to each other (the agent's words reach the widget
in real time, pushed over Socket.IO; the resident's show on the agent's page), the agent files a
ticket for the resident (代登记), the widget shows its number, the agent hands back and the
assistant answers the resident's next message. Screenshots of the agent's view go to
docs/screenshots/handoff-*.png (QC_UPDATE_SCREENSHOTS=1, or when missing).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.console import services as svc
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.handoff import FILED_NOTICE, HANDED_BACK_NOTICE, TAKEN_NOTICE
from bot.paths import REPO_ROOT
from bot.storage.handoff import handoff_events, handoff_messages, handoffs
from bot.storage.tables import ticket_reports, tickets
from tests.e2e.chat import TOKEN, Stack
from tests.e2e.conftest import CHROMIUM, _free_port, wait_http

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
PASSWORD = "agent-e2e-password"
TICKET = re.compile(r"QC-\d{6}-\d{4}")
BOT_WAIT_MS = 30000
HOURS = "00:00-23:59"  # agents answer whatever the wall clock says (as the stack's Rasa servers)

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (make browser-deps)")


@pytest.fixture(scope="module")
def web(stack: Stack, tmp_path_factory):
    """Our web server on the stack's store: the widget page and the console (its 代登记 proposal
    asks the stack's Rasa server)."""
    if not (REPO_ROOT / "widget" / "dist" / "BUILD.json").exists():
        subprocess.run(["make", "-s", "widget"], cwd=REPO_ROOT, check=True)
    tmp = tmp_path_factory.mktemp("handoff-browser")
    engine = stack.engine()
    svc.create_user(ConsoleUnitOfWork(engine), "agent_e2e", "小王", PASSWORD, "agent", [], datetime.now(timezone.utc))
    engine.dispose()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_WEB_HOST": "127.0.0.1", "QC_WEB_PORT": str(port),
           "QC_RASA_URL": stack.rasa_url, "QC_RASA_TOKEN": TOKEN, "QC_DATABASE_URL": stack.db_url,
           "QC_UPLOAD_DIR": stack.uploads, "QC_HANDOFF_HOURS": HOURS, "QC_NOTIFIER_INTERVAL": "0.5"}
    env.pop("QC_WIDGET_SOCKET_URL", None)
    env.pop("QC_PUBLIC_URL", None)
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


def _watch(page, errors: list[str]) -> None:
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))


def _bot_texts(widget) -> list[str]:
    return [t.removeprefix("助手说：") for t in widget.locator(".qc-msg-bot").all_text_contents()]


def _say(widget, text: str) -> None:
    widget.get_by_label("输入您要反映的问题").fill(text)
    widget.get_by_role("button", name="发送", exact=True).click()
    expect(widget.locator(".qc-msg-user").last).to_have_text(f"我说：{text}")


def _screenshot(target, name: str, tmp_path: Path, **options) -> None:
    path = tmp_path / name
    target.screenshot(path=str(path), **options)
    assert path.stat().st_size > 10_000
    dest = SCREENSHOTS / name
    if os.environ.get("QC_UPDATE_SCREENSHOTS") == "1" or not dest.exists():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)


def test_resident_asks_for_a_person_agent_takes_files_and_hands_back(stack, web, browser, tmp_path) -> None:
    engine = stack.engine()
    errors: list[str] = []
    resident_ctx = browser.new_context(viewport={"width": 420, "height": 760}, locale="zh-CN")
    agent_ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    try:
        # the resident opens the widget page
        widget = resident_ctx.new_page()
        _watch(widget, errors)
        widget.goto(f"{web}/widget/")
        expect(widget.get_by_label("输入您要反映的问题")).to_be_visible()
        expect(widget.locator("#qc-status")).to_be_empty(timeout=BOT_WAIT_MS)

        # the agent logs in: their home page is the 转人工 list
        desk = agent_ctx.new_page()
        _watch(desk, errors)
        desk.goto(f"{web}/console/")
        desk.get_by_label("用户名").fill("agent_e2e")
        desk.get_by_label("密码").fill(PASSWORD)
        desk.get_by_role("button", name="登录").click()
        expect(desk.get_by_role("heading", name="转人工", exact=True)).to_be_visible()

        with engine.connect() as conn:  # the shared stack's earlier tests may have left some waiting
            ahead = conn.execute(select(func.count()).select_from(handoffs).where(
                handoffs.c.state == "waiting", handoffs.c.language == "")).scalar_one()
        _say(widget, "我要找人工客服")
        waiting = (f"正在为您转接人工客服，请稍候。您前面还有 {ahead} 位居民在等待。"
                   "人工服务时间：每天 00:00–23:59。等待期间您发的消息会转给工作人员。")
        expect(widget.locator(".qc-msg-bot").last).to_have_text(f"助手说：{waiting}", timeout=BOT_WAIT_MS)
        session = widget.evaluate("JSON.parse(localStorage.getItem('qingcheng-widget:v1')).sessionId")
        with engine.connect() as conn:
            [(hid, channel, reason, state)] = conn.execute(
                select(handoffs.c.id, handoffs.c.channel, handoffs.c.reason, handoffs.c.state)
                .where(handoffs.c.sender_id == session)).all()
        assert (channel, reason, state) == ("socketio", "asked", "waiting")

        # the agent sees it in the queue and takes it
        desk.reload()
        row = desk.locator(f'tr[data-handoff="{hid}"]')
        expect(row).to_contain_text(f"#{hid} socketio")
        expect(row.locator("td").nth(1)).to_have_text("居民要求人工服务")
        expect(row.locator("td").nth(2)).to_have_text("等待接入")
        table = desk.locator("table.handoff-queue").bounding_box()  # the list, not the empty page below it
        _screenshot(desk, "handoff-queue.png", tmp_path, clip={"x": 0, "y": 0, "width": 1280,
                                                              "height": table["y"] + table["height"] + 24})
        row.get_by_role("button", name="接入").click()
        expect(desk.get_by_role("heading", name=f"会话 #{hid} · 人工服务中")).to_be_visible()
        taken = TAKEN_NOTICE.format(name="小王")
        expect(widget.locator(".qc-msg-bot").last).to_have_text(f"助手说：{taken}", timeout=BOT_WAIT_MS)

        # they write to each other: the agent's words reach the widget without the resident writing
        desk.get_by_label("回复居民").fill("您好，请问遇到了什么问题？在哪个小区？")
        desk.get_by_role("button", name="发送", exact=True).click()
        expect(widget.locator(".qc-msg-bot").last).to_have_text("助手说：您好，请问遇到了什么问题？在哪个小区？",
                                                                timeout=BOT_WAIT_MS)
        # a community no other test of the shared stack files a dog complaint in: no 并单
        complaint = "新城区公安厅社区 楼下有人遛狗不牵绳，天天晚上叫"
        _say(widget, complaint)
        desk.reload()
        expect(desk.locator("ol.chat li.in .text").last).to_have_text(complaint)
        desk.get_by_label("回复居民").fill("好的，我这就为您登记。")
        desk.get_by_role("button", name="发送", exact=True).click()
        expect(widget.locator(".qc-msg-bot").last).to_have_text("助手说：好的，我这就为您登记。", timeout=BOT_WAIT_MS)
        # the assistant stayed silent: only the hand-off's notices and the agent's words
        assert _bot_texts(widget) == [waiting, taken, "您好，请问遇到了什么问题？在哪个小区？", "好的，我这就为您登记。"]
        expect(desk.locator("ol.chat li .text")).to_have_text(
            [taken, "您好，请问遇到了什么问题？在哪个小区？", complaint, "好的，我这就为您登记。"])
        _screenshot(desk, "handoff-conversation.png", tmp_path, full_page=True)

        # 代登记: the form is prefilled with the resident's words, the proposal fills category and street
        form = desk.locator("#intake-form")
        expect(form.get_by_label("问题描述")).to_have_value(complaint)
        form.get_by_label("地点").fill("新城区公安厅社区")
        expect(desk.locator("#intake-proposal-text")).to_contain_text("类别：文明养犬", timeout=BOT_WAIT_MS)
        expect(form.get_by_label("类别")).to_have_value("dog")
        expect(form.get_by_label("街道（属地）")).to_have_value("150102001")
        desk.mouse.move(0, 0)
        _screenshot(desk.locator("section.card", has=form), "handoff-file.png", tmp_path)
        form.get_by_role("button", name="登记工单并告知居民").click()
        status = desk.get_by_role("status")
        expect(status).to_contain_text("已为居民登记，工单号")
        number = TICKET.search(status.inner_text()).group(0)
        expect(widget.locator(".qc-msg-bot").last).to_have_text(f"助手说：{FILED_NOTICE.format(number=number)}",
                                                                timeout=BOT_WAIT_MS)

        # the agent hands back; the assistant answers the resident's next message itself
        desk.get_by_role("button", name="交还助手").click()
        expect(desk.get_by_role("heading", name=f"会话 #{hid} · 已交还助手")).to_be_visible()
        expect(widget.locator(".qc-msg-bot").last).to_have_text(f"助手说：{HANDED_BACK_NOTICE}", timeout=BOT_WAIT_MS)
        before = widget.locator(".qc-msg-bot").count()
        _say(widget, "我反映的遛狗的事处理得咋样了")
        expect(widget.locator(".qc-msg-bot")).to_have_count(before + 1, timeout=BOT_WAIT_MS)
        expect(widget.locator(".qc-msg-bot").last).to_contain_text(f"工单 {number}（文明养犬）当前状态：")
        assert errors == [], errors
    finally:
        resident_ctx.close()
        agent_ctx.close()

    try:
        with engine.connect() as conn:
            filed = conn.execute(
                select(tickets.c.number, tickets.c.category, tickets.c.street_code, ticket_reports.c.channel,
                       ticket_reports.c.sender_id, ticket_reports.c.description)
                .join(ticket_reports, ticket_reports.c.ticket_id == tickets.c.id)
                .where(ticket_reports.c.sender_id == session)).all()
            held = conn.execute(select(handoffs.c.state, handoffs.c.agent).where(handoffs.c.id == hid)).one()
            steps = conn.execute(select(handoff_events.c.kind, handoff_events.c.actor, handoff_events.c.note)
                                 .where(handoff_events.c.handoff_id == hid).order_by(handoff_events.c.id)).all()
            messages = conn.execute(
                select(handoff_messages.c.author, handoff_messages.c.outgoing, handoff_messages.c.text,
                       handoff_messages.c.delivered_at.is_not(None))
                .where(handoff_messages.c.handoff_id == hid).order_by(handoff_messages.c.id)).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in filed] == [(number, "dog", "150102001", "socketio", session, complaint)]
    assert tuple(held) == ("returned", "user:agent_e2e")
    assert [tuple(s) for s in steps] == [("转人工", "system", "asked"), ("接入", "user:agent_e2e", ""),
                                         ("代登记", "user:agent_e2e", number), ("交还", "user:agent_e2e", "")]
    assert [tuple(m) for m in messages] == [
        ("system", True, taken, True),
        ("user:agent_e2e", True, "您好，请问遇到了什么问题？在哪个小区？", True),
        ("resident", False, complaint, False),
        ("user:agent_e2e", True, "好的，我这就为您登记。", True),
        ("user:agent_e2e", True, FILED_NOTICE.format(number=number), True),
        ("system", True, HANDED_BACK_NOTICE, True)]

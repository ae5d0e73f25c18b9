"""The 节假日安排 page in a real browser (Debian's headless Chromium through Playwright)
against our web server as a process: an admin enters a year as date ranges, previews it
as twelve month grids with the changes, saves it, and the open ticket's deadline moves.
The preview's screenshot goes to docs/screenshots/console-calendar.png (refreshed with
QC_UPDATE_SCREENSHOTS=1, or when missing). The schedule is invented (测试用通知（虚构）).
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
from sqlalchemy import select

from bot.console import services as svc
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.clock import SHANGHAI
from bot.domain.model import ComplaintDraft, DispatchClass, Route
from bot.paths import REPO_ROOT
from bot.services.tickets import file_complaint
from bot.storage.engine import init_db, make_engine
from bot.storage.tables import ticket_events, tickets
from tests.e2e.conftest import CHROMIUM, _free_port, wait_http

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
PASSWORD = "calendar-admin-password"
NOTICE = "测试用通知（虚构）"

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (make browser-deps)")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calendar")
    url = f"sqlite:///{tmp / 'qc.db'}"
    engine = make_engine(url)
    init_db(engine)
    now = datetime.now(timezone.utc)
    svc.create_user(ConsoleUnitOfWork(engine), "cal_admin", "节假日管理员", PASSWORD, "admin", [], now)
    draft = ComplaintDraft("r1", "rest", "sanitation", "垃圾桶满了没人清运", "公主府社区", None, None, False, "cal-1")
    route = Route("sanitation_authority", ("street:150102001",), "150102", "150102001", None, DispatchClass.NORMAL, "演示")
    # Friday 1 Feb 2030 10:00: nobody has entered 2030 → due Monday 4 Feb 10:00.
    file_complaint(ConsoleUnitOfWork(engine), draft, route, datetime(2030, 2, 1, 10, tzinfo=SHANGHAI))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_WEB_HOST": "127.0.0.1", "QC_WEB_PORT": str(port),
           "QC_DATABASE_URL": url, "QC_UPLOAD_DIR": str(tmp / "uploads"), "QC_NOTIFIER": "0"}
    with open(tmp / "web.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.web.app"], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}", engine
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        engine.dispose()


def test_admin_enters_a_year_previews_and_saves_it(web, browser, tmp_path):
    base, engine = web
    desktop = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    try:
        page = desktop.new_page()
        page.goto(f"{base}/console/")
        page.get_by_label("用户名").fill("cal_admin")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        expect(page).to_have_url(re.compile(r"/console/queue"))
        page.get_by_role("link", name="节假日").click()
        page.get_by_label("年份").fill("2030")
        page.get_by_role("button", name="查看").click()
        expect(page.get_by_text("本年尚无安排：时限暂按周一至周五计算。")).to_be_visible()
        page.get_by_label("第1行开始").fill("2030-02-04")
        page.get_by_label("第1行结束").fill("2030-02-10")
        page.get_by_label("第1行来源").fill(NOTICE)
        page.get_by_label("第2行开始").fill("2030-02-02")
        page.get_by_label("第2行类型").select_option("班")
        page.get_by_label("第2行来源").fill(NOTICE)
        page.get_by_role("button", name="预览").click()
        expect(page.locator("table.month")).to_have_count(12)
        expect(page.get_by_role("heading", name="变化（6 天）")).to_be_visible()
        expect(page.locator('td.cal-day.makeup[title="2030-02-02"]')).to_be_visible()
        expect(page.locator("td.cal-day.holiday")).to_have_count(7)
        shot = tmp_path / "console-calendar.png"
        page.screenshot(path=str(shot), full_page=True)
        target = SCREENSHOTS / "console-calendar.png"
        if os.environ.get("QC_UPDATE_SCREENSHOTS") == "1" or not target.exists():
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, target)
        page.get_by_role("button", name="确认保存 2030 年安排").click()
        expect(page.get_by_text("已保存；1 张在办工单的时限随节假日安排调整。")).to_be_visible()
    finally:
        desktop.close()
    with engine.connect() as conn:
        assert conn.execute(select(tickets.c.deadline_at)).scalar_one() == datetime(2030, 2, 2, 10, tzinfo=SHANGHAI)
        assert conn.execute(select(ticket_events.c.actor, ticket_events.c.reason)
                            .where(ticket_events.c.kind == "时限调整")).all() == [
            ("user:cal_admin", "时限随节假日安排调整：2030-02-04 10:00 → 2030-02-02 10:00")]

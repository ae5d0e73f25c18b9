"""issue 20 item 2: the work console in a real browser through nginx on a non-default port.

nginx used to send `Host` without the port, and the console compares the browser's
`Origin` with it: every POST, log-in included, got 403 on :8000. Here our web server sits
behind a private nginx (bot.ops.cluster.nginx_conf, the cluster's own configuration) on a
random port; a grid worker logs in and does 签收 in Chromium."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.paths import REPO_ROOT
from tests.e2e.conftest import CHROMIUM, _free_port, wait_http

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (make browser-deps)")
PASSWORD = "grid-worker-password"


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory):
    """(console URL through nginx, ticket number) — the web server on a fresh SQLite store."""
    from bot.console import services as svc
    from bot.console.uow import ConsoleUnitOfWork
    from bot.domain.model import ComplaintDraft, DispatchClass, Route
    from bot.ops.cluster import find_nginx, nginx_conf
    from bot.services.setup import prepare_store
    from bot.services.tickets import file_complaint
    from bot.storage.engine import make_engine

    try:
        nginx = find_nginx()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    tmp = tmp_path_factory.mktemp("nginx-console")
    db_url = f"sqlite:///{tmp / 'tickets.db'}"
    engine = make_engine(db_url)
    prepare_store(engine)
    now = datetime.now(timezone.utc)
    svc.create_user(ConsoleUnitOfWork(engine), "grid_nginx", "网格员（测试）", PASSWORD, "worker",
                    ["street:150102001"], now)
    key = uuid.uuid4().hex[:8]
    draft = ComplaintDraft(f"nginx-{key}", "rest", "illegal_ads", "哲里木路社区单元门贴满小广告", "单元门小广告",
                           None, None, False, f"nginx-{key}")
    route = Route("urban_management", ("street:150102001",), "150102", "150102001", None, DispatchClass.NORMAL, "测试")
    number = file_complaint(ConsoleUnitOfWork(engine), draft, route, now - timedelta(hours=1)).number
    engine.dispose()

    web_port, proxy_port, dead = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_WEB_HOST": "127.0.0.1", "QC_WEB_PORT": str(web_port),
           "QC_DATABASE_URL": db_url, "QC_RASA_URL": f"http://127.0.0.1:{dead}", "QC_RASA_TOKEN": "unused",
           "QC_UPLOAD_DIR": str(tmp / "uploads"), "QC_TRUSTED_PROXIES": "127.0.0.1"}
    with open(tmp / "web.log", "wb") as log:
        web = subprocess.Popen([sys.executable, "-m", "bot.web.app"], cwd=REPO_ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    (tmp / "tmp").mkdir()
    (tmp / "nginx.conf").write_text(nginx_conf(
        f"127.0.0.1:{proxy_port}", f"127.0.0.1:{_free_port()}", [f"127.0.0.1:{dead}"], [f"127.0.0.1:{dead}"],
        [f"127.0.0.1:{web_port}"], prefix=tmp, user="root" if os.geteuid() == 0 else None), encoding="utf-8")
    proxy = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                             cwd=REPO_ROOT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{web_port}/health", web)
        wait_http(f"http://127.0.0.1:{proxy_port}/health", proxy)
        yield f"http://127.0.0.1:{proxy_port}", number
    finally:
        _stop(proxy)
        _stop(web)


def test_worker_logs_in_and_signs_for_a_ticket_through_nginx_on_another_port(behind_nginx, browser):
    base, number = behind_nginx
    context = browser.new_context(locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(f"{base}/console/")
        page.get_by_label("用户名").fill("grid_nginx")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        expect(page).to_have_url(re.compile(r"/console/queue"))
        page.locator(".ticket-card", has_text=number).click()
        expect(page.get_by_role("heading", name=number)).to_be_visible()
        page.get_by_role("button", name="签收").click()
        expect(page.get_by_role("status")).to_contain_text("已签收")
    finally:
        context.close()

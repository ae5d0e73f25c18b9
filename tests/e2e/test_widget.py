"""The web widget in a real browser (Debian's headless Chromium driven by Playwright),
against the real servers: Rasa (Socket.IO channel) + actions + our web server.

A government page on another site (http://localhost:<port>/) embeds the widget with one
<script> tag; the resident files complaints with the quick-reply buttons, a photo upload
and the browser's location, reloads the page and finds the same conversation, and the
tickets are in the store under the widget's session id.

QC_UPDATE_SCREENSHOTS=1 also writes the phone-sized screenshot to docs/screenshots/.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zlib
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.paths import REPO_ROOT
from bot.photoclean import clean_photo
from bot.storage.tables import ticket_reports, tickets
from tests.e2e.chat import Stack
from tests.e2e.conftest import CHROMIUM, _free_port, wait_http

TICKET = re.compile(r"QC-\d{6}-\d{4}")
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "widget-phone.png"
BOT_WAIT_MS = 30000

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt install chromium)")



@pytest.fixture(scope="module")
def web(stack: Stack, tmp_path_factory):
    """Our web server (python -m bot.web.app) next to the stack, uploads in a temp folder."""
    if not (REPO_ROOT / "widget" / "dist" / "BUILD.json").exists():
        subprocess.run(["make", "-s", "widget"], cwd=REPO_ROOT, check=True)
    tmp = tmp_path_factory.mktemp("widget")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_WEB_HOST": "127.0.0.1", "QC_WEB_PORT": str(port),
           "QC_RASA_URL": stack.rasa_url, "QC_DATABASE_URL": stack.db_url, "QC_UPLOAD_DIR": stack.uploads}
    env.pop("QC_WIDGET_SOCKET_URL", None)
    env.pop("QC_PUBLIC_URL", None)
    with open(tmp / "web.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.web.app"], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield {"url": f"http://127.0.0.1:{port}", "uploads": Path(stack.uploads), "tmp": tmp}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def host_page(web):
    """A government page on another site (localhost vs 127.0.0.1) with the one script tag."""
    root = web["tmp"] / "site"
    root.mkdir()
    (root / "index.html").write_text(f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>呼和浩特市人民政府</title><link rel="icon" href="data:,"></head>
<body style="font-family: 'Noto Sans CJK SC', sans-serif; margin: 0; padding: 16px; background: #f6f1e7">
<h1 style="color: #9b1c1c; font-size: 22px">呼和浩特市人民政府</h1>
<p>政务公开 · 办事服务 · 互动交流</p>
<script src="{web['url']}/widget/embed.js"></script>
</body></html>""", encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Widget:
    """The embedded widget as a resident sees it (page + the chat iframe)."""

    def __init__(self, page):
        self.page = page
        self.errors = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.chat = page.frame_locator('iframe[title="青城诉求在线反映对话窗口"]')

    def open(self, url: str) -> None:
        self.page.goto(url)
        launcher = self.page.get_by_role("button", name="在线反映")
        expect(launcher).to_have_attribute("aria-expanded", "false")
        launcher.click()
        expect(self.page.get_by_role("dialog", name="青城诉求 在线反映")).to_be_visible()
        # (on a phone the panel covers the launcher, which is then hidden)
        expect(self.page.locator("#qingcheng-widget .launcher")).to_have_attribute("aria-expanded", "true")
        self.wait_connected()

    def wait_connected(self) -> None:
        expect(self.chat.get_by_label("输入您要反映的问题")).to_be_visible()
        expect(self.chat.locator("#qc-status")).to_be_empty(timeout=BOT_WAIT_MS)

    def bots(self):
        return self.chat.locator(".qc-msg-bot")

    def say(self, text: str, expect_bot: str) -> None:
        box = self.chat.get_by_label("输入您要反映的问题")
        box.fill(text)
        self.chat.get_by_role("button", name="发送", exact=True).click()
        self.expect_bot(expect_bot)

    def click(self, title: str, expect_bot: str) -> None:
        self.chat.locator("#qc-replies").get_by_role("button", name=title, exact=True).click()
        self.expect_bot(expect_bot)

    def expect_bot(self, text) -> None:
        expect(self.bots().last).to_contain_text(text, timeout=BOT_WAIT_MS)

    def frame(self):
        return next(f for f in self.page.frames if "/widget/" in f.url)

    def session_id(self) -> str:
        # kept in the embedding page's localStorage (the iframe's own is third-party storage)
        return self.page.evaluate("JSON.parse(localStorage.getItem('qingcheng-widget:v1')).sessionId")

    def transcript(self):
        return self.chat.locator(".qc-msg").all_inner_texts()


def _report(stack: Stack, sender: str):
    with stack.engine().connect() as conn:
        rows = conn.execute(
            select(tickets.c.number, tickets.c.category, tickets.c.street_code, tickets.c.lead_queue,
                   ticket_reports.c.channel, ticket_reports.c.location_text, ticket_reports.c.photo,
                   ticket_reports.c.description)
            .join(ticket_reports, ticket_reports.c.ticket_id == tickets.c.id)
            .where(ticket_reports.c.sender_id == sender)
        ).mappings().all()
    return [dict(r) for r in rows]


def test_file_with_buttons_on_a_phone_then_reload(stack, web, host_page, browser, tmp_path):
    context = browser.new_context(viewport={"width": 375, "height": 667}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, locale="zh-CN")
    try:
        w = Widget(context.new_page())
        w.open(host_page)
        # full screen on a phone
        box = w.page.locator("#qingcheng-widget iframe").bounding_box()
        assert box and box["width"] == 375 and box["height"] == 667

        w.say("新城区公主府社区 楼下有人遛狗不牵绳", "照片")
        w.click("跳过", "联系电话")
        w.click("跳过", "请确认您的诉求")
        expect(w.bots().last).to_contain_text("公主府社区")
        expect(w.chat.locator("#qc-replies").get_by_role("button", name="确认提交")).to_be_visible()
        w.page.mouse.move(0, 0)  # no hover highlight in the picture
        shot = tmp_path / "widget-phone.png"
        w.page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("QC_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)

        w.click("确认提交", TICKET)
        number = TICKET.search(w.bots().last.inner_text()).group(0)
        expect(w.chat.locator("#qc-replies")).to_be_hidden()
        # the titles were shown, never the payloads
        users = w.chat.locator(".qc-msg-user").all_inner_texts()
        assert [u.split("：", 1)[-1].strip() for u in users] == ["新城区公主府社区 楼下有人遛狗不牵绳", "跳过", "跳过", "确认提交"]
        before = w.transcript()
        session = w.session_id()
        assert re.match(r"^[0-9a-f]{32}$", session)

        # reload: the panel reopens on the same conversation (history from localStorage,
        # the same session on the server: it answers a status question with our ticket)
        w.page.reload()
        w.wait_connected()
        assert w.transcript() == before
        assert w.session_id() == session
        w.say("我反映的遛狗的事处理得咋样了", number)

        rows = _report(stack, session)
        assert [(r["number"], r["category"], r["channel"]) for r in rows] == [(number, "dog", "socketio")]
        assert "公主府社区" in rows[0]["location_text"]
        assert rows[0]["photo"] is None
        assert not w.errors, w.errors
    finally:
        context.close()


def _png(width: int = 8, height: int = 8) -> bytes:
    raw = b"".join(b"\x00" + b"\x2a\x6f\xb0" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_photo_and_location_on_a_desktop(stack, web, host_page, browser, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN",
                                  geolocation={"latitude": 40.81234, "longitude": 111.65432, "accuracy": 30},
                                  permissions=["geolocation"])
    try:
        w = Widget(context.new_page())
        w.open(host_page)
        box = w.page.locator("#qingcheng-widget iframe").bounding_box()
        assert box and box["width"] == 380  # a panel, not full screen

        w.say("单元门口贴满了小广告 撕了又贴", "哪里")
        w.chat.get_by_role("button", name="发送位置").click()
        w.expect_bot("属于哪个街道或社区")
        expect(w.chat.locator(".qc-msg-user").last).to_contain_text("北纬40.81234°，东经111.65432°")
        expect(w.chat.locator(".qc-msg-note").last).to_contain_text("派单中心")
        w.click("不清楚", "照片")

        photo = tmp_path / "photo.png"
        photo.write_bytes(_png())
        w.chat.locator("#qc-file").set_input_files(str(photo))
        w.expect_bot("联系电话")
        img = w.chat.locator(".qc-msg-user img").last
        expect(img).to_be_visible()
        assert w.frame().evaluate("document.querySelector('.qc-msg-user img').naturalWidth") == 8
        # a file that is not an image is refused by the widget before any upload
        notimg = tmp_path / "notes.txt"
        notimg.write_text("hello", encoding="utf-8")
        w.chat.locator("#qc-file").set_input_files(str(notimg))
        expect(w.chat.locator(".qc-msg-note").last).to_contain_text("JPEG")

        w.say("13847112345", "保密")
        w.click("不需要", "请确认您的诉求")
        expect(w.bots().last).to_contain_text("照片：已上传")
        expect(w.bots().last).to_contain_text("定位坐标 北纬40.81234 东经111.65432")
        w.click("确认提交", TICKET)
        number = TICKET.search(w.bots().last.inner_text()).group(0)

        # resident text is shown as text, never as markup
        w.say('<img src=x onerror="document.title=1">', re.compile(".+"))
        assert w.chat.locator(".qc-msg img").count() == 1  # only the uploaded photo
        expect(w.chat.locator(".qc-msg-user").last).to_contain_text("<img src=x")

        rows = _report(stack, w.session_id())
        assert len(rows) == 1 and rows[0]["number"] == number
        row = rows[0]
        assert row["category"] == "illegal_ads" and row["channel"] == "socketio"
        assert "定位坐标 北纬40.81234 东经111.65432" in row["location_text"]
        assert row["street_code"] is None  # no street: the dispatch centre routes it by the coordinates
        assert re.match(rf"^{re.escape(web['url'])}/widget/photo/[0-9a-f]{{32}}\.png$", row["photo"])
        # the reference is no public link (workers see it through the console); the chat showed
        # the uploader's own signed link
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(row["photo"])
        assert refused.value.code == 404
        assert (web["uploads"] / row["photo"].rsplit("/", 1)[1]).read_bytes() == clean_photo(_png(), "png")
        assert not w.errors, w.errors
    finally:
        context.close()

"""Issue 13 item 14 (widget): what the widget leaves in the embedding page's localStorage,
read in a real browser (headless Chromium) on a government page that embeds it, against
the real servers. Phone numbers are stored masked, the history is short and expires, and
清除记录 forgets it and starts a new session (issued by the server)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import CHROMIUM
from tests.e2e.test_widget import Widget, host_page, web  # noqa: F401 - fixtures

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt install chromium)")
KEY = "qingcheng-widget:v1"


def stored(w: Widget) -> dict:
    raw = w.page.evaluate(f"localStorage.getItem('{KEY}')")
    return json.loads(raw) if raw else {}


def test_stored_history_is_masked_short_expiring_and_clearable(stack, web, host_page, browser):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    try:
        w = Widget(context.new_page())
        w.open(host_page)
        w.say("新城区公主府社区 楼下有人遛狗不牵绳", "照片")
        w.click("跳过", "联系电话")
        w.say("我的电话１３９ １２３４ ５６７８", "保密")
        # the resident still sees what they typed on this page view …
        assert any("１３９ １２３４ ５６７８" in t for t in w.chat.locator(".qc-msg-user").all_inner_texts())
        # … but the host page's storage never holds the number
        raw = w.page.evaluate(f"localStorage.getItem('{KEY}')")
        assert "5678" in raw and "139****5678" in raw
        for leak in ("13912345678", "1234", "１２３４"):
            assert leak not in raw.replace("139****5678", ""), raw
        state = stored(w)
        assert isinstance(state.get("savedAt"), (int, float)) and abs(state["savedAt"] / 1000 - time.time()) < 120
        assert len(state["messages"]) <= 50

        # an old conversation (a week ago) is not shown again: the page starts afresh
        session = state["sessionId"]
        w.page.evaluate(f"""(() => {{ const s = JSON.parse(localStorage.getItem('{KEY}'));
            s.savedAt = Date.now() - 7 * 24 * 3600 * 1000; localStorage.setItem('{KEY}', JSON.stringify(s)); }})()""")
        w.page.reload()
        w.wait_connected()
        assert w.chat.locator(".qc-msg").count() == 0
        fresh = stored(w)
        assert fresh["messages"] == [] and fresh["sessionId"] != session

        # 清除记录: the history goes, and the server issues another session
        w.say("井盖丢了", "")
        assert stored(w)["messages"]
        before = stored(w)["sessionId"]
        w.chat.get_by_role("button", name="清除记录").click()
        expect(w.chat.locator(".qc-msg")).to_have_count(0)
        w.wait_connected()
        after = stored(w)
        assert after["messages"] == []
        assert after["sessionId"] and after["sessionId"] != before
        assert w.errors == []
    finally:
        context.close()


def test_an_expired_history_goes_when_the_page_loads_not_only_when_the_chat_opens(stack, web, host_page,  # noqa: F811
                                                                                  browser):
    """Outside test of 6 May: a resident who never opened the chat again kept the phone-bearing
    history in the government page's localStorage for ever; a day after the last message the
    embed script forgets it on the next page load, panel closed."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    try:
        w = Widget(context.new_page())
        w.open(host_page)
        w.say("新城区公主府社区 楼下有人遛狗不牵绳", "照片")
        assert stored(w)["messages"]
        # a fresh visit (new tab, panel closed) one day and a minute later …
        w.page.evaluate(f"""(() => {{ const s = JSON.parse(localStorage.getItem('{KEY}'));
            s.savedAt = Date.now() - (24 * 3600 + 60) * 1000; localStorage.setItem('{KEY}', JSON.stringify(s)); }})()""")
        later = context.new_page()
        later.goto(host_page)
        expect(later.get_by_role("button", name="在线反映")).to_have_attribute("aria-expanded", "false")
        later.wait_for_function(f"localStorage.getItem('{KEY}') === null", timeout=5000)
        # … while a history younger than a day stays
        later.evaluate(f"localStorage.setItem('{KEY}', JSON.stringify({{sessionId: null, savedAt: Date.now() - 3600 * 1000, messages: []}}))")
        later.reload()
        expect(later.get_by_role("button", name="在线反映")).to_have_attribute("aria-expanded", "false")
        assert later.evaluate(f"localStorage.getItem('{KEY}')") is not None
    finally:
        context.close()

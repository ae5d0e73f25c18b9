"""Done when (issue 5): on a small, quick configuration and a real running Rasa server,
a message the model gets wrong lands in the review inbox, an admin corrects it in the
console, retrains, compares, activates — and the running server (not restarted) now
classifies the same message right, while a conversation in progress goes on. Then a
rollback brings the previous model back.

Small = the repository's data with each intent cut to its first 8 examples and the
held-out split cut to 40 lines, in a temp dir (the checked-in data is never written)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.console import services as svc
from bot.console.config import ConsoleConfig
from bot.console.http import CONSOLE_CONFIG, CONSOLE_ENGINE
from bot.console.retraining import RETRAIN_SETTINGS
from bot.console.uow import ConsoleUnitOfWork
from bot.ops.serve import start_stack, stop_stack
from bot.paths import REPO_ROOT
from bot.retraining import trainer
from bot.retraining.tables import model_registry, review_items
from bot.services.setup import prepare_store
from bot.storage.engine import make_engine
from bot.web.app import init_app
from bot.web.keys import Settings
from tests.console.helpers import PASSWORD, login, now, post
from tests.e2e.chat import TOKEN, Chat, Stack

WRONG = "咕叽咕叽呱呱噜噜嘎嘎嘎"  # nothing like any training example: the small model is unsure
RIGHT = "noise"
EXAMPLES_PER_INTENT = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_data(target: Path) -> Path:
    """data/ with every intent block cut to its first few examples."""
    shutil.copytree(REPO_ROOT / "data", target)
    for path in (target / "nlu").glob("*.yml"):
        out, kept = [], 0
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("- "):
                kept = 0
            if line.startswith("    - "):
                kept += 1
                if kept > EXAMPLES_PER_INTENT:
                    continue
            out.append(line)
        path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return target


async def parse(rasa_url: str, text: str) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.post(f"{rasa_url}/model/parse", params={"token": TOKEN}, json={"text": text}) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def tracker_events(rasa_url: str, sender: str) -> list:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.get(f"{rasa_url}/conversations/{sender}/tracker", params={"token": TOKEN}) as r:
            return (await r.json())["events"]


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retrain")
    data = small_data(tmp / "data")
    split = tmp / "split.jsonl"
    split.write_text("".join((REPO_ROOT / "tests/data/test_split.jsonl").read_text(encoding="utf-8")
                             .splitlines(keepends=True)[:40]), encoding="utf-8")
    db_url = f"sqlite:///{tmp / 'tickets.db'}"
    engine = make_engine(db_url)
    prepare_store(engine)
    initial, _ = trainer.train_candidate(data, REPO_ROOT / "config.yml", tmp / "deploy", "initial")
    rasa_port, actions_port = _free_port(), _free_port()
    procs = start_stack(rasa_port, actions_port, model=str(initial), log_dir=tmp, api_token=TOKEN,
                        env={"QC_DATABASE_URL": db_url})
    settings = trainer.RetrainSettings(
        data_dir=data, store_dir=tmp / "store", deploy_dir=tmp / "deploy", test_split=split,
        rasa_url=f"http://127.0.0.1:{rasa_port}", rasa_token=TOKEN, database_url=db_url, margin=0.05,
    )
    try:
        yield Stack(settings.rasa_url, db_url), settings, engine, initial
    finally:
        stop_stack(procs)
        engine.dispose()


def test_a_correction_in_the_inbox_reaches_the_running_server(small_stack) -> None:
    stack, settings, engine, initial = small_stack
    before = asyncio.run(parse(stack.rasa_url, WRONG))
    assert before["intent"]["name"] != RIGHT

    # A conversation in progress when the model is swapped.
    keep = Chat(stack, "keep-" + uuid.uuid4().hex[:8])
    keep.say("你好")
    # The resident's message: the model is unsure → action_clarify → the review inbox.
    Chat(stack).say(WRONG)
    deadline = time.monotonic() + 20
    item = None
    while time.monotonic() < deadline and item is None:
        with engine.connect() as conn:
            item = conn.execute(select(review_items).where(review_items.c.text == WRONG)).mappings().first()
        time.sleep(0.3)
    assert item is not None and item["status"] == "new" and item["source"] == "fallback"
    best = next(r for r in before["intent_ranking"] if r["name"] != "nlu_fallback")
    assert (item["predicted_intent"], item["confidence"]) == (best["name"], round(best["confidence"], 4))

    asyncio.run(_admin_corrects_retrains_activates(stack, settings, engine, item["id"]))

    after = asyncio.run(parse(stack.rasa_url, WRONG))
    assert after["intent"]["name"] == RIGHT, after["intent_ranking"][:3]
    # the other conversation kept its tracker and goes on with the new model
    events = asyncio.run(tracker_events(stack.rasa_url, keep.conversation_id))
    assert [e.get("text") for e in events if e.get("event") == "user"] == ["你好"]
    keep.say("谢谢")
    events = asyncio.run(tracker_events(stack.rasa_url, keep.conversation_id))
    assert [e.get("text") for e in events if e.get("event") == "user"] == ["你好", "谢谢"]

    # Rollback: the previous model serves again.
    asyncio.run(_rollback(stack, settings, engine))
    again = asyncio.run(parse(stack.rasa_url, WRONG))
    assert again["intent"]["name"] == before["intent"]["name"]
    with engine.connect() as conn:
        rows = conn.execute(select(model_registry.c.status, model_registry.c.path)
                            .order_by(model_registry.c.id)).all()
    # the candidate (#1) is retired; the model that served before it was registered at
    # activation (#2) and is active again
    assert [(s, Path(p).name) for s, p in rows] == [("retired", "model-1.tar.gz"), ("active", "initial.tar.gz")]


async def _console(stack: Stack, settings: trainer.RetrainSettings, engine) -> TestClient:
    app = init_app(Settings(database_url=stack.db_url, rasa_url=stack.rasa_url))
    app[CONSOLE_ENGINE] = engine
    app[CONSOLE_CONFIG] = ConsoleConfig(notifier=False, rasa_token=TOKEN)
    app[RETRAIN_SETTINGS] = settings
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def _admin_corrects_retrains_activates(stack, settings, engine, item_id: int) -> None:
    svc.create_user(ConsoleUnitOfWork(engine), "root", "管理员", PASSWORD, "admin", (), now())
    client = await _console(stack, settings, engine)
    try:
        csrf = await login(client, "root")
        inbox = await (await client.get("/console/retraining")).text()
        assert WRONG in inbox
        resp = await post(client, f"/console/retraining/items/{item_id}/accept", csrf, intent=RIGHT, mention="",
                          entity="place")
        assert resp.status == 303, await resp.text()
        nlu = (settings.data_dir / "nlu" / "environment.yml").read_text(encoding="utf-8")
        assert f"    - {WRONG}\n" in nlu

        resp = await post(client, "/console/retraining/train", csrf)
        assert resp.status == 303
        model_id = int(resp.headers["Location"].rsplit("/", 1)[1])
        busy = await post(client, "/console/retraining/train", csrf)  # one at a time
        assert busy.status == 409 and "已有一次训练在进行" in await busy.text()

        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            model = trainer.get_model(engine, model_id)
            if model["status"] in ("candidate", "failed"):
                break
            page = await (await client.get(f"/console/retraining/models/{model_id}")).text()
            assert "<progress" in page
            await asyncio.sleep(2)
        assert model["status"] == "candidate", model["error"]
        assert trainer.running(engine) is None  # the lock is released
        metrics = model["metrics"]
        assert metrics["candidate"]["reviewed"] == {
            "n": 1, "accuracy": 1.0, "macro_f1": 1.0,
            "per_intent": {RIGHT: {"p": 1.0, "r": 1.0, "f1": 1.0, "support": 1}}}
        assert metrics["baseline"]["reviewed"]["accuracy"] == 0.0
        assert metrics["candidate"]["split"]["n"] == 40

        page = await (await client.get(f"/console/retraining/models/{model_id}")).text()
        assert "启用这个模型" in page and "混淆矩阵" in page
        png = await client.get(f"/console/retraining/models/{model_id}/confusion.png")
        assert png.status == 200 and (await png.read())[:8] == b"\x89PNG\r\n\x1a\n"
        resp = await post(client, f"/console/retraining/models/{model_id}/activate", csrf)
        assert resp.status == 303, await resp.text()
        assert trainer.get_model(engine, model_id)["status"] == "active"
    finally:
        await client.close()


async def _rollback(stack, settings, engine) -> None:
    client = await _console(stack, settings, engine)
    try:
        csrf = await login(client, "root")
        resp = await post(client, "/console/retraining/rollback", csrf)
        assert resp.status == 303, await resp.text()
    finally:
        await client.close()


def test_the_pages_in_a_browser(small_stack, tmp_path: Path) -> None:
    """The walk-through of docs/retraining.md, in headless Chromium against our web server (a real
    process) on the same store: the inbox, the span warning, a model's comparison, the
    registry. Screenshots go to docs/screenshots/ (QC_UPDATE_SCREENSHOTS=1, or missing)."""
    import os
    import subprocess
    import sys

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, wait_http
    from tests.e2e.test_console_browser import _screenshot

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make browser-deps)")
    sync_api = pytest.importorskip("playwright.sync_api")
    stack, settings, engine, _ = small_stack
    from bot.retraining.inbox import Sample, record

    when = now()
    with engine.begin() as conn:
        record(conn, Sample("fallback", "共享单车堵住了楼门口 我电话13912345678", "shot-p", "street_order", 0.22), when)
        for i, text in enumerate(["小区门口的共享单车堆成山了", "小区门口的共享单车堆成山了！",
                                  "小区门口，的共享单车堆成山了"]):
            record(conn, Sample("fallback", text, f"shot-a{i}", "street_order", 0.24, "property", 0.2), when)
        for i, text in enumerate(["楼道里有人给电动车充电", "楼道里 有人给电动车充电"]):
            record(conn, Sample("unsure", text, f"shot-b{i}", "property", 0.33, "street_order", 0.31), when)
        record(conn, Sample("fallback", "如意社区门口天天有人摆摊卖菜", "shot-c", "market", 0.21, "street_order", 0.2), when)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_WEB_PORT": str(port), "QC_RASA_URL": stack.rasa_url,
           "QC_RASA_TOKEN": TOKEN, "QC_DATABASE_URL": stack.db_url, "QC_NOTIFIER": "0",
           "QC_TRAIN_DATA_DIR": str(settings.data_dir), "QC_MODEL_STORE": str(settings.store_dir)}
    with open(tmp_path / "web.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.web.app"], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", proc)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
                expect = sync_api.expect
                page.goto(f"{base}/console/")
                page.get_by_label("用户名").fill("root")
                page.get_by_label("密码").fill(PASSWORD)
                page.get_by_role("button", name="登录").click()
                page.get_by_role("link", name="模型训练").click()
                first = page.locator(".review-item").first
                expect(first).to_contain_text("小区门口，的共享单车堆成山了")
                expect(first).to_contain_text("×3")
                expect(page.locator("body")).to_contain_text("我电话139****5678")
                expect(page.locator("body")).not_to_contain_text("13912345678")
                _screenshot(page, "retraining-inbox.png", tmp_path)

                card = page.locator(".review-item", has_text="如意社区门口天天有人摆摊卖菜")
                card.get_by_label("正确的意图/类别").select_option("street_order")
                card.get_by_label("地名（照原文填写，可不填）").fill("如意")
                card.get_by_label("地名类型").select_option("community")
                card.get_by_role("button", name="采纳").click()
                expect(page.locator("#snap").get_by_role("alert")).to_contain_text("「如意」与分词边界不一致，已调整为「如意社区」")
                _screenshot(page, "retraining-span-warning.png", tmp_path)
                page.get_by_role("button", name="按调整后的「如意社区」采纳").click()
                expect(page.get_by_role("status")).to_contain_text("已采纳")

                page.goto(f"{base}/console/retraining/models/1")
                expect(page.locator(".per-intent")).to_be_visible()
                expect(page.locator("img.confusion")).to_be_visible()
                _screenshot(page, "retraining-model.png", tmp_path)
                page.goto(f"{base}/console/retraining/models")
                expect(page.locator("table")).to_contain_text("使用中")
                _screenshot(page, "retraining-models.png", tmp_path)
            finally:
                browser.close()
    finally:
        stop_stack([proc])
    line = "    - [如意社区](community)门口天天有人摆摊卖菜\n"
    assert line in (settings.data_dir / "nlu" / "streets.yml").read_text(encoding="utf-8")

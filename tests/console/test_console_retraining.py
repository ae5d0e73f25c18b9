"""The retraining pages in the console: admins only (404 for every other role), the
inbox with its groups (and the category a resident picked after a fallback), the span
warning before anything is written, junk rejected, dispatcher corrections landing in the
inbox, a second training request refused."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.console.retraining import RETRAIN_SETTINGS
from bot.paths import REPO_ROOT
from bot.retraining.inbox import Sample, record, record_choice
from bot.retraining.tables import review_items
from bot.retraining.trainer import RetrainSettings, acquire_lock
from tests.console.helpers import OTHER_STREET, file, login, make_users, post

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
pytestmark = pytest.mark.asyncio


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(REPO_ROOT / "data", target)
    return target


@pytest.fixture
def app_overrides(data_dir: Path, tmp_path: Path) -> dict:
    return {RETRAIN_SETTINGS: RetrainSettings(data_dir=data_dir, store_dir=tmp_path / "store",
                                              deploy_dir=tmp_path / "deploy", rasa_url="http://127.0.0.1:9")}


@pytest.fixture
def retrain_client(client: TestClient) -> TestClient:
    return client


def _add(engine: Engine, text: str, key: str, source: str = "fallback") -> int:
    with engine.begin() as conn:
        return record(conn, Sample(source, text, key, "other", 0.12, "noise", 0.1), NOW)


async def test_only_admins_reach_the_retraining_pages(retrain_client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "dog", "disp", "root"))
    item = _add(engine, "楼下烧烤太吵", "k1")
    paths_get = ["/console/retraining", "/console/retraining/models", "/console/retraining/models/1"]
    paths_post = [f"/console/retraining/items/{item}/accept", f"/console/retraining/items/{item}/reject",
                  "/console/retraining/places", "/console/retraining/train", "/console/retraining/rollback",
                  "/console/retraining/models/1/activate"]
    for user in ("grid", "dog", "disp"):
        csrf = await login(retrain_client, user)
        page = await (await retrain_client.get("/console/queue")).text()
        assert "模型训练" not in page
        for path in paths_get:
            assert (await retrain_client.get(path)).status == 404, (user, path)
        for path in paths_post:
            assert (await post(retrain_client, path, csrf, intent="noise")).status == 404, (user, path)
        await post(retrain_client, "/console/logout", csrf)
    with engine.connect() as conn:
        assert conn.execute(select(review_items.c.status)).scalars().all() == ["new"]
    csrf = await login(retrain_client, "root")
    page = await (await retrain_client.get("/console/retraining")).text()
    assert "楼下烧烤太吵" in page and "×1" in page


async def test_inbox_shows_masked_groups_by_frequency_and_escapes(retrain_client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    _add(engine, "井盖丢了 电话13912345678", "a")
    _add(engine, "<script>alert(1)</script>路灯不亮", "b")
    _add(engine, "<script>alert(1)</script> 路灯不亮！", "c")
    await login(retrain_client, "root")
    page = await (await retrain_client.get("/console/retraining")).text()
    assert "13912345678" not in page and "139****5678" in page
    assert page.index("×2") < page.index("×1")  # the group of two first
    assert "<script>alert(1)</script>" not in page


async def test_the_residents_choice_is_shown_and_preselected(retrain_client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    _add(engine, "公主府社区楼下那个东西又坏了", "fallback:resident-1:m1")  # the model thought "other"
    _add(engine, "路灯不亮", "fallback:resident-2:m2")
    with engine.begin() as conn:
        assert record_choice(conn, "resident-1", "noise", NOW) is not None
        assert record_choice(conn, "resident-2", "<script>alert(1)</script>", NOW) is not None
    await login(retrain_client, "root")
    page = await (await retrain_client.get("/console/retraining")).text()
    assert "居民选择：噪声扰民（noise）" in page
    assert '<option value="noise" selected>' in page  # the resident's choice, not the model's guess
    assert "chosen_by" not in page and "纠正：" not in page  # shown as the choice, not as raw keys
    assert "<script>alert(1)</script>" not in page and "居民选择：&lt;script&gt;" in page


async def test_a_span_off_the_token_boundaries_is_warned_about_before_writing(
        retrain_client: TestClient, engine: Engine, data_dir: Path) -> None:
    make_users(engine, ("root",))
    item = _add(engine, "如意社区有好几只流浪狗天天叫", "k")
    csrf = await login(retrain_client, "root")
    nlu_before = {p.name: p.read_bytes() for p in (data_dir / "nlu").glob("*.yml")}
    resp = await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="dog",
                      mention="如意", entity="community")
    page = await resp.text()
    assert resp.status == 200
    assert "「如意」与分词边界不一致，已调整为「如意社区」" in page and "按调整后的「如意社区」采纳" in page
    assert {p.name: p.read_bytes() for p in (data_dir / "nlu").glob("*.yml")} == nlu_before  # nothing written yet
    resp = await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="dog",
                      mention="如意", entity="community", confirm_snap="1")
    assert resp.status == 303
    text = (data_dir / "nlu" / "environment.yml").read_text(encoding="utf-8")
    assert "    - [如意社区](community)有好几只流浪狗天天叫\n" in text
    with engine.connect() as conn:
        row = conn.execute(select(review_items)).mappings().one()
    assert (row["status"], row["intent"], row["reviewed_by"]) == ("accepted", "dog", "root")
    assert row["entities"] == [{"start": 0, "end": 4, "entity": "community", "value": "如意社区"}]


async def test_bad_annotations_get_a_clear_error(retrain_client: TestClient, engine: Engine, data_dir: Path) -> None:
    make_users(engine, ("root",))
    item = _add(engine, "暖气不热", "k")
    csrf = await login(retrain_client, "root")
    resp = await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="heating",
                      mention="如意社区", entity="community")
    assert resp.status == 400 and "句子里没有「如意社区」" in await resp.text()
    resp = await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="no_such_intent")
    assert resp.status == 400 and "请选择正确的意图" in await resp.text()
    resp = await post(retrain_client, "/console/retraining/items/999/accept", csrf, intent="heating")
    assert resp.status == 404


async def test_reject_and_add_a_place(retrain_client: TestClient, engine: Engine, data_dir: Path) -> None:
    make_users(engine, ("root",))
    item = _add(engine, "啊啊啊啊", "k")
    csrf = await login(retrain_client, "root")
    assert (await post(retrain_client, f"/console/retraining/items/{item}/reject", csrf)).status == 303
    with engine.connect() as conn:
        assert conn.execute(select(review_items.c.status)).scalar_one() == "rejected"
    resp = await post(retrain_client, "/console/retraining/places", csrf, name="青城智谷", district_code="150105")
    assert resp.status == 303
    assert "青城智谷,,150105,,,审核页添加" in (data_dir / "locations" / "places.csv").read_text(encoding="utf-8")
    again = await post(retrain_client, "/console/retraining/places", csrf, name="青城智谷")
    assert again.status == 409 and "已有这个地名" in await again.text()


async def test_a_second_training_request_is_told_one_is_running(retrain_client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    with engine.begin() as conn:  # a run in progress (this live process holds the lock)
        import os

        acquire_lock(conn, 41, os.getpid(), NOW)
    csrf = await login(retrain_client, "root")
    resp = await post(retrain_client, "/console/retraining/train", csrf)
    assert resp.status == 409 and "已有一次训练在进行（模型 #41）" in await resp.text()
    from bot.retraining.tables import model_registry

    with engine.connect() as conn:
        assert conn.execute(select(model_registry)).all() == []  # nothing registered for the refused run


async def test_redispatch_to_another_street_and_unit_lands_in_the_inbox(client: TestClient, engine: Engine) -> None:
    make_users(engine, ("grid", "disp"))
    filed = file(engine, "k1", description="小区门口狗太多 我电话13912345678")
    tid = filed.ticket_id
    worker = await login(client, "grid")
    assert (await post(client, f"/console/tickets/{tid}/accept", worker)).status == 303
    assert (await post(client, f"/console/tickets/{tid}/return", worker, reason="不是养犬问题")).status == 303
    from tests.console.helpers import another_client

    async with another_client(client) as disp_client:
        disp = await login(disp_client, "disp")
        resp = await post(disp_client, f"/console/tickets/{tid}/redispatch", disp, lead="urban_management",
                          street=OTHER_STREET)
        assert resp.status == 303
    with engine.connect() as conn:
        rows = conn.execute(select(review_items).order_by(review_items.c.id)).mappings().all()
    assert [(r["source"], r["ticket_id"], r["predicted_intent"]) for r in rows] == [
        ("ticket_location", tid, "dog"), ("ticket_category", tid, "dog")]
    assert rows[0]["text"] == "小区门口狗太多 我电话139****5678"
    assert rows[0]["correction"] == {"street_code": OTHER_STREET, "was": "150102001"}
    assert rows[1]["correction"]["lead"] == "urban_management"


async def test_a_recategorised_ticket_is_shown_as_the_dispatchers_choice(retrain_client: TestClient,
                                                                        engine: Engine) -> None:
    make_users(engine, ("grid", "disp", "root"))
    filed = file(engine, "k1", category="noise", description="夜市摊贩占道经营")
    tid = filed.ticket_id
    worker = await login(retrain_client, "grid")
    assert (await post(retrain_client, f"/console/tickets/{tid}/accept", worker)).status == 303
    assert (await post(retrain_client, f"/console/tickets/{tid}/return", worker, reason="不是噪声")).status == 303
    from tests.console.helpers import another_client

    async with another_client(retrain_client) as disp_client, another_client(retrain_client) as root:
        disp = await login(disp_client, "disp")
        assert (await post(disp_client, f"/console/tickets/{tid}/recategorise", disp, category="street_order",
                           reason="实为占道经营")).status == 303
        await login(root, "root")
        page = await (await root.get("/console/retraining")).text()
    assert "派单中心改类：市容秩序（street_order）" in page and "派单纠正类别" in page
    assert '<option value="street_order" selected>' in page  # suggested for the review
    assert "chosen_by" not in page

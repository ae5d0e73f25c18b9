"""Issue 20 item 8, over HTTP as an admin uses the console (the pages, the forms, the
training data files and the database): a denied category is not preselected, an accept
can be undone until a training run starts, the span warning names the message and offers
the marked name whole, the page shows no server path, the model `make` trained reads as
such, and the reviewed-examples accuracy says what it measures."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from bot.console.retraining import RETRAIN_SETTINGS
from bot.paths import REPO_ROOT
from bot.retraining.inbox import Sample, record
from bot.retraining.tables import model_registry, review_items
from bot.retraining.trainer import RetrainSettings
from tests.console.helpers import login, make_users, post
from tests.retraining.test_retrain_activate_all import FakeRasa

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
pytestmark = pytest.mark.asyncio


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(REPO_ROOT / "data", target)
    return target


@pytest.fixture
def fake_rasa():
    fake = FakeRasa().start()
    yield fake
    fake.stop()


@pytest.fixture
def app_overrides(data_dir: Path, tmp_path: Path, fake_rasa: FakeRasa) -> dict:
    return {RETRAIN_SETTINGS: RetrainSettings(data_dir=data_dir, store_dir=tmp_path / "store",
                                              deploy_dir=tmp_path / "deploy", rasa_url=fake_rasa.url)}


@pytest.fixture
def retrain_client(client: TestClient) -> TestClient:
    return client


def _add(engine: Engine, sample: Sample) -> int:
    with engine.begin() as conn:
        return record(conn, sample, NOW)


def _nlu(data_dir: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted((data_dir / "nlu").glob("*.yml"))}


async def test_a_denied_category_is_not_preselected(retrain_client: TestClient, engine: Engine) -> None:
    make_users(engine, ("root",))
    _add(engine, Sample("deny", "楼上天天半夜装修电钻响", "deny:resident-1:m1", "noise", None,
                        correction={"denied": "noise"}))
    await login(retrain_client, "root")
    page = await (await retrain_client.get("/console/retraining")).text()
    assert "居民否认：噪声扰民（noise）" in page
    assert '<option value="noise" selected>' not in page
    assert '<option value="" selected>请选择…</option>' in page
    assert "denied=" not in page


async def test_an_accept_can_be_undone_until_a_training_run_starts(
        retrain_client: TestClient, engine: Engine, data_dir: Path) -> None:
    make_users(engine, ("root",))
    item = _add(engine, Sample("fallback", "咕叽咕叽呱呱噜噜", "fallback:r:m1", "other", 0.1, "noise", 0.05))
    csrf = await login(retrain_client, "root")
    before = _nlu(data_dir)
    assert (await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="noise")).status == 303
    assert _nlu(data_dir) != before
    page = await (await retrain_client.get("/console/retraining?status=accepted")).text()
    assert f"/console/retraining/items/{item}/undo" in page

    resp = await post(retrain_client, f"/console/retraining/items/{item}/undo", csrf)
    assert resp.status == 303
    assert _nlu(data_dir) == before  # exactly the line it wrote is gone
    with engine.connect() as conn:
        row = conn.execute(select(review_items).where(review_items.c.id == item)).mappings().one()
    assert (row["status"], row["intent"], row["reviewed_by"], row["reviewed_at"]) == ("new", None, None, None)
    assert "written" not in row["correction"]

    # accepted again, then a training run starts: too late to undo
    assert (await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="noise")).status == 303
    after_accept = _nlu(data_dir)
    with engine.begin() as conn:
        conn.execute(insert(model_registry).values(
            created_at=datetime.now(timezone.utc) + timedelta(seconds=1), created_by="root", status="training",
            progress=10, metrics={}))
    resp = await post(retrain_client, f"/console/retraining/items/{item}/undo", csrf)
    assert resp.status == 409
    assert "已用于训练模型" in await resp.text()
    assert _nlu(data_dir) == after_accept


async def test_an_undo_never_removes_an_example_that_was_there_before(
        retrain_client: TestClient, engine: Engine, data_dir: Path) -> None:
    make_users(engine, ("root",))
    existing = "遛狗不牵绳"
    assert any(f"    - {existing}\n" in b.decode() for b in _nlu(data_dir).values())
    item = _add(engine, Sample("fallback", existing, "fallback:r:m2", "other", 0.1))
    csrf = await login(retrain_client, "root")
    before = _nlu(data_dir)
    assert (await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="dog")).status == 303
    assert (await post(retrain_client, f"/console/retraining/items/{item}/undo", csrf)).status == 303
    assert _nlu(data_dir) == before


async def test_the_span_warning_names_the_message_and_offers_the_marked_name_whole(
        retrain_client: TestClient, engine: Engine, data_dir: Path) -> None:
    make_users(engine, ("root",))
    # jieba's dictionary is process-wide: each database run marks a name no run added yet
    name = {"sqlite": "金隅时代城", "postgresql": "绿地时代城"}[engine.dialect.name]
    text = name + "门口垃圾堆了好几天没人清理"
    item = _add(engine, Sample("fallback", text, "fallback:r:m3", "other", 0.1))
    csrf = await login(retrain_client, "root")
    resp = await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="sanitation",
                      mention=name, entity="place")
    page = await resp.text()
    assert resp.status == 200
    assert f"关于第 {item} 条「{text}」" in page
    assert f"把「{name}」加入分词词典，按「{name}」采纳" in page
    resp = await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="sanitation",
                      mention=name, entity="place", add_word="1")
    assert resp.status == 303
    nlu = "".join(b.decode() for b in _nlu(data_dir).values())
    assert f"    - [{name}](place)门口垃圾堆了好几天没人清理\n" in nlu
    assert f"{name} " in (data_dir / "dictionaries" / "places.txt").read_text(encoding="utf-8")


async def test_a_marked_span_that_is_not_a_name_is_neither_recommended_nor_added(
        retrain_client: TestClient, engine: Engine, data_dir: Path) -> None:
    make_users(engine, ("root",))
    text = "头疼 新城区的路灯坏了好几天"
    item = _add(engine, Sample("fallback", text, "fallback:r:m9", "other", 0.1))
    csrf = await login(retrain_client, "root")
    words = (data_dir / "dictionaries" / "places.txt").read_bytes()
    resp = await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="roads_lighting",
                      mention="头疼 新城", entity="place")
    page = await resp.text()
    assert resp.status == 200 and f"关于第 {item} 条" in page
    assert "加入分词词典" not in page and "（推荐）" not in page
    resp = await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="roads_lighting",
                      mention="头疼 新城", entity="place", add_word="1")
    assert resp.status == 400
    assert "2–20个汉字、字母或数字" in await resp.text()
    assert (data_dir / "dictionaries" / "places.txt").read_bytes() == words
    for junk in ("新城，", "新城区!", "新"):
        resp = await post(retrain_client, f"/console/retraining/items/{item}/accept", csrf, intent="roads_lighting",
                          mention=junk, entity="place", add_word="1")
        assert resp.status == 400, junk
    assert (data_dir / "dictionaries" / "places.txt").read_bytes() == words


async def test_the_inbox_page_shows_no_server_path(retrain_client: TestClient, engine: Engine, data_dir: Path) -> None:
    make_users(engine, ("root",))
    await login(retrain_client, "root")
    page = await (await retrain_client.get("/console/retraining")).text()
    assert str(data_dir) not in page and str(REPO_ROOT) not in page


async def test_the_model_make_trained_reads_as_such_and_reviewed_accuracy_is_labelled(
        retrain_client: TestClient, engine: Engine, tmp_path: Path, fake_rasa: FakeRasa) -> None:
    make_users(engine, ("root",))
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "20261125-010000-make.tar.gz").write_bytes(b"served")  # what `make train` made
    candidate = tmp_path / "store" / "model-1.tar.gz"
    candidate.parent.mkdir()
    candidate.write_bytes(b"new")
    metrics = {"candidate": {"split": {"accuracy": 0.9, "macro_f1": 0.9, "n": 10, "per_intent": {}},
                             "reviewed": {"accuracy": 1.0, "n": 3}},
               "baseline": {"split": {"accuracy": 0.9, "macro_f1": 0.9, "n": 10}, "reviewed": {"accuracy": 0.0, "n": 3}}}
    with engine.begin() as conn:
        model_id = conn.execute(insert(model_registry).values(
            created_at=NOW, created_by="root", status="candidate", progress=100, path=str(candidate),
            metrics=metrics, finished_at=NOW)).inserted_primary_key[0]
    csrf = await login(retrain_client, "root")
    page = await (await retrain_client.get(f"/console/retraining/models/{model_id}")).text()
    assert "已审核样本准确率" in page and "新模型训练时见过" in page
    resp = await post(retrain_client, f"/console/retraining/models/{model_id}/activate", csrf)
    assert resp.status == 303, await resp.text()
    listing = await (await retrain_client.get("/console/retraining/models")).text()
    assert "<td>models/</td>" not in listing
    assert listing.count("make（data/ 改动后训练，未评测）") == 1


async def test_the_training_log_on_the_model_page_shows_no_server_path_and_no_warnings(
        retrain_client: TestClient, engine: Engine, tmp_path: Path) -> None:
    make_users(engine, ("root",))
    site = "/opt/venv/lib/python3.10/site-packages"
    archive = tmp_path / "store" / "model-1" / "20261125-020000-candidate.tar.gz"
    log = tmp_path / "train.log"
    log.write_text(
        f"{site}/rasa/shared/utils/io.py:99: UserWarning: Misaligned entity annotation\n"
        "  warnings.warn(\n"
        f"{site}/sqlalchemy/orm/relationships.py:3441: SAWarning: relationship 'X' will copy column\n"
        "  util.warn(\n"
        "Building prefix dict from the default dictionary ...\n"
        "Loading model from cache /tmp/jieba.cache\n"
        f"Your Rasa model is trained and saved at '{archive}'.\n"
        f"data: {REPO_ROOT}/data/nlu/complaints.yml, http://127.0.0.1:5005/model ok\n", encoding="utf-8")
    with engine.begin() as conn:
        model_id = conn.execute(insert(model_registry).values(
            created_at=NOW, created_by="root", status="candidate", progress=100, path=str(archive),
            metrics={}, finished_at=NOW, log_path=str(log))).inserted_primary_key[0]
    await login(retrain_client, "root")
    page = await (await retrain_client.get(f"/console/retraining/models/{model_id}")).text()
    shown = page.split("<h2>训练日志</h2>", 1)[1].split("</pre>", 1)[0]
    assert re.search(r"(?<![\w.:/])/[\w.-]+/", shown) is None, shown  # no absolute path
    assert "Warning" not in shown and "warnings.warn" not in shown and "site-packages" not in shown
    assert "Loading model from cache jieba.cache" in shown
    assert "saved at &#39;20261125-020000-candidate.tar.gz&#39;" in shown or \
        "saved at '20261125-020000-candidate.tar.gz'" in shown
    assert "data: data/nlu/complaints.yml, http://127.0.0.1:5005/model ok" in shown

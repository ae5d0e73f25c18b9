"""Training safety: one run at a time (a lock row that a dead process cannot leave
behind), a failed validation leaves the active model untouched and says why, a
candidate that regresses the split cannot be activated, and a refused load records
nothing. The happy path (train, compare, activate, rollback on a live Rasa server) is
tests/e2e/test_retraining_e2e.py."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from bot.retraining import trainer
from bot.retraining.tables import model_registry, training_lock
from bot.retraining.trainer import RetrainError, RetrainSettings, TrainingBusy, acquire_lock, regression

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_run_is_refused_while_one_holds_the_lock(engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        acquire_lock(conn, 7, os.getpid(), NOW)
    settings = RetrainSettings(data_dir=tmp_path, store_dir=tmp_path / "store", database_url=str(engine.url))
    with pytest.raises(TrainingBusy, match="已有一次训练在进行（模型 #7）"):
        trainer.start_training(engine, settings, "root")
    with engine.begin() as conn:
        with pytest.raises(TrainingBusy):
            acquire_lock(conn, 8, os.getpid(), NOW)
    with engine.connect() as conn:
        assert conn.execute(select(model_registry)).all() == []  # the refused run left no row
        assert conn.execute(select(training_lock.c.model_id)).scalars().all() == [7]
    trainer.release_lock(engine, 7)
    assert trainer.running(engine) is None


def test_the_page_does_not_wait_forever_for_a_crashed_run(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(model_registry).values(id=3, created_at=NOW, created_by="root", status="evaluating",
                                                   progress=90, metrics={}))
        acquire_lock(conn, 3, _dead_pid(), NOW)
    assert trainer.running(engine) is None
    assert trainer.get_model(engine, 3)["status"] == "failed"


def test_a_lock_left_by_a_dead_process_is_cleared(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(model_registry).values(id=3, created_at=NOW, created_by="root", status="training",
                                                   progress=40, metrics={}))
        acquire_lock(conn, 3, _dead_pid(), NOW)
    with engine.begin() as conn:
        acquire_lock(conn, 4, os.getpid(), NOW)
    assert trainer.running(engine)["model_id"] == 4
    dead = trainer.get_model(engine, 3)
    assert (dead["status"], dead["error"]) == ("failed", "训练进程意外退出")


def test_invalid_data_fails_the_run_and_leaves_the_active_model_alone(engine: Engine, data_dir: Path,
                                                                     tmp_path: Path) -> None:
    active = tmp_path / "deploy" / "active.tar.gz"
    active.parent.mkdir()
    active.write_bytes(b"the serving model")
    active_id = trainer.register_existing(engine, active, "setup")
    (data_dir / "nlu" / "broken.yml").write_text('version: "3.1"\nnlu:\n- intent: noise\n  examples: [1, 2\n',
                                                 encoding="utf-8")
    settings = RetrainSettings(data_dir=data_dir, store_dir=tmp_path / "store", deploy_dir=active.parent,
                               database_url=str(engine.url.render_as_string(hide_password=False)))
    model_id = trainer.start_training(engine, settings, "root", wait=True)
    run = trainer.get_model(engine, model_id)
    assert run["status"] == "failed" and run["path"] is None
    assert run["error"].startswith("训练数据校验未通过（rasa data validate）")
    assert "失败：训练数据校验未通过" in Path(run["log_path"]).read_text(encoding="utf-8")
    assert trainer.running(engine) is None  # lock released
    assert trainer.get_model(engine, active_id)["status"] == "active"
    assert active.read_bytes() == b"the serving model" and sorted(p.name for p in active.parent.iterdir()) == [
        "active.tar.gz"]
    with pytest.raises(RetrainError, match="当前为「failed」，不能启用"):
        trainer.activate(engine, settings, model_id, "root")


def test_regression_beyond_the_margin_blocks_activation(engine: Engine, tmp_path: Path) -> None:
    def metrics(cand: float, base: float) -> dict:
        return {"candidate": {"split": {"accuracy": cand}}, "baseline": {"split": {"accuracy": base}}}

    assert regression(metrics(0.95, 0.955), 0.01) is None
    assert regression(metrics(0.94, 0.955), 0.01).startswith("候选模型在测试集上的准确率 0.940 比当前模型 0.955 低了超过")
    assert regression({"candidate": {"split": {"accuracy": 0.5}}, "baseline": None}, 0.01) is None
    archive = tmp_path / "c.tar.gz"
    archive.write_bytes(b"x")
    with engine.begin() as conn:
        conn.execute(insert(model_registry).values(id=5, created_at=NOW, created_by="root", status="candidate",
                                                   progress=100, path=str(archive), metrics=metrics(0.80, 0.90)))
    settings = RetrainSettings(deploy_dir=tmp_path / "deploy", rasa_url="http://127.0.0.1:9")
    with pytest.raises(RetrainError, match="不能启用"):
        trainer.activate(engine, settings, 5, "root")
    assert trainer.get_model(engine, 5)["status"] == "candidate"
    assert not (tmp_path / "deploy").exists()


def test_a_server_that_cannot_be_reached_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    archive = tmp_path / "c.tar.gz"
    archive.write_bytes(b"x")
    with engine.begin() as conn:
        conn.execute(insert(model_registry).values(id=6, created_at=NOW, created_by="root", status="candidate",
                                                   progress=100, path=str(archive),
                                                   metrics={"candidate": {"split": {"accuracy": 0.9}}}))
    settings = RetrainSettings(deploy_dir=tmp_path / "deploy", rasa_url="http://127.0.0.1:9")
    with pytest.raises(RetrainError, match="连不上 Rasa 服务器"):
        trainer.activate(engine, settings, 6, "root")
    assert trainer.get_model(engine, 6)["status"] == "candidate"
    with pytest.raises(RetrainError, match="没有可以回退到的上一个模型"):
        trainer.rollback(engine, settings, "root")


def test_effective_config_points_the_pipeline_at_the_data_dir(tmp_path: Path) -> None:
    import yaml

    settings = RetrainSettings(data_dir=tmp_path / "d")
    cfg = yaml.safe_load(trainer.effective_config(settings, tmp_path / "c.yml").read_text(encoding="utf-8"))
    steps = {s["name"]: s for s in cfg["pipeline"]}
    assert steps["bot.nlu.locations.GazetteerEntityExtractor"]["places_csv"] == str(tmp_path / "d/locations/places.csv")
    assert steps["bot.nlu.tokenizer.NormalisingJiebaTokenizer"]["dictionary_path"] == str(tmp_path / "d/dictionaries")
    assert cfg["policies"] == yaml.safe_load(Path("config.yml").read_text(encoding="utf-8"))["policies"]


def test_settings_survive_the_trip_to_the_job_process(tmp_path: Path) -> None:
    s = RetrainSettings(data_dir=tmp_path, margin=0.02, rasa_token="t", database_url="sqlite:///x.db")
    assert RetrainSettings.from_json(s.to_json()) == s

"""`python -m bot retrain` and `python -m bot models …` (subprocesses, a SQLite store)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import insert

from bot.paths import REPO_ROOT
from bot.retraining.tables import model_registry
from bot.retraining.trainer import acquire_lock
from bot.storage.engine import init_db, make_engine

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)


def run(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QC_DATABASE_URL": url, "PYTHONPATH": str(REPO_ROOT), "QC_RASA_URL": "http://127.0.0.1:9"}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_models_and_retrain_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    (tmp_path / "m.tar.gz").write_bytes(b"x")
    engine = make_engine(url)
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(insert(model_registry).values(
            id=1, created_at=NOW, created_by="root", status="candidate", progress=100, path=str(tmp_path / "m.tar.gz"),
            data_hash="ab" * 32, metrics={"candidate": {"split": {"accuracy": 0.8}}, "baseline": {"split": {"accuracy": 0.9}}}))
        acquire_lock(conn, 1, os.getpid(), NOW)
    listed = run(url, "models", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("#1    candidate  2026-11-25 02:00 root       acc=0.8 abababababab")
    shown = run(url, "models", "show", "1")
    assert shown.returncode == 0 and '"blocked": "候选模型在测试集上的准确率 0.800 比当前模型 0.900' in shown.stdout
    refused = run(url, "models", "activate", "1")
    assert refused.returncode == 1 and "不能启用" in refused.stderr
    assert run(url, "models", "show", "9").returncode == 1
    assert run(url, "models", "rollback").stderr.strip() == "models: 没有可以回退到的上一个模型"
    busy = run(url, "retrain")
    assert busy.returncode == 1 and "已有一次训练在进行（模型 #1）" in busy.stderr
    assert run(url, "models", "activate").returncode == 2  # no model number
    engine.dispose()

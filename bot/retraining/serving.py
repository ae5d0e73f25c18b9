"""What the Rasa servers load when `make run` or `make run-cluster` starts them: the
model registry's active model, always (issue 20 item 5).

The rule for a model `make` trained (data/ changed, so models/ has an archive the
registry does not know):
- no admin choice yet (nothing active, or the active model is one `make` registered):
  it is registered and activated — a developer who edits data/ gets the new model;
- an admin activated (or rolled back to) a model: it is registered as a candidate and
  the admin's model keeps serving; the admin is told, and decides in the console.
The active archive is then made the newest in models/, so the servers' `--model models`
(and a supervisor restarting one of them later) load it.

The servers' API address and token are written to var/rasa-api.json (bot/retraining/rasa_api.py).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine

from bot.domain.clock import now_utc
from bot.retraining import trainer
from bot.retraining.rasa_api import publish_api
from bot.retraining.tables import model_registry

MAKE = trainer.MAKE  # created_by / activated_by of a model `make` trained
def _known(engine: Engine, deploy_dir: Path) -> set:
    """Every archive the registry knows, and its deployed copy in models/."""
    out = set()
    for m in trainer.list_models(engine, limit=100000):
        if m["path"]:
            out.add(Path(m["path"]).resolve())
            out.add((deploy_dir / Path(m["path"]).name).resolve())
    return out


def _register(engine: Engine, archive: Path, status: str) -> int:
    now = now_utc()
    active = status == "active"
    with engine.begin() as conn:
        if active:
            conn.execute(update(model_registry).where(model_registry.c.status == "active").values(status="retired"))
        return conn.execute(insert(model_registry).values(
            created_at=now, created_by=MAKE, status=status, progress=100, path=str(archive), metrics={},
            finished_at=now, activated_at=now if active else None, activated_by=MAKE if active else None,
        )).inserted_primary_key[0]


def choose_model(engine: Engine, settings: trainer.RetrainSettings,
                 say: Callable[[str], None] = print) -> Path:
    """Register what `make` trained (see the module's rule), make the active archive the
    newest in settings.deploy_dir and return that folder (Rasa's --model)."""
    deploy = settings.deploy_dir
    archives = sorted(deploy.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    known = _known(engine, deploy)
    fresh = next((a for a in reversed(archives) if a.resolve() not in known), None)
    active = trainer.active_model(engine)
    if active is not None and not (active["path"] and Path(active["path"]).exists()):
        say(f"注意：登记为启用的模型 #{active['id']} 的文件已不存在（{active['path']}），改用 models/ 中最新的模型。")
        active = None
    if active is None or (fresh is not None and active["activated_by"] == MAKE):
        pick = fresh or (archives[-1] if archives else None)
        if pick is None:
            return deploy  # nothing trained: Rasa says so
        model_id = _register(engine, pick, "active") if pick.resolve() not in known else None
        if model_id is not None:
            say(f"模型 #{model_id}（make 训练）已登记并启用。")
        return deploy
    if fresh is not None:
        model_id = _register(engine, fresh, "candidate")
        say(f"注意：data/ 有改动，make 训练了新模型 #{model_id}，已登记为候选（没有评测），没有启用；"
            f"继续使用管理员启用的模型 #{active['id']}。要换用新数据：在控制台「模型训练 → 模型」页训练"
            f"（会评测）后启用，或运行 python -m bot retrain --wait，再 python -m bot models activate 编号。")
    trainer.deploy(settings, Path(active["path"]))  # newest in models/: Rasa loads it
    return deploy


def prepare(rasa_urls: Sequence[str], token: str, say: Callable[[str], None] = print) -> str:
    """Called by `bot serve` and `bot cluster` before the Rasa servers start: the model
    folder to load (its newest archive is the registry's active model) and the API file."""
    from bot.storage.engine import init_db, make_engine

    settings = trainer.RetrainSettings.from_env()
    engine = make_engine(settings.database_url)
    try:
        init_db(engine)
        model = choose_model(engine, settings, say)
    finally:
        engine.dispose()
    publish_api(rasa_urls, token)
    return str(model)

"""`rasa train` / `rasa train nlu` into temporary directories, timed.

Every run gets its own empty Rasa training cache (RASA_CACHE_DIRECTORY): a timed run
never reuses work from an earlier one, and folds never fill the repository's .rasa/.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from bot.paths import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
RASA = str(VENV_BIN / "rasa")
OUR_CONFIG = REPO_ROOT / "config.yml"
STOCK_CONFIG = REPO_ROOT / "bench" / "configs" / "stock_zh.yml"
DIALOGUE_DATA = [REPO_ROOT / "data" / d for d in ("rules", "stories")]


class TrainingFailed(RuntimeError):
    pass


def rasa_env(extra: dict | None = None) -> dict:
    return {**os.environ, **(extra or {}), "RASA_TELEMETRY_ENABLED": "false", "PYTHONPATH": str(REPO_ROOT),
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def train(config: Path, out_dir: Path, name: str, nlu: Path | None = None, data: Sequence[Path] | None = None,
          timeout: float = 4 * 3600) -> tuple[Path, float]:
    """Train one model; returns (model archive, wall-clock seconds). `nlu` given → NLU only;
    otherwise NLU + dialogue from `data` (default: data/, as `make train` does)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = out_dir / f".cache-{name}"
    cmd = [RASA, "train"] + (["nlu", "--nlu", str(nlu)] if nlu else []) + (
        ["--data", *map(str, data)] if data and not nlu else []) + [
        "--config", str(config), "--out", str(out_dir), "--fixed-model-name", name, "--quiet"]
    log_path = out_dir / f"train-{name}.log"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=rasa_env({"RASA_CACHE_DIRECTORY": str(cache)}),
                              stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    seconds = time.perf_counter() - t0
    model = out_dir / f"{name}.tar.gz"
    if proc.returncode != 0 or not model.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise TrainingFailed(f"{' '.join(cmd)} failed (exit {proc.returncode}); end of {log_path}:\n{tail}")
    return model, seconds


def stock_config(out_path: Path, diet_epochs: int | None = None, ted_epochs: int | None = None,
                 run_eagerly: bool = False) -> Path:
    """bench/configs/stock_zh.yml, with other epochs when asked; `run_eagerly` (--quick only)
    skips TensorFlow's graph tracing, which alone costs minutes per model on 2 cores."""
    cfg = yaml.safe_load(STOCK_CONFIG.read_text(encoding="utf-8"))
    for part, name, epochs in (("pipeline", "DIETClassifier", diet_epochs), ("policies", "TEDPolicy", ted_epochs)):
        for comp in cfg.get(part) or []:
            if comp.get("name") == name:
                if epochs is not None:
                    comp["epochs"] = int(epochs)
                if run_eagerly:
                    comp["run_eagerly"] = True
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out_path


def component_setting(config: Path, part: str, name: str, key: str, default=None):
    cfg = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    for comp in cfg.get(part) or []:
        if comp.get("name") == name:
            return comp.get(key, default)
    return default

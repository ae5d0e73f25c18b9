"""Train, compare, activate, roll back.

A training run is one row in model_registry and, while it runs, the single row of
training_lock (inserting it is the lock: a second request fails on the primary key and
is told a run is going on; it works across processes and hosts sharing the database).
The run itself is a separate process (`python -m bot.retraining.job`): `rasa data
validate`, `rasa train` from the repository root with telemetry off, then an
evaluation of the candidate and of the active model on the held-out split plus the
reviewed inbox examples. Nothing touches the active model until an admin activates the
candidate, which loads it into every running Rasa server through its HTTP API
(PUT /model: no restart; trackers live in the tracker store, so conversations go on).
Behind a proxy (the production cluster) QC_RASA_URL reaches only one of the servers:
QC_RASA_MODEL_URLS names each of them, and an activation is all of them or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, desc, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from bot.domain.clock import now_utc
from bot.paths import REPO_ROOT, VAR_DIR
from bot.retraining.rasa_api import read_api
from bot.retraining.tables import model_registry, training_lock

LOCK_NAME = "train"
MAKE = "make train"  # who registered a model `make` trained (bot/retraining/serving.py)
VENV_BIN = Path(sys.executable).parent
LOAD_TIMEOUT = 30.0  # seconds one Rasa server gets to load a model (PUT /model answers once it has)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainSettings:
    """Where training reads and writes. Tests point data_dir at a copy of data/."""

    data_dir: Path = REPO_ROOT / "data"  # QC_TRAIN_DATA_DIR
    config: Path = REPO_ROOT / "config.yml"  # QC_TRAIN_CONFIG
    domain: Path = REPO_ROOT / "domain.yml"
    store_dir: Path = VAR_DIR / "models"  # QC_MODEL_STORE: candidates, logs, pictures
    deploy_dir: Path = REPO_ROOT / "models"  # QC_MODEL_DIR: the newest archive here is what a restart loads
    test_split: Path = REPO_ROOT / "tests" / "data" / "test_split.jsonl"
    margin: float = 0.01  # QC_RETRAIN_MARGIN: allowed drop of split accuracy (0.01 = 1 point)
    rasa_url: str = "http://127.0.0.1:5005"  # QC_RASA_URL
    rasa_model_urls: str = ""  # QC_RASA_MODEL_URLS: every Rasa server, comma-separated ("" → rasa_url alone)
    rasa_token: str = ""  # QC_RASA_TOKEN
    database_url: str = ""  # the job process's database (QC_DATABASE_URL)

    @classmethod
    def from_env(cls) -> RetrainSettings:
        from bot.storage.engine import default_url

        env = os.environ
        # The running servers' address from the API file even when the environment gives only
        # the token (QC_RASA_TOKEN=x bot models rollback); an address in the environment wins.
        api = read_api()
        if env.get("QC_RASA_URL") and env["QC_RASA_URL"].rstrip("/") != api.get("rasa_url", "").rstrip("/"):
            api = {}  # the running servers `make run` wrote down are not the ones asked for
        return cls(
            data_dir=Path(env.get("QC_TRAIN_DATA_DIR") or REPO_ROOT / "data"),
            config=Path(env.get("QC_TRAIN_CONFIG") or REPO_ROOT / "config.yml"),
            store_dir=Path(env.get("QC_MODEL_STORE") or VAR_DIR / "models"),
            deploy_dir=Path(env.get("QC_MODEL_DIR") or REPO_ROOT / "models"),
            margin=float(env.get("QC_RETRAIN_MARGIN", "0.01")),
            rasa_url=env.get("QC_RASA_URL") or api.get("rasa_url") or "http://127.0.0.1:5005",
            rasa_model_urls=env.get("QC_RASA_MODEL_URLS") or api.get("rasa_model_urls", ""),
            rasa_token=env.get("QC_RASA_TOKEN") or api.get("token", ""),
            database_url=env.get("QC_DATABASE_URL") or default_url(),
        )

    def model_targets(self) -> list[str]:
        """The Rasa servers an activation loads the model into: each of QC_RASA_MODEL_URLS
        (blanks and repeats dropped), or QC_RASA_URL alone when that is empty."""
        urls = [u.strip().rstrip("/") for u in self.rasa_model_urls.split(",")]
        return list(dict.fromkeys(u for u in urls if u)) or [self.rasa_url.rstrip("/")]

    def to_json(self) -> str:
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> RetrainSettings:
        raw = json.loads(text)
        paths = {"data_dir", "config", "domain", "store_dir", "deploy_dir", "test_split"}
        return cls(**{k: Path(v) if k in paths else v for k, v in raw.items()})


class RetrainError(Exception):
    """Something the admin is told in words (Chinese, shown in the console and the CLI)."""


class TrainingBusy(RetrainError):
    pass


# --- the lock ----------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_stale(conn: Connection, now: datetime) -> dict[str, Any] | None:
    """The lock row, or None once a lock left by a dead process on this host is cleared
    (its run is marked failed)."""
    held = conn.execute(select(training_lock).where(training_lock.c.name == LOCK_NAME)).mappings().first()
    if held is None:
        return None
    if held["host"] == socket.gethostname() and not _pid_alive(held["pid"]):
        conn.execute(delete(training_lock).where(training_lock.c.name == LOCK_NAME))
        conn.execute(update(model_registry).where(model_registry.c.id == held["model_id"])
                     .where(model_registry.c.status.in_(("queued", "validating", "training", "evaluating")))
                     .values(status="failed", error="训练进程意外退出", finished_at=now))
        return None
    return dict(held)


def acquire_lock(conn: Connection, model_id: int, pid: int, now: datetime) -> None:
    """Take the training lock inside the caller's transaction, or raise TrainingBusy.
    A lock left by a dead process on this host is cleared first."""
    held = _clear_stale(conn, now)
    if held is not None:
        raise TrainingBusy(f"已有一次训练在进行（模型 #{held['model_id']}），请等它结束后再试。")
    try:
        with conn.begin_nested():
            conn.execute(insert(training_lock).values(name=LOCK_NAME, model_id=model_id, pid=pid,
                                                      host=socket.gethostname(), acquired_at=now))
    except IntegrityError:
        raise TrainingBusy("已有一次训练在进行，请等它结束后再试。") from None


def release_lock(engine: Engine, model_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(training_lock).where(training_lock.c.name == LOCK_NAME)
                     .where(training_lock.c.model_id == model_id))


def running(engine: Engine) -> dict[str, Any] | None:
    """The run in progress (a crashed one is cleared here too, so the page never waits forever)."""
    with engine.begin() as conn:
        return _clear_stale(conn, now_utc())


# --- registry ------------------------------------------------------------------------------


def list_models(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(model_registry).order_by(desc(model_registry.c.id)).limit(limit)).mappings().all()
        return [dict(r) for r in rows]


def get_model(engine: Engine, model_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(model_registry).where(model_registry.c.id == model_id)).mappings().first()
        return dict(row) if row else None


def active_model(engine: Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(model_registry).where(model_registry.c.status == "active")
                           .order_by(desc(model_registry.c.activated_at))).mappings().first()
        return dict(row) if row else None


def _set(engine: Engine, model_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(model_registry).where(model_registry.c.id == model_id).values(**values))


# --- starting a run --------------------------------------------------------------------------


def start_training(engine: Engine, settings: RetrainSettings, who: str, wait: bool = False,
                   python: str = sys.executable) -> int:
    """Register a run, take the lock and start the job process (in the background unless
    wait). Raises TrainingBusy when a run is going on."""
    now = now_utc()
    with engine.begin() as conn:
        model_id = conn.execute(insert(model_registry).values(
            created_at=now, created_by=who[:64], status="queued", progress=0, metrics={},
        )).inserted_primary_key[0]
        acquire_lock(conn, model_id, os.getpid(), now)  # raises: the registry row rolls back too
    settings.store_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "PYTHONPATH": str(REPO_ROOT),
           "QC_DATABASE_URL": settings.database_url or str(engine.url.render_as_string(hide_password=False))}
    cmd = [python, "-m", "bot.retraining.job", str(model_id), settings.to_json()]
    try:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        _set(engine, model_id, status="failed", error=f"无法启动训练进程：{exc}", finished_at=now_utc())
        release_lock(engine, model_id)
        raise RetrainError(f"无法启动训练进程：{exc}") from None
    with engine.begin() as conn:  # the job owns the lock from now on
        conn.execute(update(training_lock).where(training_lock.c.model_id == model_id).values(pid=proc.pid))
    if wait:
        proc.wait()
    else:  # reap it when it ends: no zombie left behind, nor a Popen dropped while it runs
        threading.Thread(target=proc.wait, name=f"retrain-{model_id}", daemon=True).start()
    return model_id


# --- the job (runs in its own process) ----------------------------------------------------------


def effective_config(settings: RetrainSettings, out: Path) -> Path:
    """The pipeline config with its data paths pointed at settings.data_dir."""
    import yaml

    config = yaml.safe_load(settings.config.read_text(encoding="utf-8"))
    data = settings.data_dir.resolve()
    for step in config.get("pipeline") or []:
        name = str(step.get("name", ""))
        if name.endswith("GazetteerEntityExtractor"):
            step["gazetteer_dir"] = str(data / "gazetteer")
            step["places_csv"] = str(data / "locations" / "places.csv")
        if "dictionary_path" in step:
            step["dictionary_path"] = str(data / "dictionaries")
    out.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


def data_hash(settings: RetrainSettings) -> str:
    h = hashlib.sha256()
    for path in [settings.config, settings.domain, *sorted(p for p in settings.data_dir.rglob("*") if p.is_file())]:
        if path.name.startswith("."):
            continue
        h.update(str(path.relative_to(settings.data_dir) if path.is_relative_to(settings.data_dir) else path.name).encode())
        h.update(b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _run_logged(cmd: Sequence[str], log_path: Path, tick: Callable[[float], None] | None = None) -> int:
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "PYTHONPATH": str(REPO_ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(str(c) for c in cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(list(map(str, cmd)), cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        started = time.monotonic()
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                if tick:
                    tick(time.monotonic() - started)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        return proc.returncode


def validate_data(settings: RetrainSettings, config: Path, log_path: Path) -> None:
    code = _run_logged([VENV_BIN / "rasa", "data", "validate", "--quiet", "--data", settings.data_dir,
                        "--domain", settings.domain, "--config", config], log_path)
    if code != 0:
        raise RetrainError("训练数据校验未通过（rasa data validate），详见日志：\n" + log_tail(log_path, 15))


def train_candidate(data_dir: Path, config: Path, out_dir: Path, name: str = "candidate",
                    domain: Path = REPO_ROOT / "domain.yml", log_path: Path | None = None,
                    tick: Callable[[float], None] | None = None) -> tuple[Path, float]:
    """`rasa train` on data_dir with config (paths rewritten for data_dir); returns the
    archive and the wall time in seconds. The benchmark calls this on the shipped data."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or out_dir / f"{name}.log"
    settings = RetrainSettings(data_dir=Path(data_dir), config=Path(config), domain=Path(domain))
    cfg = effective_config(settings, out_dir / f"{name}.config.yml")
    started = time.monotonic()
    code = _run_logged([VENV_BIN / "rasa", "train", "--quiet", "--config", cfg, "--domain", domain,
                        "--data", data_dir, "--out", out_dir, "--fixed-model-name", name], log_path, tick)
    duration = time.monotonic() - started
    archive = out_dir / f"{name}.tar.gz"
    if code != 0 or not archive.exists():
        raise RetrainError("训练失败（rasa train），详见日志：\n" + log_tail(log_path, 15))
    return archive, duration


_WARNING_LINE = re.compile(r"^\S+:\d+: \w*Warning\b")
# an absolute path (not the path part of a URL: http://host/x is preceded by : or /)
_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"():,/]+/)*[^\s'\"():,/]*")


def clean_log(raw: str) -> str:
    """What the admin reads: Python warnings (the line and its indented source line) left
    out, paths under the repository made relative and other server paths cut to the name."""
    out, message_lines, in_source = [], 0, False
    root = str(REPO_ROOT).rstrip("/") + "/"
    for line in re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", raw).splitlines():
        if _WARNING_LINE.match(line):  # file:line: XWarning: message (may go on), then "  source"
            message_lines, in_source = 4, False
            continue
        indented = line[:1] in (" ", "\t")
        if indented and (message_lines or in_source):
            message_lines, in_source = 0, True
            continue
        if message_lines and not indented:
            message_lines -= 1
            continue
        in_source = False
        line = line.replace(root, "")
        line = _ABS_PATH.sub(lambda m: Path(m.group(0)).name or "", line)
        out.append(line)
    return "\n".join(out)


def log_tail(path: Path | None, lines: int = 40) -> str:
    if not path or not Path(path).exists():
        return ""
    from bot.text import mask_personal_data

    raw = clean_log(Path(path).read_text(encoding="utf-8", errors="replace"))
    return mask_personal_data("\n".join(raw.splitlines()[-lines:]))


def run_job(engine: Engine, model_id: int, settings: RetrainSettings) -> None:
    """Validate, train, evaluate; the registry row says how it went. Always releases the lock."""
    from bot.retraining.evaluate import compare

    work = settings.store_dir / f"model-{model_id}"
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "train.log"
    started = time.monotonic()
    try:
        _set(engine, model_id, status="validating", progress=5, log_path=str(log_path),
             data_hash=data_hash(settings))
        config = effective_config(settings, work / "config.yml")
        validate_data(settings, config, log_path)
        previous = [m["duration_s"] for m in list_models(engine, 20) if m["duration_s"] and m["status"] != "failed"]
        expected = previous[0] if previous else 90.0
        _set(engine, model_id, status="training", progress=10)

        def tick(elapsed: float) -> None:
            if int(elapsed) % 3 == 0:
                _set(engine, model_id, progress=min(85, 10 + int(75 * elapsed / max(expected, 1.0))))

        archive, duration = train_candidate(settings.data_dir, settings.config, work, f"model-{model_id}",
                                            settings.domain, log_path, tick)
        _set(engine, model_id, status="evaluating", progress=88, path=str(archive), duration_s=round(duration, 1))
        baseline = active_path(engine, settings)
        metrics = compare(engine, archive, baseline, settings, work)
        _set(engine, model_id, status="candidate", progress=100, metrics=metrics, finished_at=now_utc())
    except Exception as exc:  # noqa: BLE001 - the admin reads why; the active model is untouched
        message = str(exc) if isinstance(exc, RetrainError) else f"{type(exc).__name__}: {exc}"
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"\n失败：{message}\n")
        _set(engine, model_id, status="failed", error=message[:4000], finished_at=now_utc(),
             duration_s=round(time.monotonic() - started, 1))
    finally:
        release_lock(engine, model_id)


# --- activation and rollback -------------------------------------------------------------------


def active_path(engine: Engine, settings: RetrainSettings) -> Path | None:
    found = active_model(engine)
    if found and found["path"] and Path(found["path"]).exists():
        return Path(found["path"])
    archives = sorted(settings.deploy_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return archives[-1] if archives else None


def regression(metrics: dict[str, Any], margin: float) -> str | None:
    """Why a candidate may not be activated, or None."""
    cand = (metrics.get("candidate") or {}).get("split") or {}
    base = (metrics.get("baseline") or {}).get("split") or {}
    if "accuracy" not in cand:
        return "候选模型没有评测结果"
    if base.get("accuracy") is not None and cand["accuracy"] < base["accuracy"] - margin:
        return (f"候选模型在测试集上的准确率 {cand['accuracy']:.3f} 比当前模型 {base['accuracy']:.3f} "
                f"低了超过允许的 {margin:.3f}，不能启用")
    return None


class RasaLoadError(RetrainError):
    """One Rasa server did not load a model. maybe_loaded: it may still have (it got the
    request but did not answer in time), so a rollback sends it the old model too."""

    def __init__(self, message: str, server: str, maybe_loaded: bool = False) -> None:
        super().__init__(message)
        self.server = server
        self.maybe_loaded = maybe_loaded


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)


def load_into_rasa(settings: RetrainSettings, archive: Path, timeout: float | None = None,
                   server: str | None = None) -> None:
    """PUT /model on one running Rasa server (settings.rasa_url unless server is given): it
    swaps the agent; trackers stay in the store. The path is sent, not the file: the server
    must be able to read it."""
    timeout = LOAD_TIMEOUT if timeout is None else timeout
    base = (server or settings.rasa_url).rstrip("/")
    url = base + "/model"
    if settings.rasa_token:
        url += "?token=" + urllib.request.quote(settings.rasa_token)
    body = json.dumps({"model_file": str(Path(archive).resolve())}).encode()
    req = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if resp.status not in (200, 204):
                raise RasaLoadError(f"Rasa 服务器（{base}）拒绝加载模型（HTTP {resp.status}）", base)
    except urllib.error.HTTPError as exc:
        raise RasaLoadError(f"Rasa 服务器（{base}）拒绝加载模型（HTTP {exc.code}）："
                            f"{exc.read()[:300].decode('utf-8', 'replace')}", base) from None
    except (urllib.error.URLError, OSError) as exc:
        if _is_timeout(exc):
            raise RasaLoadError(f"Rasa 服务器（{base}）在 {timeout:g} 秒内没有加载完模型", base,
                                maybe_loaded=True) from None
        raise RasaLoadError(f"连不上 Rasa 服务器（{base}）：{exc}", base) from None


def _switch_back(settings: RetrainSettings, servers: Sequence[str], previous: Path | None) -> list[str]:
    """Load the previous model into servers again (best effort); the ones that did not take it."""
    if not servers:
        return []
    if previous is None:
        log.error("activation failed; no previous model to switch %s back to", ", ".join(servers))
        return list(servers)
    failed = []
    for server in servers:
        try:
            load_into_rasa(settings, previous, server=server)
            log.warning("activation failed; %s switched back to %s", server, previous)
        except RetrainError as exc:
            log.error("activation failed; %s could not be switched back to %s: %s", server, previous, exc)
            failed.append(server)
    return failed


def _undone(reason: str, switched: Sequence[str], stuck: Sequence[str]) -> RetrainError:
    """What the admin reads when an activation was undone."""
    if stuck:
        return RetrainError(f"{reason}\n模型没有启用，但这些 Rasa 服务器没能换回原来的模型、仍在使用新模型，"
                            f"请检查后重试或重启它们：{'、'.join(stuck)}")
    if switched:
        return RetrainError(f"{reason}\n模型没有启用：已换上新模型的 Rasa 服务器（{'、'.join(switched)}）"
                            f"已换回原来的模型。")
    return RetrainError(f"{reason}\n模型没有启用，Rasa 服务器仍在使用原来的模型。")


def load_everywhere(settings: RetrainSettings, archive: Path, previous: Path | None) -> list[str]:
    """Load archive into every Rasa server (settings.model_targets()), one after the other,
    each with its own timeout. If one fails, the ones already switched get previous back
    and the RetrainError names the server: all of them or none."""
    switched: list[str] = []
    for server in settings.model_targets():
        try:
            load_into_rasa(settings, archive, server=server)
        except RasaLoadError as exc:
            log.error("activation of %s failed on %s: %s", archive, server, exc)
            undo = switched + ([server] if exc.maybe_loaded else [])
            raise _undone(str(exc), undo, _switch_back(settings, undo, previous)) from None
        switched.append(server)
    return switched


def deploy(settings: RetrainSettings, archive: Path) -> None:
    """The activated archive becomes the newest in models/: a restart loads it too."""
    import shutil

    settings.deploy_dir.mkdir(parents=True, exist_ok=True)
    target = settings.deploy_dir / archive.name
    if archive.resolve() != target.resolve():
        tmp = settings.deploy_dir / f".{archive.name}.tmp"
        shutil.copyfile(archive, tmp)
        os.replace(tmp, target)
    os.utime(target)


def activatable(engine: Engine, settings: RetrainSettings, model_id: int) -> dict[str, Any]:
    """The model, when it may be activated; else RetrainError says why."""
    model = get_model(engine, model_id)
    if model is None:
        raise RetrainError(f"没有模型 #{model_id}")
    if model["status"] not in ("candidate", "retired"):
        raise RetrainError(f"模型 #{model_id} 当前为「{model['status']}」，不能启用")
    if not model["path"] or not Path(model["path"]).exists():
        raise RetrainError(f"模型 #{model_id} 的文件已不存在")
    if model["status"] == "candidate":
        why = regression(model["metrics"] or {}, settings.margin)
        if why:
            raise RetrainError(why)
    return model


def activate(engine: Engine, settings: RetrainSettings, model_id: int, who: str) -> dict[str, Any]:
    """Load a candidate (or a retired model) into every running Rasa server, then record it.
    Any server failing leaves the previous model active everywhere (and in the registry)."""
    model = activatable(engine, settings, model_id)
    previous = active_path(engine, settings)
    serving = previous if active_model(engine) is None else None
    # fails → switched servers get the previous model back, nothing recorded
    switched = load_everywhere(settings, Path(model["path"]), previous)
    try:
        deploy(settings, Path(model["path"]))
        now = now_utc()
        if serving is not None and serving.resolve() != Path(model["path"]).resolve():
            # the model `make train` made was serving: keep it one click away
            register_existing(engine, serving, MAKE, status="retired", at=now - timedelta(seconds=1))
        with engine.begin() as conn:
            conn.execute(update(model_registry).where(model_registry.c.status == "active").values(status="retired"))
            conn.execute(update(model_registry).where(model_registry.c.id == model_id)
                         .values(status="active", activated_at=now, activated_by=who[:64]))
    except Exception as exc:
        log.exception("activation of model #%s could not be recorded", model_id)
        if previous is not None and previous.exists() and previous.parent.resolve() == settings.deploy_dir.resolve():
            os.utime(previous)  # a restart loads the previous model again
        raise _undone(f"启用没能记录下来：{type(exc).__name__}: {exc}", switched,
                      _switch_back(settings, switched, previous)) from None
    return get_model(engine, model_id) or {}


def previous_model(engine: Engine) -> dict[str, Any] | None:
    """The model that was active before the current one."""
    with engine.connect() as conn:
        row = conn.execute(select(model_registry).where(model_registry.c.status == "retired")
                           .where(model_registry.c.activated_at.is_not(None))
                           .order_by(desc(model_registry.c.activated_at))).mappings().first()
        return dict(row) if row else None


def rollback(engine: Engine, settings: RetrainSettings, who: str) -> dict[str, Any]:
    prev = previous_model(engine)
    if prev is None:
        raise RetrainError("没有可以回退到的上一个模型")
    return activate(engine, settings, prev["id"], who)


def register_existing(engine: Engine, archive: Path, who: str, status: str = "active",
                      at: datetime | None = None) -> int:
    """Record a model trained outside the console (the one `make train` made) so that a
    rollback can return to it."""
    now = at or now_utc()
    with engine.begin() as conn:
        return conn.execute(insert(model_registry).values(
            created_at=now, created_by=who[:64], status=status, progress=100, path=str(archive), metrics={},
            finished_at=now, activated_at=now, activated_by=who[:64],
        )).inserted_primary_key[0]

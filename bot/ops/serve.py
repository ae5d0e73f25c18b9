"""`python -m bot serve`: start the action server, the Rasa server and our web server
(work console, Open311, widget), wait until they answer, print where to talk to the
assistant and the console's demo accounts, and stop them all on Ctrl-C."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bot.ops.production import ACTIONS_TOKEN_ENV
from bot.paths import REPO_ROOT, VAR_DIR

VENV_BIN = Path(sys.executable).parent


def wait_http(url: str, timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return True
        except Exception:
            time.sleep(0.5)
    return False


def actions_command(port: int) -> list[str]:
    """Our action server (bot/ops/actions_server.py): rasa_sdk on QC_ACTIONS_HOST (default
    loopback), checking QC_ACTIONS_TOKEN."""
    return [sys.executable, "-m", "bot.ops.actions_server", "--port", str(port), "--actions", "actions"]


def start_stack(rasa_port: int, actions_port: int, model: str | None = None, log_dir: Path = VAR_DIR,
                api_token: str | None = None, env: dict | None = None,
                sqlite_trackers: bool = True) -> list[subprocess.Popen]:
    """Start both servers (used by `serve` and by the end-to-end tests). Embedded profile:
    trackers in `log_dir`/trackers-<port>.db, or in Rasa's default in-memory store when
    `sqlite_trackers` is false (the benchmark's stock peer)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    from bot.ops.production import endpoints_yaml, rasa_env

    env = {**os.environ, **(env or {}), "RASA_TELEMETRY_ENABLED": "false", "PYTHONPATH": str(REPO_ROOT)}
    env.update(rasa_env(env))  # QC_PROFILE=production: passwords the endpoints file refers to
    # The action server takes calls only with this secret (in the environment, never in argv);
    # Rasa sends it (the endpoints file names the variable).
    env[ACTIONS_TOKEN_ENV] = env.get(ACTIONS_TOKEN_ENV) or secrets.token_urlsafe(32)
    endpoints = log_dir / f"endpoints-{rasa_port}.yml"
    endpoints.write_text(endpoints_yaml(f"http://127.0.0.1:{actions_port}/webhook", env,
                                        embedded_tracker_db=str(log_dir / f"trackers-{rasa_port}.db") if sqlite_trackers else None),
                         encoding="utf-8")
    actions_cmd = actions_command(actions_port)
    # through bot.ops.rasa_run: the API token from the environment, not the command line (`ps` shows that)
    rasa_cmd = [str(VENV_BIN / "python"), "-m", "bot.ops.rasa_run", "run", "-i", "127.0.0.1", "--port", str(rasa_port),
                "--credentials", "credentials.yml", "--endpoints", str(endpoints), "--model", model or "models",
                "--cors", "*"]
    if api_token:
        rasa_cmd += ["--enable-api"]
        env["QC_RASA_TOKEN"] = api_token
    procs = [spawn(cmd, env, log_dir / f"{name}-{rasa_port}.log")
             for name, cmd in (("actions", actions_cmd), ("rasa", rasa_cmd))]
    ok = wait_http(f"http://127.0.0.1:{actions_port}/health", 90, procs[0]) and wait_http(
        f"http://127.0.0.1:{rasa_port}/", 180, procs[1])
    if not ok:
        stop_stack(procs)
        raise RuntimeError(f"servers did not start; see {log_dir}/actions-{rasa_port}.log and rasa-{rasa_port}.log")
    return procs


def spawn(cmd: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    """One child in its own session (its log appended), the way the supervisor restarts it too."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    proc.qc_args = (cmd, env, log_path)  # type: ignore[attr-defined]  # what bot.ops.supervisor restarts
    return proc


def stop_stack(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def start_web(rasa_port: int, web_port: int, api_token: str | None, log_dir: Path = VAR_DIR,
              env: dict | None = None) -> subprocess.Popen:
    """The third process: our aiohttp server (work console, Open311, chat widget)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO_ROOT), "QC_WEB_PORT": str(web_port),
           "QC_RASA_URL": f"http://127.0.0.1:{rasa_port}", "QC_RASA_TOKEN": api_token or ""}
    proc = spawn([sys.executable, "-m", "bot.web.app"], env, log_dir / f"web-{web_port}.log")
    if not wait_http(f"http://127.0.0.1:{web_port}/health", 60, proc):
        stop_stack([proc])
        raise RuntimeError(f"web server did not start; see {log_dir}/web-{web_port}.log")
    return proc


def serve(rasa_port: int, actions_port: int) -> int:
    from bot.services.setup import prepare_store
    from bot.storage.engine import default_url, make_engine

    prepare_store(make_engine())  # schema, queues and routing rules before the first resident writes
    print("starting the action server and the Rasa server (first start takes ~30 s)…", flush=True)
    # The console pushes ticket news to residents through Rasa's HTTP API (local only, token).
    from datetime import datetime, timezone

    from bot.console.services import print_demo_accounts, seed_demo_accounts
    from bot.console.uow import ConsoleUnitOfWork

    token = os.environ.get("QC_RASA_TOKEN") or secrets.token_urlsafe(24)
    web_port = int(os.environ.get("QC_WEB_PORT", "8080"))
    print_demo_accounts(seed_demo_accounts(ConsoleUnitOfWork(make_engine()), datetime.now(timezone.utc)))
    from bot.retraining.serving import prepare

    model = prepare([f"http://127.0.0.1:{rasa_port}"], token)  # the registry's active model
    procs = start_stack(rasa_port, actions_port, model=model, api_token=token)
    try:
        procs.append(start_web(rasa_port, web_port, token))
    except RuntimeError:
        stop_stack(procs)
        raise
    url = f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook"
    print(f"""
青城诉求 is running.
  Talk to it (REST):  curl -s {url} -H 'Content-Type: application/json' \\
                        -d '{{"sender": "resident-1", "message": "楼下有人遛狗不牵绳"}}'
  Terminal chat:      make shell   (in another terminal: .venv/bin/rasa shell --endpoints endpoints.yml)
  Ticket store:       {default_url()}
  Work console:       http://127.0.0.1:{web_port}/console/  (demo accounts above; docs/console.md)
  Open311 API:        http://127.0.0.1:{web_port}/open311/v2/services.json
  Logs:               var/actions-{rasa_port}.log, var/rasa-{rasa_port}.log, var/web-{web_port}.log
Press Ctrl-C to stop.""", flush=True)
    from bot.ops.supervisor import Supervisor

    children = dict(zip(("actions", "rasa", "web"), procs))
    # A dead child is restarted with the same command, environment and log (bot/ops/supervisor.py).
    return Supervisor(children, lambda name: spawn(*children[name].qc_args),
                      lambda: stop_stack(list(children.values()))).run()

"""Issue 13 item 14, checked from outside on the servers `make run` starts (bot.ops.serve's
start_stack + start_web), as another local user would look: `ps` (/proc/<pid>/cmdline) and
file modes (`ls -l`). The Rasa API token is on no command line, yet the API still takes it;
the ticket store, the tracker store and uploaded photos are 0600 in 0700 folders, under a
umask of 022."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from bot.nlu.explain import latest_model
from bot.ops.serve import start_stack, start_web, stop_stack
from bot.paths import REPO_ROOT
from tests.console.test_console_web import png_bytes

TOKEN = "e2e-secret-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cmdlines_of_groups(pids: list[int]) -> list[str]:
    """Every process in the stack's process groups (start_new_session: group id = pid)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) in pids:
                out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"))
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
    return out


def prepare_store(db_url: str) -> None:
    """`python -m bot prepare-store`, as an operator runs it before the first start."""
    cli = subprocess.run([sys.executable, "-m", "bot", "prepare-store"], cwd=REPO_ROOT, capture_output=True,
                         text=True, env={**os.environ, "QC_DATABASE_URL": db_url, "PYTHONPATH": str(REPO_ROOT),
                                         "RASA_TELEMETRY_ENABLED": "false"}, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("private")
    old_umask = os.umask(0o022)  # what a default login shell has: files 0644, folders 0755 unless we say
    data, run, uploads = tmp / "data", tmp / "run", tmp / "uploads"
    uploads.mkdir(mode=0o755)  # made earlier, by hand or by an older version
    data.mkdir()
    db_url = f"sqlite:///{data / 'tickets.db'}"
    env = {"QC_DATABASE_URL": db_url, "QC_UPLOAD_DIR": str(uploads)}
    prepare_store(db_url)
    rasa_port, actions_port, web_port = free_port(), free_port(), free_port()
    procs = start_stack(rasa_port, actions_port, model=str(latest_model()), log_dir=run, api_token=TOKEN, env=env)
    try:
        procs.append(start_web(rasa_port, web_port, TOKEN, log_dir=run, env=env))
        yield {"rasa": f"http://127.0.0.1:{rasa_port}", "web": f"http://127.0.0.1:{web_port}", "procs": procs,
               "data": data, "run": run, "uploads": uploads, "rasa_port": rasa_port}
    finally:
        stop_stack(procs)
        os.umask(old_umask)


def test_the_rasa_token_is_on_no_command_line(served) -> None:
    lines = cmdlines_of_groups([p.pid for p in served["procs"]])
    assert any("--enable-api" in line for line in lines), lines  # the API is on …
    assert not [line for line in lines if TOKEN in line]  # … and `ps` does not show its token
    # the token still guards Rasa's HTTP API
    assert requests.get(f"{served['rasa']}/status", timeout=10).status_code == 401
    assert requests.get(f"{served['rasa']}/status", params={"token": TOKEN}, timeout=10).status_code == 200


def test_the_ticket_store_is_private(served) -> None:
    assert mode(served["data"] / "tickets.db") == 0o600
    for extra in ("tickets.db-wal", "tickets.db-shm"):
        if (served["data"] / extra).exists():
            assert mode(served["data"] / extra) == 0o600


def test_a_new_store_folder_is_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        prepare_store(f"sqlite:///{tmp_path / 'srv' / 'qingcheng' / 'tickets.db'}")
    finally:
        os.umask(old_umask)
    assert mode(tmp_path / "srv") == mode(tmp_path / "srv" / "qingcheng") == 0o700
    assert mode(tmp_path / "srv" / "qingcheng" / "tickets.db") == 0o600


def test_the_tracker_store_is_private(served) -> None:
    r = requests.post(f"{served['rasa']}/webhooks/rest/webhook",
                      json={"sender": "files-1", "message": "我的电话13912345678"}, timeout=60)
    assert r.status_code == 200
    trackers = served["run"] / f"trackers-{served['rasa_port']}.db"
    stored = trackers.read_bytes() + (Path(f"{trackers}-wal").read_bytes() if Path(f"{trackers}-wal").exists() else b"")
    # what residents said is in it (phone numbers masked at rest: issue 19), so the file is private
    assert b"139****5678" in stored and b"13912345678" not in stored
    for path in (trackers, Path(f"{trackers}-wal"), Path(f"{trackers}-shm")):
        if path.exists():
            assert mode(path) == 0o600, path


def test_uploaded_photos_are_private(served) -> None:
    r = requests.post(f"{served['web']}/widget/upload", files={"file": ("p.png", png_bytes(), "image/png")},
                      headers={"X-QC-Widget": "1", "X-QC-Rest-Sender": "files-test"}, timeout=30)
    assert r.status_code == 201, r.text
    name = r.json()["id"]
    assert mode(served["uploads"]) == 0o700
    assert mode(served["uploads"] / name) == 0o600

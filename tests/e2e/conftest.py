"""End-to-end: the real Rasa server + action server over HTTP, on a fresh SQLite store."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bot.nlu.explain import latest_model
from bot.ops.serve import start_stack, stop_stack
from bot.services.setup import prepare_store
from bot.storage.engine import make_engine
from tests.e2e.chat import TOKEN, Stack


def wait_http(url: str, proc, timeout: float = 60) -> None:
    """bot.ops.serve's start-up wait, raising: the test's own server must answer or the test stops."""
    from bot.ops.serve import wait_http

    if not wait_http(url, timeout, proc):
        raise RuntimeError(f"{url} did not answer" if proc.poll() is None else f"server exited with {proc.returncode}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    tmp = tmp_path_factory.mktemp("e2e")
    db_url = f"sqlite:///{tmp / 'tickets.db'}"
    prepare_store(make_engine(db_url))
    rasa_port, actions_port = _free_port(), _free_port()
    procs = start_stack(rasa_port, actions_port, model=str(latest_model()), log_dir=tmp, api_token=TOKEN,
                        # every resident here is 127.0.0.1: the per-client backstop is tested in tests/security
                        env={"QC_DATABASE_URL": db_url, "QC_CLIENT_RATE_LIMIT": "100000",
                             "QC_HANDOFF_HOURS": "00:00-23:59",  # agents answer whatever the wall clock says
                             "QC_UPLOAD_DIR": str(tmp / "uploads")})
    try:
        yield Stack(f"http://127.0.0.1:{rasa_port}", db_url, str(tmp / "uploads"))
    finally:
        stop_stack(procs)


# Headless Chromium for the browser tests: Debian's package, driven by Playwright (no
# browser download). One launch per test module.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()

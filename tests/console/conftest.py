"""Console fixtures: a database per test (SQLite file and PostgreSQL schema) and the
whole web app (bot.web.app.init_app) on it, with the notifier off (tests drive it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import Engine

from bot.console.config import ConsoleConfig
from bot.console.http import CONSOLE_CONFIG, CONSOLE_ENGINE
from bot.web.app import init_app
from bot.web.keys import Settings


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its production cost takes ~0.5 s here: tests use the smallest one."""
    from argon2 import PasswordHasher

    from bot.console import auth

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def upload_dir(tmp_path: Path) -> Path:
    return tmp_path / "uploads"


@pytest.fixture
def console_config(upload_dir: Path) -> ConsoleConfig:
    return ConsoleConfig(notifier=False, upload_dir=upload_dir)


@pytest.fixture
def app_overrides() -> dict:
    """More app keys for the web app, set before it starts (aiohttp deprecates changing a started
    app); a test module overrides this fixture."""
    return {}


@pytest_asyncio.fixture
async def client(engine: Engine, console_config: ConsoleConfig, app_overrides: dict) -> AsyncIterator[TestClient]:
    app = init_app(Settings(database_url=str(engine.url), rasa_url="http://127.0.0.1:9"))
    app[CONSOLE_ENGINE] = engine
    app[CONSOLE_CONFIG] = console_config
    for key, value in app_overrides.items():
        app[key] = value
    async with TestClient(TestServer(app)) as c:
        yield c

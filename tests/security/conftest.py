"""Security test fixtures: the whole web app (bot.web.app.init_app) in-process on a fresh
SQLite database, the widget served from a temporary dist folder, the notifier off."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.console.config import ConsoleConfig
from bot.console.http import CONSOLE_CONFIG, CONSOLE_ENGINE
from bot.storage.engine import init_db, make_engine
from bot.web.app import init_app
from bot.web.keys import Settings
from bot.web.widget import STATIC, WIDGET, WidgetConfig


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its production cost takes ~0.5 s here: tests use the smallest one."""
    from argon2 import PasswordHasher

    from bot.console import auth

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture(autouse=True)
def handoff_store(tmp_path: Path) -> Iterator[None]:
    """The chat channels look every resident message up in the hand-off table (bot/channels/
    handoff_gate.py, through bot.ops.runtime): in-process channel tests use a store of their own,
    never the worktree's var/qingcheng.db."""
    from bot.ops import runtime

    eng = make_engine(f"sqlite:///{tmp_path / 'handoff.db'}")
    init_db(eng)
    runtime.reset_engine(eng)
    try:
        yield
    finally:
        runtime.reset_engine(None)
        eng.dispose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'security.db'}")
    init_db(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def widget_config(tmp_path: Path) -> WidgetConfig:
    dist = tmp_path / "dist"
    (dist / "vendor").mkdir(parents=True)
    (dist / "index.html").write_text("<html><body data-socket='{{SOCKET_URL}}'></body></html>", encoding="utf-8")
    for name in STATIC:
        (dist / name).write_text(f"/* {name} */", encoding="utf-8")
    return WidgetConfig(dist_dir=dist, upload_dir=tmp_path / "widget-uploads")


def make_app(engine: Engine, tmp_path: Path, widget_config: WidgetConfig):  # noqa: ANN201
    app = init_app(Settings(database_url=str(engine.url), rasa_url="http://127.0.0.1:9"))
    app[CONSOLE_ENGINE] = engine
    app[CONSOLE_CONFIG] = ConsoleConfig(notifier=False, upload_dir=tmp_path / "uploads")
    app[WIDGET] = widget_config
    return app


@pytest_asyncio.fixture
async def client(engine: Engine, tmp_path: Path, widget_config: WidgetConfig) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_app(engine, tmp_path, widget_config))) as c:
        yield c


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in every table of the store (the exact before/after check of "no stored garbage")."""
    import bot.storage.all_tables  # noqa: F401
    from bot.storage.tables import metadata

    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
            if engine.dialect.has_table(conn, t.name)
        }


@pytest.fixture
def redis_url() -> str:
    """Redis for the shared rate limits; fails loudly when unreachable (QC_SKIP_SERVICES=1 skips)."""
    import os

    import redis

    from tests.conftest import SKIP_SERVICES_REASON, _skip_services

    if _skip_services():
        pytest.skip(SKIP_SERVICES_REASON)
    url = os.environ.get("QC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Redis unreachable at {url} ({type(exc).__name__}: {exc}). Start it, point "
                    "QC_TEST_REDIS_URL elsewhere, or set QC_SKIP_SERVICES=1 to skip these tests.", pytrace=False)
    return url


@pytest.fixture
def any_engine(db_url: str) -> Iterator[Engine]:
    """The store on SQLite and on PostgreSQL (NUL and encodings differ between them); this
    folder's `engine` is SQLite only."""
    from tests.stores import fresh_store

    eng = fresh_store(db_url)
    yield eng
    eng.dispose()


# --- hostile values the fuzzers mix into what hypothesis generates ---------------------------

NASTY_TEXT = [
    "", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\ufeff", "\u202e反转", "\u200b", "\r\n\r\n",
    "\x1b[31m", "<script>alert(1)</script>", "'; DROP TABLE tickets; --", "%00", "../../etc/passwd",
    "ＡＢＣ１２３　全角", "１３８１２３４５６７８", "𠮷𠮷", "🙂" * 50, "x" * 5000, "9" * 5000,
    "1e309", "-1", "NaN", "inf", "0x10", "99999999999999999999999", "١٢", "\\u0000", "{{7*7}}", "${jndi:x}",
]


def hostile_text():  # noqa: ANN201 - a hypothesis strategy
    from hypothesis import strategies as hs

    any_char = hs.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
    return hs.one_of(
        hs.sampled_from(NASTY_TEXT),
        hs.text(alphabet=any_char, max_size=40),
        hs.integers(min_value=-(10**30), max_value=10**30).map(str),
        hs.lists(hs.sampled_from(NASTY_TEXT), min_size=2, max_size=4).map("".join),
    )


def form_body(fields: dict[str, str]) -> bytes:
    """application/x-www-form-urlencoded, lone surrogates included (as a broken client sends them)."""
    from urllib.parse import quote

    return "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'))}"
        for k, v in fields.items()
    ).encode("ascii")


FORM = {"Content-Type": "application/x-www-form-urlencoded"}

"""Shared pytest fixtures; each owner keeps to their own delimited section."""

from __future__ import annotations

# --- storage fixtures ---
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

PG_BASE_URL = os.environ.get("QC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SKIP_SERVICES_REASON = "QC_SKIP_SERVICES=1: PostgreSQL tests left out"


def _skip_services() -> bool:
    return os.environ.get("QC_SKIP_SERVICES") == "1"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL schema for this test session (dropped at the end).

    Fails loudly when PostgreSQL is unreachable: a missing database must not look like
    a green run. Set QC_SKIP_SERVICES=1 to skip these tests deliberately.
    """
    if _skip_services():
        pytest.skip(SKIP_SERVICES_REASON)
    admin = create_engine(PG_BASE_URL, future=True, connect_args={"connect_timeout": 5})
    schema = f"qc_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')  # generated name, not user input
    except Exception as exc:  # noqa: BLE001 - any connection problem means the same thing here
        admin.dispose()
        pytest.fail(
            f"PostgreSQL unreachable at {PG_BASE_URL} ({type(exc).__name__}: {exc}). "
            "Start it, point QC_TEST_PG_URL elsewhere, or set QC_SKIP_SERVICES=1 to skip these tests.",
            pytrace=False,
        )
    sep = "&" if "?" in PG_BASE_URL else "?"
    try:
        yield f"{PG_BASE_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store test runs on both engines: the embedded SQLite file and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'qc.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A ticket store at the newest schema with no rows, once per engine (db_url). A module
    that needs more (the runtime's engine, the holiday calendar) wraps it in its own
    `engine` fixture that takes this one."""
    from tests.stores import fresh_store

    eng = fresh_store(db_url)
    yield eng
    eng.dispose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Skipped service tests must be impossible to miss in the summary.
    left_out = [
        rep
        for rep in terminalreporter.stats.get("skipped", [])
        if isinstance(rep.longrepr, tuple) and "QC_SKIP_SERVICES=1" in str(rep.longrepr[2])
    ]
    if left_out:
        terminalreporter.write_sep(
            "!", f"{len(left_out)} tests LEFT OUT because QC_SKIP_SERVICES=1 (not a full run)", red=True, bold=True
        )


# --- end storage fixtures ---


# --- retention ---
# The web app starts the retention job (bot/services/retention.py): off in tests unless a
# test turns it on (app[RETENTION_SETTINGS]); it must never touch a checkout's var/ files.
os.environ.setdefault("QC_RETENTION", "0")
# --- end retention ---


def pytest_collection_finish(session: pytest.Session) -> None:
    """Test event loops are asyncio's own. Importing Sanic (through Rasa) while collecting
    installs uvloop's policy process-wide, and closing a uvloop loop at the end of a module
    could wait for ever on a handle a test left behind. Rasa's servers keep uvloop in their
    own processes."""
    import asyncio

    asyncio.set_event_loop_policy(None)

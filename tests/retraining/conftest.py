"""Retraining fixtures: a database per test (SQLite and PostgreSQL) and a copy of the
repository's data/ in a temp dir (tests never write the checked-in training data)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.paths import REPO_ROOT


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(REPO_ROOT / "data", target)
    return target

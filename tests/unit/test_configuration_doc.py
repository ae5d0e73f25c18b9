"""docs/configuration.md has one table of every QC_* environment variable: each name the code,
the tests, the Makefile or the deployment files mention is a row, and each row is a name one of
them reads (a new variable cannot go undocumented, a removed one cannot linger)."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "configuration.md"
# A whole name: QC_WECHAT_* in prose is a family, not a variable.
NAME = re.compile(r"\bQC_[A-Z0-9]+(?:_[A-Z0-9]+)*\b(?!_)")
ROW = re.compile(r"^\| `(QC_[A-Z0-9_]+)` \|", re.MULTILINE)
SOURCE_DIRS = ("bot", "actions", "bench", "tests", "scripts", "deploy", ".ci")
SOURCE_FILES = ("Makefile", "credentials.yml", "endpoints.yml", "config.yml")
SUFFIXES = {".py", ".yml", ".yaml", ".sh", ".service", ".example", ".conf", ".j2", ".toml", ".cfg", ""}


def source_files() -> list[Path]:
    found = [REPO_ROOT / name for name in SOURCE_FILES]
    for folder in SOURCE_DIRS:
        for path in (REPO_ROOT / folder).rglob("*"):
            if (path.is_file() and path.suffix in SUFFIXES and path != Path(__file__).resolve()
                    and "node_modules" not in path.parts and "__pycache__" not in path.parts):
                found.append(path)
    return found


def names_in_code() -> dict[str, set[str]]:
    where: dict[str, set[str]] = {}
    for path in source_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for name in NAME.findall(text):
            where.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))
    return where


def documented() -> list[str]:
    return ROW.findall(DOC.read_text(encoding="utf-8"))


def test_the_table_has_each_variable_once() -> None:
    rows = documented()
    assert len(rows) > 50
    assert sorted(n for n in set(rows) if rows.count(n) > 1) == []


def test_every_variable_the_code_reads_is_in_the_table() -> None:
    missing = {n: sorted(files) for n, files in names_in_code().items() if n not in documented()}
    assert missing == {}


def test_every_variable_in_the_table_is_read_somewhere() -> None:
    read = names_in_code()
    assert sorted(n for n in documented() if n not in read) == []


def test_the_collector_sees_names_in_python_yaml_and_the_makefile() -> None:
    read = names_in_code()
    assert "bot/web/keys.py" in read["QC_WEB_PORT"]
    assert "credentials.yml" in read["QC_WECHAT_TOKEN"]
    assert "Makefile" in read["QC_TRACKER_DB_URL"]
    assert "QC_WECHAT" not in read  # the family QC_WECHAT_* in a docstring

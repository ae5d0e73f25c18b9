"""`python -m bot calendar` run as a process (an outside tester's findings on issue 14), on
SQLite and PostgreSQL: duplicate and unknown keys refused with the line named, an empty year,
too many ranges, a long source, a 班 on a weekday and a huge file refused with nothing saved;
the counts and the printed changes only for days that really change; `show` prints the
sources; `-h` prints help; the ticket log names the CLI's user.

The schedules below are invented for the test (测试用通知（虚构）): nobody may guess a real one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.storage.engine import init_db, make_engine
from bot.storage.tables import holiday_days, holiday_years, metadata, ticket_events, tickets

ROOT = Path(__file__).resolve().parents[2]
NOTICE = "测试用通知（虚构）"
SPRING = f"""year: 2030
source: {NOTICE}
ranges:
  - {{date: 2030-02-02, kind: 班}}
  - {{from: 2030-02-04, to: 2030-02-10, kind: 休}}
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path / 'qc.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    eng = make_engine(url)
    metadata.drop_all(eng)
    init_db(eng)
    yield url, eng
    eng.dispose()


def cli(url: str, *args: str, user: str = "tester") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RASA_TELEMETRY_ENABLED": "false", "QC_DATABASE_URL": url,
           "USER": user, "LOGNAME": user}
    return subprocess.run([sys.executable, "-m", "bot", "calendar", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "y.yml"
    path.write_text(body, encoding="utf-8")
    return str(path)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for t in (holiday_days, holiday_years, tickets, ticket_events)}


def many(n: int) -> str:
    day, lines = date(2030, 1, 1), []
    while len(lines) < n:
        if day.weekday() < 5:
            lines.append(f"  - {{date: {day}, kind: 休}}")
        day += timedelta(days=1)
    return f"year: 2030\nsource: {NOTICE}\nranges:\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(("body", "message"), [
    (f"year: 2030\nyear: 2031\nsource: {NOTICE}\nranges:\n  - {{date: 2030-02-04, kind: 休}}\n",
     "第2行：重复的键 year"),
    (f"year: 2030\nsource: {NOTICE}\nranges:\n  - {{date: 2030-02-04, date: 2030-02-05, kind: 休}}\n",
     "第4行：重复的键 date"),
    (f"year: 2030\nsource: {NOTICE}\nranges:\n  - {{date: 2030-02-04, to: 2030-02-08, kind: 休}}\n",
     "第4行：date 不能与 from、to 同时出现"),
    (f"year: 2030\nsource: {NOTICE}\nranges:\n  - {{date: 2030-02-04, kind: 休, note: x}}\n",
     "第4行：未知的键 note"),
    (f"year: 2030\nsource: {NOTICE}\nnote: x\nranges:\n  - {{date: 2030-02-04, kind: 休}}\n",
     "第3行：未知的键 note"),
    (f"year: 2030\nsource: {NOTICE}\nranges: []\n", "没有任何日期范围"),
    (many(61), "共61个日期范围，最多60个"),
    (many(130), "共130个日期范围，最多60个"),
    ("year: 2030\nsource: " + "通" * 201 + "\nranges:\n  - {date: 2030-02-04, kind: 休}\n", "第4行：来源最长200字"),
    (f"year: 2030\nsource: {NOTICE}\nranges:\n  - {{date: 2030-02-05, kind: 班}}\n",
     "第4行：2030-02-05 是星期二，本来就是工作日"),
], ids=["dup-year", "dup-date", "date-and-to", "unknown-range-key", "unknown-top-key", "empty", "61", "130",
        "long-source", "makeup-on-weekday"])
def test_bad_files_are_refused_with_nothing_saved(db: tuple[str, Engine], tmp_path: Path, body: str,
                                                  message: str) -> None:
    url, engine = db
    assert cli(url, "import", write(tmp_path, SPRING)).returncode == 0
    before = snapshot(engine)
    run = cli(url, "import", write(tmp_path, body))
    assert run.returncode == 1, run.stdout
    assert message in run.stderr and "nothing was saved" in run.stderr, run.stderr
    assert snapshot(engine) == before


def test_a_huge_file_is_refused_before_parsing(db: tuple[str, Engine], tmp_path: Path) -> None:
    url, engine = db
    body = SPRING + "# " + "x" * (300 * 1024) + "\n"
    run = cli(url, "import", write(tmp_path, body))
    assert run.returncode == 1
    assert "larger than 256 KB" in run.stderr and "nothing was saved" in run.stderr
    assert snapshot(engine)["holiday_days"] == []


def test_counts_and_changes_are_only_real_changes_and_show_prints_sources(db: tuple[str, Engine],
                                                                          tmp_path: Path) -> None:
    url, _ = db
    run = cli(url, "import", write(tmp_path, SPRING))
    assert run.returncode == 0, run.stderr
    assert "2030: 8 days saved, 6 changed, 0 open deadlines moved" in run.stdout
    assert "2030-02-09" not in run.stdout  # a Sunday inside the holiday: a day off before and after
    # The same days from another notice: nothing changes for anyone.
    run = cli(url, "import", write(tmp_path, SPRING.replace(NOTICE, "另一份测试通知（虚构）")))
    assert run.returncode == 0, run.stderr
    assert "2030: 8 days saved, 0 changed, 0 open deadlines moved" in run.stdout
    assert "→" not in run.stdout
    shown = cli(url, "show", "2030")
    assert shown.returncode == 0
    assert "\n2030-02-02 班 另一份测试通知（虚构）\n2030-02-04 – 2030-02-10 休 另一份测试通知（虚构）\n" in shown.stdout


def test_help(db: tuple[str, Engine]) -> None:
    url, _ = db
    for args in (("-h",), ("--help",), ("import", "-h")):
        run = cli(url, *args)
        assert run.returncode == 0, (args, run.stderr)
        assert "usage: python -m bot calendar" in run.stdout


def test_by_defaults_to_the_os_user(db: tuple[str, Engine], tmp_path: Path) -> None:
    url, engine = db
    assert cli(url, "import", write(tmp_path, SPRING), user="operator").returncode == 0
    with engine.connect() as conn:
        assert conn.execute(select(holiday_years.c.entered_by)).scalar_one() == "cli:operator"
    assert cli(url, "import", write(tmp_path, SPRING.replace("2030-02-02", "2030-02-03")), "--by", " ",
               user="operator2").returncode == 0
    with engine.connect() as conn:  # an empty --by is the OS user too, never an anonymous "cli:"
        assert conn.execute(select(holiday_years.c.entered_by)).scalar_one() == "cli:operator2"

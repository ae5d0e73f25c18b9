"""The holiday calendar the city keeps (issue 14), on SQLite and PostgreSQL: fall-through
city → library → Monday–Friday, deadlines over holidays and make-up days, a change moving
exactly the open deadlines it should (with their events, 督办 following, idempotent), bad
files refused whole with the line named, export of library years = the library.

The schedules below are invented for the test (year 2030, "测试用通知"): nobody here may
guess a real one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.cli.holidays import main as calendar_cli
from bot.console import services as svc
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.clock import SHANGHAI
from bot.domain.model import ComplaintDraft, DispatchClass, Route, TicketState
from bot.domain.workcal import ChineseWorkCalendar, CityWorkCalendar, default_calendar, use_calendar
from bot.services.tickets import file_complaint
from bot.storage import holidays as hol
from bot.storage.engine import make_engine
from bot.storage.tables import holiday_days, holiday_years, ticket_events, tickets
from bot.storage.uow import SqlAlchemyUnitOfWork

NOTICE = "测试用通知（虚构）"


def hohhot(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=SHANGHAI)


@pytest.fixture
def engine(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """tests/conftest.py's store (both engines), read by this process's calendar and the CLI."""
    monkeypatch.setenv("QC_DATABASE_URL", db_url)  # for the CLI
    hol.install(engine)  # this process's calendar reads this store
    yield engine
    hol.uninstall()


def year_file(tmp_path: Path, body: str, name: str = "y.yml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


SPRING_2030 = f"""# invented
year: 2030
source: {NOTICE}
ranges:
  - {{date: 2030-02-02, kind: 班}}
  - {{from: 2030-02-04, to: 2030-02-10, kind: 休}}
"""


def save(engine: Engine, text: str, actor: str = "admin:alice", at: datetime | None = None) -> hol.SaveResult:
    year, ranges = hol.parse_yaml(text)
    return hol.save_year(engine, year, hol.validate(year, ranges), actor, at or hohhot(2029, 12, 1))


def draft(key: str) -> ComplaintDraft:
    return ComplaintDraft(sender_id="u1", channel="wechat", category="sanitation", description="垃圾没人清运",
                          location_text="公主府社区", photo=None, phone=None, confidential=False, idempotency_key=key)


ROUTE = Route(lead="sanitation_authority", co=(), district_code="150102", street_code="150102001",
              community_code=None, dispatch_class=DispatchClass.NORMAL, reason="测试")


def file(engine: Engine, key: str, at: datetime) -> int:
    return file_complaint(SqlAlchemyUnitOfWork(engine), draft(key), ROUTE, at).ticket_id


def deadline(engine: Engine, ticket_id: int) -> datetime:
    with engine.connect() as conn:
        return conn.execute(select(tickets.c.deadline_at).where(tickets.c.id == ticket_id)).scalar_one()


def events(engine: Engine, ticket_id: int, kind: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(ticket_events.c.kind, ticket_events.c.actor, ticket_events.c.reason, ticket_events.c.data)
            .where(ticket_events.c.ticket_id == ticket_id, ticket_events.c.kind == kind).order_by(ticket_events.c.seq))]


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for t in (holiday_days, holiday_years, tickets, ticket_events)}


def test_fall_through_city_then_library_then_weekdays(engine: Engine) -> None:
    # The city enters 2026 (the library knows it) with one extra holiday and one extra make-up day.
    save(engine, f"year: 2026\nsource: {NOTICE}\nranges:\n  - {{date: 2026-11-25, kind: 休}}\n"
                 "  - {date: 2026-11-28, kind: 班}\n")
    cal = default_calendar()
    lib = ChineseWorkCalendar()
    # City year: the city's days, Monday–Friday elsewhere (its notice is the whole year's schedule).
    assert (cal.is_workday(date(2026, 11, 25)), cal.is_workday(date(2026, 11, 28))) == (False, True)
    assert lib.is_workday(date(2026, 11, 25)) and not lib.is_workday(date(2026, 11, 28))
    assert cal.is_workday(date(2026, 10, 1)) is True  # the library's National Day: replaced by the city's year
    assert cal.source(date(2026, 10, 1)) == "city"
    # Library year: the library's answers (National Day 2025, the 28 Sep 2025 make-up Sunday).
    assert (cal.is_workday(date(2025, 10, 1)), cal.is_workday(date(2025, 9, 28))) == (False, True)
    assert cal.source(date(2025, 10, 1)) == "library"
    # Nobody's year: Monday–Friday.
    assert (cal.is_workday(date(2031, 1, 1)), cal.is_workday(date(2031, 1, 4))) == (True, False)
    assert cal.source(date(2031, 1, 1)) == "weekday" and not cal.is_known(date(2031, 1, 1))


def test_filed_before_a_holiday_falls_due_after_it_and_a_make_up_saturday_counts(engine: Engine) -> None:
    save(engine, SPRING_2030)
    # Friday 1 Feb 10:00 → 1 working day to sign: Saturday 2 Feb is 班 → due Saturday 10:00.
    friday = file(engine, "fri", hohhot(2030, 2, 1, 10))
    assert deadline(engine, friday) == hohhot(2030, 2, 2, 10)
    # Saturday 2 Feb (班, the last working day before the holiday) 10:00 → after 4–10 Feb: Monday 11 Feb 10:00.
    saturday = file(engine, "sat", hohhot(2030, 2, 2, 10))
    assert deadline(engine, saturday) == hohhot(2030, 2, 11, 10)


def test_a_change_moves_exactly_the_open_deadlines_it_should(engine: Engine) -> None:
    # Nobody has entered 2030: Monday–Friday.
    moved = file(engine, "moved", hohhot(2030, 2, 1, 10))  # Friday → Monday 4 Feb 10:00
    done = file(engine, "done", hohhot(2030, 2, 1, 11))
    later = file(engine, "later", hohhot(2030, 3, 5, 10))  # untouched by a February schedule
    assert deadline(engine, moved) == hohhot(2030, 2, 4, 10)
    with SqlAlchemyUnitOfWork(engine) as uow:  # resolved: never moved
        t = uow.tickets.get(done)
        t.apply("签收", "worker:1", "", hohhot(2030, 2, 1, 12))
        t.apply("办结", "worker:1", "已清运", hohhot(2030, 2, 1, 13))
        uow.tickets.save_events(t)
        uow.commit()
    done_deadline = deadline(engine, done)
    # Overdue on Monday 4 Feb at noon: 督办.
    monday_noon = hohhot(2030, 2, 4, 12)
    assert svc.sweep_overdue(ConsoleUnitOfWork(engine), monday_noon) == ["QC-300201-0001"]

    result = save(engine, SPRING_2030, at=monday_noon)
    assert [n for n, _, _ in result.moved] == ["QC-300201-0001"]
    assert deadline(engine, moved) == hohhot(2030, 2, 2, 10)  # the make-up Saturday
    adjusted = events(engine, moved, "时限调整")
    assert [(e["kind"], e["actor"], e["reason"]) for e in adjusted] == [
        ("时限调整", "admin:alice", "时限随节假日安排调整：2030-02-04 10:00 → 2030-02-02 10:00")]
    data = events(engine, moved, "时限调整")[0]["data"]
    assert (datetime.fromisoformat(data["from"]), datetime.fromisoformat(data["to"])) == (
        hohhot(2030, 2, 4, 10), hohhot(2030, 2, 2, 10))
    assert deadline(engine, done) == done_deadline and events(engine, done, "时限调整") == []
    assert deadline(engine, later) == hohhot(2030, 3, 6, 10) and events(engine, later, "时限调整") == []

    # 督办 follows: the moved deadline is a new one; still overdue → flagged again for it.
    with SqlAlchemyUnitOfWork(engine) as uow:
        t = uow.tickets.get(moved)
        assert not t.supervised_for_current_deadline() and not t.supervised()
        assert svc.flags(t, monday_noon) == ["超期"]
    assert svc.sweep_overdue(ConsoleUnitOfWork(engine), monday_noon) == ["QC-300201-0001"]
    assert len(events(engine, moved, "督办")) == 2

    # Idempotent: the same schedule again changes nothing.
    before = snapshot(engine)
    assert save(engine, SPRING_2030, actor="admin:bob").moved == []
    assert snapshot(engine) == before

    # Taking the make-up day back moves it later: no longer overdue at noon on 2 Feb, no 督办 shown.
    save(engine, f"year: 2030\nsource: {NOTICE}\nranges:\n  - {{from: 2030-02-04, to: 2030-02-10, kind: 休}}\n")
    assert deadline(engine, moved) == hohhot(2030, 2, 11, 10)
    with SqlAlchemyUnitOfWork(engine) as uow:
        t = uow.tickets.get(moved)
        assert svc.flags(t, hohhot(2030, 2, 2, 12)) == []
        assert t.state is TicketState.DISPATCHED


@pytest.mark.parametrize(("body", "message"), [
    ("year: 2030\nsource: x\nranges:\n  - {from: 2030-02-01, to: 2030-02-05, kind: 休}\n"
     "  - {from: 2030-02-05, to: 2030-02-06, kind: 休}\n", "第5行：与第4行的日期范围重叠（2030-02-05）"),
    ("year: 2030\nsource: x\nranges:\n  - {date: 2030-02-02, kind: 休}\n  - {date: 2030-02-02, kind: 班}\n",
     "第5行：2030-02-02 与第4行冲突，同一天既是休又是班"),
    ("year: 2030\nsource: x\nranges:\n  - {date: 2030-02-02, kind: 休}\n  - {date: 2031-01-01, kind: 休}\n",
     "第5行：日期不在2030年内"),
    ("year: 2030\nsource: x\nranges:\n  - {date: 2030-02-02, kind: 假}\n", "第4行：未知的类型 '假'"),
    ("year: 2030\nranges:\n  - {date: 2030-02-02, kind: 休}\n  - {date: 2030-02-03, kind: 休, source: '  '}\n",
     "第3行：须注明来源"),
    ("year: 2030\nranges: [\n  - {date: 2030-02-02\n", "不是有效的YAML"),
    ("year: 2030\nsource: x\nranges:\n  - {date: 2030-02-30, kind: 休}\n", "第4行：日期 "),
], ids=["overlap", "both-kinds", "outside-year", "unknown-kind", "empty-source", "not-yaml", "bad-date"])
def test_each_bad_file_is_refused_whole_with_nothing_changed(
        engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str) -> None:
    file(engine, "t", hohhot(2030, 2, 1, 10))
    save(engine, SPRING_2030)
    before = snapshot(engine)
    assert calendar_cli(["import", str(year_file(tmp_path, body))]) == 1
    err = capsys.readouterr().err
    assert message in err and "nothing was saved" in err
    assert snapshot(engine) == before


def test_cli_import_show_export_round_trip(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert calendar_cli(["import", str(year_file(tmp_path, SPRING_2030)), "--by", "alice"]) == 0
    out = capsys.readouterr().out
    assert "2030-02-02 休息日(weekday) → 工作日(city)" in out
    assert "2030: 8 days saved, 6 changed, 0 open deadlines moved" in out
    assert calendar_cli(["export", "2030"]) == 0
    assert capsys.readouterr().out == (
        f'year: 2030\nsource: "{NOTICE}"\nranges:\n  - {{date: 2030-02-02, kind: 班}}\n'
        "  - {from: 2030-02-04, to: 2030-02-10, kind: 休}\n")
    assert calendar_cli(["show", "2030"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("2030年（市里录入的安排）")
    assert "\n 4  5  6  7  8  9 10    休  休  休  休  休  休  休\n" in shown
    assert "  1  2  3" in shown and " ·  班  _\n" in shown  # Friday 1 Feb, make-up Saturday 2 Feb
    assert calendar_cli(["export", "2031"]) == 1
    assert "nobody has entered 2031" in capsys.readouterr().err
    with engine.connect() as conn:
        assert conn.execute(select(holiday_years.c.entered_by)).scalar_one() == "cli:alice"


@pytest.mark.parametrize("year", range(2004, 2027))
def test_export_of_a_library_year_equals_the_library(year: int) -> None:
    lib = ChineseWorkCalendar()
    parsed_year, ranges = hol.parse_yaml(hol.to_yaml(year, hol.library_ranges(year, lib)))
    cal = hol.calendar_from({d: (r.kind, r.source) for d, r in hol.validate(parsed_year, ranges).items()},
                            [parsed_year])
    day = date(year, 1, 1)
    while day.year == year:
        assert cal.is_workday(day) == lib.is_workday(day), day
        day += timedelta(days=1)


def test_no_2027_schedule_is_shipped() -> None:
    # Nobody may guess it: only the State Council's notice, entered by an admin, may say.
    assert hol.library_ranges(2027) == []
    assert not list(Path(__file__).resolve().parents[2].joinpath("data").rglob("*2027*"))


def test_a_change_on_one_instance_is_seen_by_another_without_restart(engine: Engine) -> None:
    other = hol.StoredCalendar(make_engine(str(engine.url)), ttl=0)  # another process's read-through calendar
    assert other().is_workday(date(2030, 2, 4))
    save(engine, SPRING_2030)
    assert not other().is_workday(date(2030, 2, 4))
    other.engine.dispose()


def test_next_year_missing_is_warned_from_november_once_a_day(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    cal = default_calendar()
    hol._warned_on = None
    assert hol.missing_next_year(cal, hohhot(2029, 10, 31, 12)) is None
    with caplog.at_level("WARNING", logger="bot.storage.holidays"):
        assert hol.missing_next_year(cal, hohhot(2029, 11, 1, 9)) == 2030
        assert hol.missing_next_year(cal, hohhot(2029, 11, 1, 18)) == 2030
    assert [r.getMessage()[:25] for r in caplog.records] == ["no holiday schedule for 2"]
    save(engine, SPRING_2030)
    assert hol.missing_next_year(default_calendar(), hohhot(2029, 11, 2, 9)) is None
    assert hol.missing_next_year(cal, hohhot(2025, 11, 2, 9)) is None  # 2026: the library knows it


def test_supervision_fires_on_the_limit_of_the_step_the_ticket_is_at(engine: Engine) -> None:
    ticket_id = file(engine, "s", hohhot(2026, 11, 24, 10))  # Tuesday; 签收 1 working day, 办结 5
    sweep = svc.sweep_overdue
    assert sweep(ConsoleUnitOfWork(engine), hohhot(2026, 11, 25, 9, )) == []
    assert sweep(ConsoleUnitOfWork(engine), hohhot(2026, 11, 25, 11)) == ["QC-261124-0001"]  # not signed for
    with SqlAlchemyUnitOfWork(engine) as uow:
        t = uow.tickets.get(ticket_id)
        t.apply("签收", "worker:1", "", hohhot(2026, 11, 25, 12))
        uow.tickets.save_events(t)
        uow.commit()
    assert deadline(engine, ticket_id) == hohhot(2026, 12, 1, 10)  # 办结: 5 working days from filing
    assert sweep(ConsoleUnitOfWork(engine), hohhot(2026, 11, 30, 10)) == []
    assert sweep(ConsoleUnitOfWork(engine), hohhot(2026, 12, 1, 11)) == ["QC-261124-0001"]
    stamps = [datetime.fromisoformat(e["data"]["deadline"]) for e in events(engine, ticket_id, "督办")]
    assert stamps == [hohhot(2026, 11, 25, 10), hohhot(2026, 12, 1, 10)]


def test_a_ticket_filed_with_a_stale_cache_just_after_a_save_is_moved_by_the_sweep(engine: Engine) -> None:
    saved_at = datetime.now(SHANGHAI)
    save(engine, SPRING_2030, at=saved_at)
    # Another instance, its cache still from before the save, files a ticket a few seconds later.
    use_calendar(lambda: CityWorkCalendar())
    try:
        stale = file(engine, "stale", hohhot(2030, 2, 1, 10))
    finally:
        hol.install(engine)
    with engine.begin() as conn:  # (filed "now": in the seconds after the save)
        conn.execute(tickets.update().where(tickets.c.id == stale).values(updated_at=saved_at + timedelta(seconds=3)))
    assert deadline(engine, stale) == hohhot(2030, 2, 4, 10)  # Mon–Fri: wrong
    assert hol.reconcile(engine, saved_at + timedelta(seconds=10), ttl=30) == []  # caches may still be stale
    assert hol.reconcile(engine, saved_at + timedelta(seconds=31), ttl=30) == ["QC-300201-0001"]
    assert deadline(engine, stale) == hohhot(2030, 2, 2, 10)
    assert [e["actor"] for e in events(engine, stale, "时限调整")] == ["admin:alice"]
    assert hol.reconcile(engine, saved_at + timedelta(seconds=60), ttl=30) == []  # idempotent

"""python -m bot calendar import FILE.yml | show YEAR | export YEAR

  import FILE.yml [--by NAME]   enter a year from a file (docs/holidays.md); refused whole
                                with the line named when anything is wrong; moves the
                                deadlines of open tickets the change affects
  show YEAR                     the year as twelve month grids, then its ranges and their source
  export YEAR                   the year in the file format (the city's, else the library's)
"""
from __future__ import annotations

import argparse
import getpass
import sys
from datetime import date, datetime, timezone

from bot.domain.clock import SHANGHAI
from bot.storage import holidays as hol

MARKS = {"work": "·", "rest": "_", "holiday": "休", "makeup": "班"}


def _engine():
    from bot.storage.engine import init_db, make_engine

    engine = make_engine()
    init_db(engine)
    return engine


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in the environment or the password database
        return "cli"


def cmd_import(path: str, by: str) -> int:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(hol.MAX_TEXT_BYTES + 1)  # never more: a huge file is refused, not parsed
        if len(raw) > hol.MAX_TEXT_BYTES:
            print(f"calendar import: {path} is larger than {hol.MAX_TEXT_BYTES // 1024} KB "
                  "(a year's file is a few KB); nothing was saved", file=sys.stderr)
            return 1
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"calendar import: cannot read {path}: {exc}; nothing was saved", file=sys.stderr)
        return 1
    try:
        year, ranges = hol.parse_yaml(text)
        days = hol.validate(year, ranges)
    except hol.CalendarInputError as exc:
        print(f"calendar import: {path}: {exc}; nothing was saved", file=sys.stderr)
        return 1
    engine = _engine()
    try:
        _, changes = hol.preview(engine, year, days)
        for c in changes:
            print(f"{c.day} {'工作日' if c.was_workday else '休息日'}({c.was_source}) → "
                  f"{'工作日' if c.workday else '休息日'}({c.source})")
        result = hol.save_year(engine, year, days, f"cli:{by}", datetime.now(timezone.utc))
    finally:
        engine.dispose()
    for number, old, new in result.moved:
        print(f"{number} 时限随节假日安排调整：{old.astimezone(SHANGHAI):%Y-%m-%d %H:%M} → "
              f"{new.astimezone(SHANGHAI):%Y-%m-%d %H:%M}")
    print(f"{year}: {len(days)} days saved, {result.changed_days} changed, {len(result.moved)} open deadlines moved")
    return 0


def cmd_show(year: int) -> int:
    engine = _engine()
    try:
        with engine.connect() as conn:
            calendar = hol.calendar_from(*hol.load_rows(conn))
        found = hol.export_year(engine, year)
    finally:
        engine.dispose()
    source = {"city": "市里录入的安排", "library": "chinese_calendar 库",
              "weekday": "无安排：暂按周一至周五计算"}[calendar.source(date(year, 1, 1))]
    print(f"{year}年（{source}）  · 工作日  _ 周末  休 节假日  班 调休上班")
    for month in range(1, 13):
        print(f"\n{month}月\n一 二 三 四 五 六 日")
        for week in hol.month_grid(calendar, year, month):
            print(" ".join("  " if d is None else f"{d['day'].day:>2}" for d in week)
                  + "   " + " ".join("  " if d is None else f"{MARKS[d['status']]:>2}" for d in week))
    if found:
        print("\n日期 类型 来源")
        for r in found[1]:
            when = f"{r.start}" if r.start == r.end else f"{r.start} – {r.end}"
            print(f"{when} {r.kind} {r.source}")
    return 0


def cmd_export(year: int) -> int:
    engine = _engine()
    try:
        found = hol.export_year(engine, year)
    finally:
        engine.dispose()
    if found is None:
        print(f"calendar export: nobody has entered {year} and chinese_calendar does not know it", file=sys.stderr)
        return 1
    sys.stdout.write(hol.to_yaml(year, found[1]))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bot calendar", description="the holiday calendar (节假日安排)")
    sub = ap.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="enter a year from a YAML file")
    imp.add_argument("file")
    imp.add_argument("--by", default=_os_user(), help="who entered it, for the ticket log (default: the OS user)")
    for name in ("show", "export"):
        p = sub.add_parser(name)
        p.add_argument("year", type=int)
    args = ap.parse_args(argv)
    if args.command == "import":
        return cmd_import(args.file, args.by.strip() or _os_user())
    if not 2000 <= args.year <= 2100:
        ap.error("the year must be 2000–2100")
    return cmd_show(args.year) if args.command == "show" else cmd_export(args.year)

"""The holiday calendar the city keeps (节假日安排): input, store, and this process's calendar.

A year is entered as a list of date ranges, each a holiday (休) or a make-up working day
(班), with the notice it comes from (see docs/holidays.md for the YAML format). Input is
checked whole before anything is saved; saving a year replaces that year and moves the
deadlines of open tickets it changes, in one transaction.

Every process reads the calendar through `install(engine)`: the rows are re-read after
`QC_CALENDAR_TTL` seconds (default 30), so a year saved on one cluster instance is used
by every other one within that time, without a restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, Engine

from bot.domain.clock import SHANGHAI
from bot.domain.model import OPEN_STATES, Ticket
from bot.domain.workcal import DAY, ChineseWorkCalendar, CityWorkCalendar, use_calendar
from bot.storage.tables import holiday_days, holiday_years, tickets

log = logging.getLogger(__name__)

HOLIDAY, WORKDAY = "休", "班"
KINDS = (HOLIDAY, WORKDAY)
# Limits of one year's input, for the CLI and the console alike (a notice has ~13–16 ranges).
MAX_RANGES = 60
MAX_SOURCE = 200  # characters of a source (the notice's title and number)
MAX_TEXT_BYTES = 256 * 1024  # a year file or a pasted block, checked before parsing
FILE_KEYS = frozenset({"year", "source", "ranges"})
RANGE_KEYS = frozenset({"date", "from", "to", "kind", "source"})
WEEKDAYS = "一二三四五六日"


class CalendarInputError(ValueError):
    """Input refused whole; the message names the line (or form row)."""


@dataclass(frozen=True)
class DayRange:
    start: date
    end: date
    kind: str
    source: str
    line: int = 0  # line of the file or row of the form, for messages

    def days(self) -> Iterable[date]:
        day = self.start
        while day <= self.end:
            yield day
            day += DAY


@dataclass(frozen=True)
class DayChange:
    day: date
    was_workday: bool
    workday: bool
    was_source: str  # city | library | weekday
    source: str


# --- input ---------------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys and remembers the line of every mapping
    (as "__line__") and of each of its keys (as "__keys__")."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    loader.flatten_mapping(node)
    keys: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            seen = key in keys
        except TypeError:  # an unhashable key: construct_mapping refuses it below
            continue
        if seen:
            raise CalendarInputError(f"第{line}行：重复的键 {key}（第{keys[key]}行已有） / duplicate key {key!r}")
        keys[key] = line
    value = loader.construct_mapping(node, deep=True)
    value["__line__"] = node.start_mark.line + 1
    value["__keys__"] = keys
    return value


def _refuse_unknown_keys(mapping: dict[str, Any], allowed: frozenset[str]) -> None:
    for key, line in mapping["__keys__"].items():
        if key not in allowed:
            raise CalendarInputError(f"第{line}行：未知的键 {key}，只能是 {'、'.join(sorted(allowed))} / unknown key")


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)
# Dates stay text until _day reads them, so a bad one (2030-02-30) is refused with its line.
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _day(value: Any, where: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise CalendarInputError(f"{where}：日期 {value!r} 不是 YYYY-MM-DD / not a date") from None


def parse_yaml(text: str) -> tuple[int, list[DayRange]]:
    """A year file (docs/holidays.md) → (year, ranges), or CalendarInputError."""
    try:
        raw = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"第{mark.line + 1}行" if mark is not None else "文件"
        raise CalendarInputError(f"{line}：不是有效的YAML / not YAML") from None
    if not isinstance(raw, dict):
        raise CalendarInputError("第1行：文件须为含 year 和 ranges 的映射 / expected a mapping with year and ranges")
    _refuse_unknown_keys(raw, FILE_KEYS)
    year = raw.get("year")
    if isinstance(year, bool) or not isinstance(year, int) or not 2000 <= year <= 2100:
        raise CalendarInputError(f"第{raw['__line__']}行：year 须为年份 / year must be a year")
    default_source = str(raw.get("source") or "").strip()
    items = raw.get("ranges")
    if items is None:
        items = []  # validate refuses an empty year, for the file and the console alike
    if not isinstance(items, list):
        raise CalendarInputError(f"第{raw['__line__']}行：ranges 须为日期范围的列表 / ranges must be a list")
    ranges = []
    for item in items:
        if not isinstance(item, dict):
            raise CalendarInputError(f"年份 {year}：ranges 的每一项须为映射 / each range must be a mapping")
        line = int(item.pop("__line__"))
        _refuse_unknown_keys(item, RANGE_KEYS)
        where = f"第{line}行"
        if "date" in item and ("from" in item or "to" in item):
            raise CalendarInputError(f"{where}：date 不能与 from、to 同时出现 / give date, or from and to, not both")
        if "date" in item:
            start = end = _day(item["date"], where)
        else:
            if "from" not in item or "to" not in item:
                raise CalendarInputError(f"{where}：须给出 date，或 from 和 to / give date, or from and to")
            start, end = _day(item["from"], where), _day(item["to"], where)
        ranges.append(DayRange(start, end, str(item.get("kind") or "").strip(),
                               str(item.get("source") or default_source).strip(), line))
    return year, ranges


def parse_rows(year_text: str, rows: Sequence[Mapping[str, str]]) -> tuple[int, list[DayRange]]:
    """The console form: a year and rows of from / to / kind / source (blank rows ignored)."""
    try:
        year = int(str(year_text).strip())
    except ValueError:
        raise CalendarInputError("年份须为数字 / the year must be a number") from None
    if not 2000 <= year <= 2100:
        raise CalendarInputError("年份须在2000到2100之间 / the year must be 2000–2100")
    ranges = []
    for number, row in enumerate(rows, start=1):
        values = {k: str(row.get(k) or "").strip() for k in ("from", "to", "kind", "source")}
        where = f"第{number}行"
        if not values["from"]:
            if values["to"]:
                raise CalendarInputError(f"{where}：只填了结束日期，须填开始日期 / the row has an end but no start")
            if values["source"]:
                raise CalendarInputError(f"{where}：须填开始日期（只填了来源） / the row has a source but no date")
            continue  # a blank row
        start = _day(values["from"] or values["to"], where)
        end = _day(values["to"] or values["from"], where)
        ranges.append(DayRange(start, end, values["kind"], values["source"], number))
    return year, ranges


def validate(year: int, ranges: Sequence[DayRange]) -> dict[date, DayRange]:
    """Every day of the year's schedule → its range; CalendarInputError names the line.
    The one rule for the CLI and the console: a year is never empty, never more than
    MAX_RANGES ranges, sources are short, a 班 is a weekend day."""
    if not ranges:
        raise CalendarInputError(f"{year}年没有任何日期范围：整年的安排不能为空（按通知录入放假和调休上班的日期） / "
                                 "no ranges: a year's schedule cannot be empty")
    if len(ranges) > MAX_RANGES:
        raise CalendarInputError(f"共{len(ranges)}个日期范围，最多{MAX_RANGES}个；未保存任何内容 / "
                                 f"{len(ranges)} ranges, at most {MAX_RANGES}")
    days: dict[date, DayRange] = {}
    for r in ranges:
        where = f"第{r.line}行"
        if r.kind not in KINDS:
            raise CalendarInputError(f"{where}：未知的类型 {r.kind!r}，只能是 休 或 班 / unknown kind")
        if not r.source:
            raise CalendarInputError(f"{where}：须注明来源（通知文号） / the source notice is empty")
        if len(r.source) > MAX_SOURCE:
            raise CalendarInputError(f"{where}：来源最长{MAX_SOURCE}字（现有{len(r.source)}字） / "
                                     f"the source is longer than {MAX_SOURCE} characters")
        if r.end < r.start:
            raise CalendarInputError(f"{where}：结束日期早于开始日期 / the range ends before it starts")
        if r.start.year != year or r.end.year != year:
            raise CalendarInputError(f"{where}：日期不在{year}年内 / a date outside {year}")
        for day in r.days():
            other = days.get(day)
            if other is not None:
                if other.kind != r.kind:
                    raise CalendarInputError(f"{where}：{day} 与第{other.line}行冲突，同一天既是休又是班 / "
                                             f"{day} is marked both 休 and 班 (line {other.line})")
                raise CalendarInputError(f"{where}：与第{other.line}行的日期范围重叠（{day}） / "
                                         f"overlaps line {other.line} on {day}")
            if r.kind == WORKDAY and day.weekday() < 5:
                raise CalendarInputError(f"{where}：{day} 是星期{WEEKDAYS[day.weekday()]}，本来就是工作日，"
                                         "“班”只用于调休上班的周末 / 班 on a weekday means nothing")
            days[day] = r
    return days


# --- output --------------------------------------------------------------------


def library_ranges(year: int, library: ChineseWorkCalendar | None = None) -> list[DayRange]:
    """What the chinese_calendar library says about `year`, as ranges (empty: it does not know it)."""
    lib = library or ChineseWorkCalendar()
    if not lib.is_known(date(year, 1, 1)):
        return []
    source = f"chinese_calendar {lib.version}".strip()
    entries = {}
    day = date(year, 1, 1)
    while day.year == year:
        workday = lib.is_workday(day)
        if workday != (day.weekday() < 5):
            entries[day] = (WORKDAY if workday else HOLIDAY, source)
        day += DAY
    return _ranges(entries)


def _ranges(entries: Mapping[date, tuple[str, str]]) -> list[DayRange]:
    out: list[DayRange] = []
    for day in sorted(entries):
        kind, source = entries[day]
        last = out[-1] if out else None
        if last is not None and last.end + DAY == day and (last.kind, last.source) == (kind, source):
            out[-1] = DayRange(last.start, day, kind, source)
        else:
            out.append(DayRange(day, day, kind, source))
    return out


def to_yaml(year: int, ranges: Sequence[DayRange]) -> str:
    sources = {r.source for r in ranges}
    common = sources.pop() if len(sources) == 1 else None
    lines = [f"year: {year}"]
    if common:
        lines.append(f"source: {_quote(common)}")
    lines.append("ranges:")
    for r in ranges:
        when = f"date: {r.start}" if r.start == r.end else f"from: {r.start}, to: {r.end}"
        src = "" if common else f", source: {_quote(r.source)}"
        lines.append(f"  - {{{when}, kind: {r.kind}{src}}}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return yaml.safe_dump(text, allow_unicode=True, default_style='"').strip().removesuffix("...").strip()


# --- store ---------------------------------------------------------------------


def load_rows(conn: Connection) -> tuple[dict[date, tuple[str, str]], set[int]]:
    entries = {r.day: (r.kind, r.source) for r in conn.execute(select(holiday_days))}
    years = {int(y) for y in conn.execute(select(holiday_years.c.year)).scalars()}
    return entries, years


def calendar_from(entries: Mapping[date, tuple[str, str]], years: Iterable[int]) -> CityWorkCalendar:
    return CityWorkCalendar({d: kind == WORKDAY for d, (kind, _) in entries.items()}, years)


def city_ranges(engine: Engine, year: int) -> list[DayRange]:
    with engine.connect() as conn:
        entries, _ = load_rows(conn)
    return _ranges({d: v for d, v in entries.items() if d.year == year})


def export_year(engine: Engine, year: int) -> tuple[str, list[DayRange]] | None:
    """(where from: "city" | "library", ranges) for `year`; None when nobody knows it."""
    with engine.connect() as conn:
        entries, years = load_rows(conn)
    if year in years:
        return "city", _ranges({d: v for d, v in entries.items() if d.year == year})
    lib = library_ranges(year)
    return ("library", lib) if lib else None


def preview(engine: Engine, year: int, days: Mapping[date, DayRange]) -> tuple[CityWorkCalendar, list[DayChange]]:
    """The calendar after saving `days` as `year`, and the days whose working/non-working status changes."""
    with engine.connect() as conn:
        entries, years = load_rows(conn)
    before = calendar_from(entries, years)
    after = _with_year(entries, years, year, days)
    return after, _changes(before, after, year)


def _changes(before: CityWorkCalendar, after: CityWorkCalendar, year: int) -> list[DayChange]:
    """The days whose working/non-working status really changes (a new source alone is no change)."""
    changes = []
    day = date(year, 1, 1)
    while day.year == year:
        if before.is_workday(day) != after.is_workday(day):
            changes.append(DayChange(day, before.is_workday(day), after.is_workday(day),
                                     before.source(day), after.source(day)))
        day += DAY
    return changes


def _with_year(entries: Mapping[date, tuple[str, str]], years: Iterable[int], year: int,
               days: Mapping[date, DayRange]) -> CityWorkCalendar:
    merged = {d: v for d, v in entries.items() if d.year != year}
    merged.update({d: (r.kind, r.source) for d, r in days.items()})
    return calendar_from(merged, set(years) | {year})


@dataclass
class SaveResult:
    year: int
    changed_days: int
    moved: list[tuple[str, datetime, datetime]]  # (ticket number, old deadline, new deadline)


def save_year(engine: Engine, year: int, days: Mapping[date, DayRange], actor: str, now: datetime) -> SaveResult:
    """Replace `year` with `days` and move the deadlines of the open tickets it changes;
    one transaction (nothing half-saved). Saving the same year again changes nothing."""
    with engine.begin() as conn:
        entries, years = load_rows(conn)
        old_year = {d: v for d, v in entries.items() if d.year == year}
        new_year = {d: (r.kind, r.source) for d, r in days.items()}
        if year in years and old_year == new_year:
            return SaveResult(year, 0, [])
        calendar = _with_year(entries, years, year, days)
        changed = len(_changes(calendar_from(entries, years), calendar, year))
        conn.execute(delete(holiday_days).where(holiday_days.c.year == year))
        if days:
            conn.execute(insert(holiday_days), [
                {"day": d, "year": year, "kind": r.kind, "source": r.source, "entered_by": actor, "entered_at": now}
                for d, r in sorted(days.items())
            ])
        if year in years:
            conn.execute(holiday_years.update().where(holiday_years.c.year == year)
                         .values(entered_by=actor, entered_at=now))
        else:
            conn.execute(insert(holiday_years).values(year=year, entered_by=actor, entered_at=now))
        moved = _move_deadlines(conn, calendar, actor, now)
    invalidate()
    log.info("holiday calendar %d saved by %s: %d days changed, %d open deadlines moved",
             year, actor, changed, len(moved))
    return SaveResult(year, changed, moved)


def _move_deadlines(conn: Connection, calendar: CityWorkCalendar, actor: str, now: datetime,
                    where: Any = None) -> list[tuple[str, datetime, datetime]]:
    from bot.storage.repository import SqlTicketRepository

    repo = SqlTicketRepository(conn)
    query = select(tickets.c.id).where(tickets.c.state.in_([s.value for s in OPEN_STATES])).order_by(tickets.c.id)
    open_ids = conn.execute(query if where is None else query.where(where)).scalars().all()
    moved = []
    for ticket_id in open_ids:
        ticket: Ticket | None = repo.get(int(ticket_id))
        if ticket is None:
            continue
        old = ticket.deadline_at
        if ticket.adjust_to_calendar(calendar, actor, now) is not None:
            repo.save_events(ticket)
            moved.append((ticket.number, old, ticket.deadline_at))
    return moved


def reconcile(engine: Engine, now: datetime, ttl: float | None = None) -> list[str]:
    """Tickets another instance filed or moved with its cached, older calendar in the moments
    after a save: once every cache has expired, move them too (same event, same admin).
    Idempotent; called by the overdue sweep."""
    ttl = _ttl() if ttl is None else ttl
    with engine.begin() as conn:
        last = conn.execute(select(holiday_years.c.entered_at, holiday_years.c.entered_by)
                            .order_by(holiday_years.c.entered_at.desc()).limit(1)).first()
        if last is None or now < last.entered_at + timedelta(seconds=ttl):
            return []
        window = (tickets.c.updated_at >= last.entered_at) & \
            (tickets.c.updated_at <= last.entered_at + timedelta(seconds=ttl + 5))
        calendar = calendar_from(*load_rows(conn))
        moved = _move_deadlines(conn, calendar, last.entered_by, now, window)
    return [number for number, _, _ in moved]


def _ttl() -> float:
    return float(os.environ.get("QC_CALENDAR_TTL", "30"))


# --- this process's calendar ---------------------------------------------------------


class StoredCalendar:
    """Read-through: the city's rows, re-read at most every `ttl` seconds."""

    def __init__(self, engine: Engine, ttl: float | None = None) -> None:
        self.engine = engine
        self.ttl = _ttl() if ttl is None else ttl
        self._lock = threading.Lock()
        self._calendar: CityWorkCalendar | None = None
        self._loaded = 0.0

    def __call__(self) -> CityWorkCalendar:
        with self._lock:
            if self._calendar is None or time.monotonic() - self._loaded >= self.ttl:
                try:
                    with self.engine.connect().execution_options(qc_read_only=True) as conn:
                        self._calendar = calendar_from(*load_rows(conn))
                except Exception:  # noqa: BLE001 - the store being down must not stop deadlines
                    log.warning("holiday calendar could not be read; using the last one read", exc_info=True)
                    if self._calendar is None:
                        self._calendar = CityWorkCalendar()
                self._loaded = time.monotonic()
            return self._calendar

    def invalidate(self) -> None:
        with self._lock:
            self._calendar = None


_installed: StoredCalendar | None = None


def install(engine: Engine) -> StoredCalendar:
    """Make the store's calendar this process's calendar (bot.domain.workcal.default_calendar)."""
    global _installed
    _installed = StoredCalendar(engine)
    use_calendar(_installed)
    return _installed


def uninstall(which: StoredCalendar | None = None) -> None:
    """Back to the library alone (`which`: only if it is still the installed one)."""
    global _installed
    if which is not None and which is not _installed:
        return
    _installed = None
    use_calendar(None)


def invalidate() -> None:
    """This process saved a year: read it at once (other processes within the TTL)."""
    if _installed is not None:
        _installed.invalidate()


# --- a year nobody entered ------------------------------------------------------------


_warned_on: date | None = None
_warn_lock = threading.Lock()


def missing_next_year(calendar: CityWorkCalendar, now: datetime) -> int | None:
    """From 1 November: next year, when neither the city nor the library has its schedule
    (logged once a day per process)."""
    global _warned_on
    today = now.astimezone(SHANGHAI).date()
    if today.month < 11:
        return None
    year = today.year + 1
    if calendar.is_known(date(year, 1, 1)):
        return None
    with _warn_lock:
        if _warned_on != today:
            _warned_on = today
            log.warning("no holiday schedule for %d: deadlines in %d count Monday–Friday until an admin enters "
                        "the State Council's notice (console 节假日 page or `python -m bot calendar import`)",
                        year, year)
    return year


def month_grid(calendar: CityWorkCalendar, year: int, month: int) -> list[list[dict[str, Any] | None]]:
    """Weeks (Monday first) of `month`: None outside the month, else the day and its status."""
    first = date(year, month, 1)
    weeks: list[list[dict[str, Any] | None]] = [[None] * first.weekday()]
    day = first
    while day.month == month:
        workday = calendar.is_workday(day)
        weekday = day.weekday() < 5
        status = ("makeup" if not weekday else "work") if workday else \
            ("holiday" if weekday or calendar.is_holiday(day) else "rest")
        if len(weeks[-1]) == 7:
            weeks.append([])
        weeks[-1].append({"day": day, "status": status})
        day += timedelta(days=1)
    weeks[-1].extend([None] * (7 - len(weeks[-1])))
    return weeks

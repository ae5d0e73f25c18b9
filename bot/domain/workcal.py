"""Working days on the Chinese calendar, for deadlines (处理时限).

A ticket of the 一般 class has one *working day*: its clock runs only on working days
(Monday–Friday, minus public holidays, plus the 调休 make-up Saturdays/Sundays), counted
in Hohhot time. Filed Tuesday 10:00 → due Wednesday 10:00; filed Friday 10:00 → due
Monday 10:00; filed on Saturday → the clock starts Monday 00:00 → due Tuesday 00:00.
Safety and utilities classes (紧急 1 h, 公用事业 2 h) are clock hours: a burst main
does not wait for Monday.

Which days are working days: the city's schedule for the years it entered (kept in the
ticket store, passed in as data: `CityWorkCalendar`), else the `chinese_calendar` library
(a plain data library; it covers 2004 up to the last year the State Council had published
at its release), else Monday–Friday (`is_known` False, logged once a year). See
docs/holidays.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Protocol

from bot.domain.clock import SHANGHAI

DAY = timedelta(days=1)
log = logging.getLogger(__name__)


class WorkCalendar(Protocol):
    def is_workday(self, day: date) -> bool: ...


class WeekdayCalendar:
    """Monday–Friday, no holidays: the fallback, and a simple calendar for tests."""

    def is_workday(self, day: date) -> bool:
        return day.weekday() < 5

    def is_known(self, day: date) -> bool:
        return True


class ChineseWorkCalendar:
    """Official working days (holidays and 调休 make-up days) from `chinese_calendar`."""

    def __init__(self) -> None:
        import chinese_calendar  # plain data library; imported here so the domain stays import-light

        self._cc = chinese_calendar
        self._fallback = WeekdayCalendar()
        self._warned_years: set[int] = set()

    @property
    def version(self) -> str:
        """The installed chinese_calendar release ("" when it does not say)."""
        return getattr(self._cc, "__version__", "")

    def is_known(self, day: date) -> bool:
        try:
            self._cc.is_workday(day)
        except NotImplementedError:  # year not published in this version of the library
            return False
        return True

    def is_holiday(self, day: date) -> bool:
        """A public holiday (a named festival day, weekends within it too); False when unknown."""
        try:
            on_holiday, name = self._cc.get_holiday_detail(day)
            return bool(on_holiday) and name is not None
        except NotImplementedError:
            return False

    def is_workday(self, day: date) -> bool:
        try:
            return bool(self._cc.is_workday(day))
        except NotImplementedError:
            if day.year not in self._warned_years:  # once a year per process: operators must see it
                self._warned_years.add(day.year)
                log.warning("chinese_calendar %s has no holiday schedule for %d: deadlines count Monday–Friday "
                            "only until a release with that year is installed",
                            getattr(self._cc, "__version__", "?"), day.year)
            return self._fallback.is_workday(day)


class CityWorkCalendar:
    """The one calendar every process uses: the city's schedule → the library → Monday–Friday.

    `days` maps each day the city entered to True (班, a make-up working day) or False (休);
    `years` are the years the city entered. An entered year is the whole schedule of that
    year (the published notice): its days not listed count Monday–Friday. A year the city
    did not enter is the library's where it knows it, Monday–Friday where it does not.
    The data comes from the ticket store (bot/storage/holidays.py); the domain only reads it.
    """

    def __init__(self, days: Mapping[date, bool] | None = None, years: Iterable[int] = (),
                 library: ChineseWorkCalendar | None = None) -> None:
        self._days = dict(days or {})
        self._years = frozenset(years) | {d.year for d in self._days}
        self._library = library if library is not None else _library()

    @property
    def city_years(self) -> frozenset[int]:
        return self._years

    def source(self, day: date) -> str:
        """Who answers for `day`: "city", "library" or "weekday"."""
        if day.year in self._years:
            return "city"
        return "library" if self._library.is_known(day) else "weekday"

    def is_known(self, day: date) -> bool:
        return self.source(day) != "weekday"

    def is_workday(self, day: date) -> bool:
        if day.year in self._years:
            return self._days.get(day, day.weekday() < 5)
        return self._library.is_workday(day)

    def is_holiday(self, day: date) -> bool:
        """A day off by the schedule (休), weekends inside a holiday included."""
        if day.year in self._years:
            return self._days.get(day) is False
        return self._library.is_holiday(day)

    def unknown_between(self, start: datetime, end: datetime) -> bool:
        """True when a day from `start` to `end` (Hohhot days) is counted Monday–Friday only."""
        day, last = start.astimezone(SHANGHAI).date(), end.astimezone(SHANGHAI).date()
        while day <= last:
            if not self.is_known(day):
                return True
            day += DAY
        return False


_lib: ChineseWorkCalendar | None = None


def _library() -> ChineseWorkCalendar:
    global _lib
    if _lib is None:
        _lib = ChineseWorkCalendar()
    return _lib


# Where processes get their calendar: the store installs a read-through source
# (bot.storage.holidays.install); without one, the library and Monday–Friday.
_provider: Callable[[], WorkCalendar] | None = None


def use_calendar(provider: Callable[[], WorkCalendar] | None) -> None:
    """Make `provider()` the calendar of this process (None: back to the library alone)."""
    global _provider
    _provider = provider


def default_calendar() -> WorkCalendar:
    if _provider is not None:
        return _provider()
    return CityWorkCalendar()


def add_working_time(start: datetime, amount: timedelta, calendar: WorkCalendar | None = None) -> datetime:
    """`start` + `amount` of time that only runs on working days (Hohhot calendar days)."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    if amount < timedelta(0):
        raise ValueError("amount must not be negative")
    cal = calendar or default_calendar()
    local = start.astimezone(SHANGHAI)
    day = local.date()
    # Position inside the current day; a non-working day contributes nothing.
    offset = local - datetime.combine(day, time(0), SHANGHAI)
    remaining = amount
    for _ in range(3660):  # ten years of days: a calendar with no working day is a bug
        if cal.is_workday(day):
            left_today = DAY - offset
            if remaining <= left_today:
                result = datetime.combine(day, time(0), SHANGHAI) + offset + remaining
                return result.astimezone(start.tzinfo)
            remaining -= left_today
        day += DAY
        offset = timedelta(0)
    raise ValueError("calendar has no working day in ten years")


def working_time_between(start: datetime, end: datetime, calendar: WorkCalendar | None = None) -> timedelta:
    """Working time from `start` to `end` (negative when `end` is earlier)."""
    if end < start:
        return -working_time_between(end, start, calendar)
    cal = calendar or default_calendar()
    a, b = start.astimezone(SHANGHAI), end.astimezone(SHANGHAI)
    total = timedelta(0)
    day = a.date()
    while day <= b.date():
        lo = max(a, datetime.combine(day, time(0), SHANGHAI))
        hi = min(b, datetime.combine(day + DAY, time(0), SHANGHAI))
        if hi > lo and cal.is_workday(day):
            total += hi - lo
        day += DAY
    return total

"""Working days on the Chinese calendar, for deadlines (处理时限).

A ticket of the 一般 class has one *working day*: its clock runs only on working days
(Monday–Friday, minus public holidays, plus the 调休 make-up Saturdays/Sundays), counted
in Hohhot time. Filed Tuesday 10:00 → due Wednesday 10:00; filed Friday 10:00 → due
Monday 10:00; filed on Saturday → the clock starts Monday 00:00 → due Tuesday 00:00.
Safety and utilities classes (紧急 1 h, 公用事业 2 h) are clock hours: a burst main
does not wait for Monday.

The official holiday table comes from the `chinese_calendar` library (a plain data
library, no framework). It covers 2004 up to the last year the State Council has
published; for a year beyond that the calendar falls back to Monday–Friday and says so
(a warning in the log once a year, and `is_known`), so deadlines keep working when the
library is stale.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol

# China has had no daylight saving since 1991: a fixed offset avoids needing tzdata.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
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

    def is_known(self, day: date) -> bool:
        try:
            self._cc.is_workday(day)
        except NotImplementedError:  # year not published in this version of the library
            return False
        return True

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


_default: WorkCalendar | None = None


def default_calendar() -> WorkCalendar:
    global _default
    if _default is None:
        _default = ChineseWorkCalendar()
    return _default


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

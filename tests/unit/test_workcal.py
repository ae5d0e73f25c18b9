"""Working-day deadlines on the Chinese calendar (holidays and 调休 make-up days)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.model import DispatchClass, deadline_for
from bot.domain.workcal import (
    SHANGHAI,
    ChineseWorkCalendar,
    WeekdayCalendar,
    add_working_time,
    working_time_between,
)

CAL = ChineseWorkCalendar()


def hohhot(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("filed", "due"),
    [
        (hohhot(2026, 11, 24, 10), hohhot(2026, 11, 25, 10)),  # Tuesday → Wednesday
        (hohhot(2026, 11, 27, 10), hohhot(2026, 11, 30, 10)),  # Friday → Monday
        (hohhot(2026, 11, 28, 15), hohhot(2026, 12, 1, 0)),  # Saturday: clock starts Monday
        (hohhot(2026, 9, 30, 16), hohhot(2026, 10, 8, 16)),  # before National Day (1–7 Oct)
        (hohhot(2026, 10, 9, 9), hohhot(2026, 10, 10, 9)),  # Friday → make-up Saturday 10 Oct (调休)
        (hohhot(2026, 10, 3, 12), hohhot(2026, 10, 9, 0)),  # filed on a holiday
        (hohhot(2026, 2, 13, 20), hohhot(2026, 2, 14, 20)),  # Friday → make-up Saturday 14 Feb
    ],
)
def test_normal_class_is_one_working_day(filed: datetime, due: datetime) -> None:
    assert deadline_for(DispatchClass.NORMAL, filed) == due
    assert deadline_for(DispatchClass.NORMAL, filed).tzinfo is SHANGHAI


@pytest.mark.parametrize("cls", [DispatchClass.URGENT, DispatchClass.UTILITIES])
def test_safety_and_utilities_count_clock_hours(cls: DispatchClass) -> None:
    saturday_night = hohhot(2026, 10, 3, 23, 30)  # a holiday
    assert deadline_for(cls, saturday_night) == saturday_night + cls.limit


def test_utc_input_keeps_its_zone() -> None:
    filed = datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)  # Friday 10:00 Hohhot
    due = deadline_for(DispatchClass.NORMAL, filed)
    assert due == datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)
    assert due.tzinfo == timezone.utc


def test_labels() -> None:
    assert DispatchClass.NORMAL.limit_label == "1个工作日"
    assert DispatchClass.UTILITIES.limit_label == "2小时"


def test_years_beyond_the_library_fall_back_to_weekdays() -> None:
    far = date(2040, 1, 6)  # a Friday
    assert not CAL.is_known(far) and CAL.is_known(date(2026, 1, 5))
    assert CAL.is_workday(far) and not CAL.is_workday(far + timedelta(days=1))
    start = datetime(2040, 1, 6, 10, tzinfo=SHANGHAI)
    assert deadline_for(DispatchClass.NORMAL, start) == start + timedelta(days=3)


def test_a_year_beyond_the_library_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    cal = ChineseWorkCalendar()
    with caplog.at_level("WARNING", logger="bot.domain.workcal"):
        for day in range(4, 12):
            cal.is_workday(date(2041, 3, day))
        cal.is_workday(date(2026, 3, 2))  # a published year: nothing to say
        cal.is_workday(date(2042, 3, 3))
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.domain.workcal"]
    assert len(lines) == 2
    assert "no holiday schedule for 2041" in lines[0] and "no holiday schedule for 2042" in lines[1]


def test_refuses_naive_and_negative() -> None:
    with pytest.raises(ValueError):
        add_working_time(datetime(2026, 1, 5), timedelta(hours=1))
    with pytest.raises(ValueError):
        add_working_time(hohhot(2026, 1, 5), timedelta(hours=-1))


@settings(max_examples=200, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 1)),
    hours=st.integers(min_value=0, max_value=24 * 15),
)
def test_working_time_round_trip(start: datetime, hours: int) -> None:
    start = start.replace(tzinfo=SHANGHAI)
    end = add_working_time(start, timedelta(hours=hours), CAL)
    assert end >= start
    assert working_time_between(start, end, CAL) == timedelta(hours=hours)


def test_weekday_calendar_injectable() -> None:
    sat = hohhot(2026, 10, 10, 9)  # make-up working day officially, a weekend for WeekdayCalendar
    assert add_working_time(sat, timedelta(hours=1), WeekdayCalendar()) == hohhot(2026, 10, 12, 1)
    assert add_working_time(sat, timedelta(hours=1), CAL) == hohhot(2026, 10, 10, 10)

"""Working time from tables: weekends, nights, before and after hours, across days and DST."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from approvals.workhours import WorkingHours

SHANGHAI = WorkingHours.of([1, 2, 3, 4, 5], "09:00", "18:00", "Asia/Shanghai")
NIGHTS = WorkingHours.of([1, 2, 3, 4, 5], "22:00", "06:00", "Asia/Shanghai")
BERLIN_EARLY = WorkingHours.of(range(1, 8), "00:00", "06:00", "Europe/Berlin")
BERLIN_ALL_DAY = WorkingHours.of(range(1, 8), "00:00", "00:00", "Europe/Berlin")


def at(text: str, hours: WorkingHours = SHANGHAI) -> dt.datetime:
    """A local wall-clock time in the calendar's zone (2026-11-23 is a Monday)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=hours.zone)


@pytest.mark.parametrize(
    ("start", "end", "hours"),
    [
        ("2026-11-23 10:00", "2026-11-23 14:00", 4),  # within one day
        ("2026-11-23 08:00", "2026-11-23 10:00", 1),  # before hours
        ("2026-11-23 17:00", "2026-11-23 23:00", 1),  # after hours
        ("2026-11-23 17:00", "2026-11-24 10:00", 2),  # overnight
        ("2026-11-23 19:00", "2026-11-24 08:30", 0),  # all night
        ("2026-11-27 16:00", "2026-11-30 11:00", 4),  # Friday to Monday: the weekend is free
        ("2026-11-28 10:00", "2026-11-29 20:00", 0),  # Saturday and Sunday
        ("2026-11-23 09:00", "2026-11-30 09:00", 45),  # a whole week
        ("2026-11-23 14:00", "2026-11-23 10:00", 0),  # end before start
    ],
)
def test_elapsed(start: str, end: str, hours: float) -> None:
    assert SHANGHAI.elapsed(at(start), at(end)) == dt.timedelta(hours=hours)


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        ("2026-11-23 10:00", 4, "2026-11-23 14:00"),
        ("2026-11-23 16:00", 4, "2026-11-24 11:00"),  # carried over the night
        ("2026-11-23 07:00", 4, "2026-11-23 13:00"),  # counted from the opening
        ("2026-11-27 16:00", 4, "2026-11-30 11:00"),  # carried over the weekend
        ("2026-11-28 12:00", 1, "2026-11-30 10:00"),  # raised on a Saturday
        ("2026-11-23 14:00", 24, "2026-11-26 11:00"),  # 4 + 9 + 9 + 2
        ("2026-11-23 10:00", 8, "2026-11-23 18:00"),  # exactly at closing time
    ],
)
def test_after(start: str, hours: float, expected: str) -> None:
    assert SHANGHAI.after(at(start), hours) == at(expected)


@pytest.mark.parametrize(
    ("moment", "working"),
    [
        ("2026-11-23 09:00", True),
        ("2026-11-23 17:59", True),
        ("2026-11-23 18:00", False),
        ("2026-11-23 08:59", False),
        ("2026-11-24 02:00", False),
        ("2026-11-29 10:00", False),  # Sunday
    ],
)
def test_is_working(moment: str, working: bool) -> None:
    assert SHANGHAI.is_working(at(moment)) is working


def test_overnight_windows_belong_to_the_day_they_start() -> None:
    # Friday's night shift runs into Saturday; Saturday's does not exist.
    assert NIGHTS.elapsed(at("2026-11-27 23:00"), at("2026-11-28 05:00")) == dt.timedelta(hours=6)
    assert NIGHTS.elapsed(at("2026-11-28 23:00"), at("2026-11-29 05:00")) == dt.timedelta(0)
    assert NIGHTS.is_working(at("2026-11-28 03:00"))
    assert not NIGHTS.is_working(at("2026-11-29 03:00"))
    assert NIGHTS.after(at("2026-11-27 12:00"), 8) == at("2026-11-28 06:00")


@pytest.mark.parametrize(
    ("day", "real_hours"),
    [("2026-03-29", 5), ("2026-10-25", 7), ("2026-06-01", 6)],  # spring forward, fall back, none
)
def test_dst_counts_the_hours_that_really_passed(day: str, real_hours: int) -> None:
    start, end = at(f"{day} 00:00", BERLIN_EARLY), at(f"{day} 06:00", BERLIN_EARLY)
    assert BERLIN_EARLY.elapsed(start, end) == dt.timedelta(hours=real_hours)
    assert BERLIN_EARLY.after(start, real_hours) == end
    whole = BERLIN_ALL_DAY.elapsed(start, at(f"{day} 00:00", BERLIN_EARLY) + dt.timedelta(days=1))
    assert whole == dt.timedelta(hours=24 + real_hours - 6)


def test_times_must_be_aware_and_a_calendar_needs_working_days() -> None:
    with pytest.raises(ValueError, match="aware"):
        SHANGHAI.elapsed(dt.datetime(2026, 11, 23, 10), at("2026-11-23 12:00"))  # noqa: DTZ001
    with pytest.raises(ValueError, match="working days"):
        WorkingHours.of([], "09:00", "18:00", "Asia/Shanghai")


# hypothesis wants naive bounds; the strategy itself makes the values aware.
moments = st.datetimes(
    min_value=dt.datetime(2026, 1, 1),  # noqa: DTZ001
    max_value=dt.datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
)
calendars = st.sampled_from([SHANGHAI, NIGHTS, BERLIN_EARLY, BERLIN_ALL_DAY])


@given(calendars, moments, st.floats(min_value=0.01, max_value=100))
def test_after_and_elapsed_agree(hours: WorkingHours, start: dt.datetime, h: float) -> None:
    end = hours.after(start, h)
    assert abs(hours.elapsed(start, end) - dt.timedelta(hours=h)) < dt.timedelta(microseconds=10)
    assert hours.is_working(end - dt.timedelta(microseconds=1))


@given(calendars, moments, moments, moments)
def test_elapsed_adds_up(
    hours: WorkingHours, a: dt.datetime, b: dt.datetime, c: dt.datetime
) -> None:
    a, b, c = sorted((a, b, c))
    assert hours.elapsed(a, c) == hours.elapsed(a, b) + hours.elapsed(b, c)

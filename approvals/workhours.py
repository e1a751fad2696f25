"""Working time: how much of it lies between two moments, and when N working hours have passed.

Pure and DST-safe: each working day's window is built in local wall-clock time with zoneinfo,
turned into UTC, and intersected with the interval in UTC, so a window that spans a clock change
counts the hours that really passed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

_DAY = dt.timedelta(days=1)


def parse_hhmm(value: str) -> dt.time:
    """`09:00` as a time of day."""
    hours, minutes = (int(part) for part in value.split(":"))
    return dt.time(hours, minutes)


@dataclass(frozen=True)
class WorkingHours:
    """Working days (ISO weekdays, 1 = Monday) with a daily window, in one time zone.

    A window whose end is not after its start runs overnight into the next day (22:00-06:00
    counts from the evening of a working day); equal start and end make a whole day.
    """

    days: frozenset[int]
    start: dt.time
    end: dt.time
    zone: ZoneInfo

    def __post_init__(self) -> None:
        # With no working day, `after` would search forever: refuse the calendar up front.
        if not self.days or not self.days <= frozenset(range(1, 8)):
            raise ValueError("working days must be a non-empty set of ISO weekdays 1..7")

    @classmethod
    def of(cls, days: Iterable[int], start: str, end: str, zone: str) -> WorkingHours:
        """From configuration values: weekdays, `HH:MM` start and end, an IANA zone name."""
        return cls(frozenset(days), parse_hhmm(start), parse_hhmm(end), ZoneInfo(zone))

    def window(self, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        """The working window that starts on a local date, in UTC; None on a day off."""
        if day.isoweekday() not in self.days:
            return None
        opens = dt.datetime.combine(day, self.start, self.zone)
        closes_on = day if self.end > self.start else day + _DAY
        closes = dt.datetime.combine(closes_on, self.end, self.zone)
        return opens.astimezone(dt.UTC), closes.astimezone(dt.UTC)

    def _windows_from(self, moment: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        # Start a day early: an overnight window that opened yesterday may still be open.
        day = _aware(moment).astimezone(self.zone).date() - _DAY
        while True:
            found = self.window(day)
            if found is not None:
                yield found
            day += _DAY

    def elapsed(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Working time between two aware moments (zero when `end` is not after `start`)."""
        start, end = _aware(start), _aware(end)
        total = dt.timedelta(0)
        for opens, closes in self._windows_from(start):
            if opens >= end:
                return total
            overlap = min(closes, end) - max(opens, start)
            if overlap > dt.timedelta(0):
                total += overlap
        raise AssertionError("unreachable: the windows never end")  # pragma: no cover

    def after(self, start: dt.datetime, hours: float) -> dt.datetime:
        """The moment (UTC) when `hours` working hours have passed since `start`."""
        left = dt.timedelta(hours=hours)
        start = _aware(start)
        for opens, closes in self._windows_from(start):
            if closes <= start:
                continue
            begin = max(opens, start)
            if begin + left <= closes:
                return begin + left
            left -= closes - begin
        raise AssertionError("unreachable: the windows never end")  # pragma: no cover

    def is_working(self, moment: dt.datetime) -> bool:
        """Whether a moment falls inside a working window."""
        moment = _aware(moment)
        for opens, closes in self._windows_from(moment):
            if opens > moment:
                return False
            if moment < closes:
                return True
        raise AssertionError("unreachable: the windows never end")  # pragma: no cover

    def is_working_day(self, moment: dt.datetime) -> bool:
        """Whether a moment's local date is a working day."""
        return _aware(moment).astimezone(self.zone).isoweekday() in self.days


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("working time needs timezone-aware datetimes")
    return moment.astimezone(dt.UTC)

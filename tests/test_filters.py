"""Formatting for people."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from cards.filters import duration, local_time, money, percent


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("11.700000"), "11.70"),
        (Decimal("0.410417"), "0.410417"),
        (Decimal("1000"), "1000.00"),
        (Decimal("1E+3"), "1000.00"),
        (Decimal("-3.5"), "-3.50"),
        (None, "—"),
    ],
)
def test_money(value: Decimal | None, text: str) -> None:
    assert money(value) == text


def test_percent() -> None:
    assert percent(Decimal("2.6")) == "+2.6%"
    assert percent(Decimal("-10")) == "-10.0%"
    assert percent(None) == "—"


def test_local_time_uses_the_zone() -> None:
    at = dt.datetime(2026, 11, 25, 2, 30, tzinfo=dt.UTC)
    assert local_time(at) == "2026-11-25 10:30"
    assert local_time(at, "UTC") == "2026-11-25 02:30"


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (125, "2m"), (3600, "1h"), (3900, "1h 5m"), (90000, "1d 1h")]
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text

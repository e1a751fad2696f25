"""Formatting for people: money, percentages, local times, durations."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo


def money(value: Decimal | None, places: int = 2) -> str:
    """At least `places` decimals, more only when they carry digits: 11.7 -> 11.70."""
    if value is None:
        return "—"
    text = f"{value:f}"
    if "." not in text:
        return f"{value:.{places}f}"
    whole, frac = text.split(".")
    frac = frac.rstrip("0").ljust(places, "0")
    return f"{whole}.{frac}"


def percent(value: Decimal | None) -> str:
    """A signed percentage: +2.6%, -10.0%."""
    return "—" if value is None else f"{value:+.1f}%"


def local_time(
    value: dt.datetime | None, zone: str = "Asia/Shanghai", fmt: str = "%Y-%m-%d %H:%M"
) -> str:
    """An aware time shown in the configured zone."""
    return "—" if value is None else value.astimezone(ZoneInfo(zone)).strftime(fmt)


def duration(seconds: float) -> str:
    """A short human duration: 45s, 12m, 3h 5m, 2d 4h."""
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, _ = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"

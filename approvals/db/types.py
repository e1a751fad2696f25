"""Column types that keep money exact and times aware on SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect
from sqlalchemy.types import TypeDecorator

from approvals.models import MONEY_SCALE

_FACTOR = Decimal(10) ** MONEY_SCALE


def to_micros(value: Decimal) -> int:
    """A decimal as an exact integer count of millionths; raises when it has more places."""
    scaled = value * _FACTOR
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {MONEY_SCALE} decimal places")
    return int(scaled)


def from_micros(value: int) -> Decimal:
    """An integer count of millionths as a decimal."""
    return Decimal(value).scaleb(-MONEY_SCALE)


class Micros(TypeDecorator[Decimal]):
    """A `Decimal` stored as a scaled integer, so SQL MIN/MAX/SUM stay exact, SQLite included."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        return None if value is None else to_micros(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        # PostgreSQL returns SUM(bigint) as numeric; both are exact.
        return None if value is None else from_micros(int(value))


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime; naive values are refused on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store aware UTC times only")
        utc = value.astimezone(dt.UTC)
        # SQLite keeps text; drop the offset so every stored value sorts the same way.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

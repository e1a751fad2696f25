"""Column types that keep money exact and times aware on SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt
import functools
import json
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, String, Text
from sqlalchemy.types import TypeDecorator, TypeEngine

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


class JsonText(TypeDecorator[Any]):
    """JSON kept as text; accepts text already serialized (pydantic's fast `model_dump_json`)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime; naive values are refused on the way in.

    PostgreSQL stores `timestamptz`. SQLite stores fixed-width ISO text (`YYYY-MM-DD
    HH:MM:SS.ffffff`, UTC), which sorts and compares correctly as text and is formatted here in C
    rather than through SQLAlchemy's slower generic DATETIME processing: intake writes several
    timestamps per event, and they are usually one `now`, so the last conversion is reused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store aware UTC times only")
        if dialect.name != "sqlite":
            return value
        return _sqlite_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@functools.lru_cache(maxsize=64)
def _sqlite_text(value: dt.datetime) -> str:
    """Aware datetime -> fixed-width UTC text; cached because a batch repeats the same `now`."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

"""The CSV price-history import (CONTRACT section 4): streamed, validated, upserted in batches."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import os
import re
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO, NamedTuple
from zoneinfo import ZoneInfo

from approvals.db.engine import Database
from approvals.db.price_repo import PriceRow, upsert
from approvals.models import MONEY_SCALE
from approvals.prices import line_amount

COLUMNS = (
    "material_code",
    "supplier_code",
    "unit_price",
    "currency",
    "quantity",
    "ordered_at",
    "doc_no",
)
"""The columns a price file must name in its header, in any order."""
BATCH_ROWS = 5000
"""Rows per write transaction: large enough to amortize the commit, small enough not to hog it."""
MAX_REPORTED = 1000
"""Bad rows listed in a report; the count covers them all."""

_MAX_TEXT = 128
_LIMIT = Decimal(10) ** 12
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
# ASCII digits only: Decimal() would also take "1_000" and non-Latin digits.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)


class BadRow(NamedTuple):
    """A skipped row: its first line in the file and why."""

    line: int
    reason: str


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What an import did; `exit_code` is the CLI's exit status."""

    path: Path
    rows_read: int
    loaded: int
    skipped: int
    bad_rows: tuple[BadRow, ...]
    """The first `MAX_REPORTED` skipped rows."""
    error: str | None = None
    """Why the file could not be used (rows loaded before a late failure stay loaded)."""

    @property
    def exit_code(self) -> int:
        """0 all rows loaded, 1 some skipped, 2 the file could not be used."""
        if self.error is not None:
            return 2
        return 1 if self.skipped else 0


class _UnusableError(Exception):
    """The file cannot be imported at all."""


def _text(fields: dict[str, str], name: str) -> str:
    value = fields[name]
    if not value:
        raise ValueError(f"{name} is empty")
    if len(value) > _MAX_TEXT:
        raise ValueError(f"{name} is longer than {_MAX_TEXT} characters")
    return value


def _decimal(fields: dict[str, str], name: str) -> Decimal:
    text = fields[name]
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{name} {text!r} is not a decimal number")
    value = Decimal(text)
    if value != value.quantize(_QUANTUM):
        raise ValueError(f"{name} {text} has more than {MONEY_SCALE} decimal places")
    if value < 0:
        raise ValueError(f"{name} {text} is negative")
    if value >= _LIMIT:
        raise ValueError(f"{name} {text} is out of range")
    return value


def _when(text: str, zone: ZoneInfo) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
        # A date means midnight in the configured zone, as does a naive date-time.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=zone)
        return aware.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"ordered_at {text!r} is not an ISO date or date-time") from None


def parse_row(fields: dict[str, str], zone: ZoneInfo) -> PriceRow:
    """A validated row from a CSV record's stripped fields; ValueError says what is wrong."""
    material_code = _text(fields, "material_code")
    supplier_code = _text(fields, "supplier_code")
    doc_no = _text(fields, "doc_no")
    currency = fields["currency"].upper()
    if not _CURRENCY.fullmatch(currency):
        raise ValueError(f"currency {fields['currency']!r} is not a 3-letter code")
    unit_price = _decimal(fields, "unit_price")
    quantity = _decimal(fields, "quantity")
    if quantity == 0:
        raise ValueError("quantity must be greater than 0")
    # The stored amount must fit the same range as every other money column.
    if line_amount(unit_price, quantity) >= _LIMIT:
        raise ValueError("unit_price × quantity is out of range")
    return PriceRow(
        material_code=material_code,
        supplier_code=supplier_code,
        unit_price=unit_price,
        currency=currency,
        quantity=quantity,
        ordered_at=_when(fields["ordered_at"], zone),
        doc_no=doc_no,
        source="import",
    )


class _Batch(NamedTuple):
    rows: list[PriceRow]
    done: bool


class _CsvReader:
    """Streams a price file into validated batches; every method runs in a worker thread."""

    def __init__(self, path: Path, zone: ZoneInfo) -> None:
        self._zone = zone
        self._lock = threading.Lock()
        try:
            self._file: BinaryIO = path.open("rb")
        except FileNotFoundError:
            raise _UnusableError("no such file") from None
        except IsADirectoryError:
            raise _UnusableError("is a directory, not a CSV file") from None
        except OSError as exc:
            raise _UnusableError(f"cannot be read ({exc.strerror or exc})") from None
        self.total = os.fstat(self._file.fileno()).st_size
        self.bytes_read = 0
        self.rows_read = 0
        self.skipped = 0
        self.bad_rows: list[BadRow] = []
        self._undecodable: set[int] = set()
        self._width = 0
        self._csv = csv.reader(self._lines())
        try:
            self._columns = self._header()
        except BaseException:
            self._file.close()
            raise

    def _lines(self) -> Iterator[str]:
        # Binary lines, decoded one by one: a bad byte costs one row, not the whole file, and
        # the byte count for progress stays exact. b"\n" never occurs inside a UTF-8 sequence.
        for number, raw in enumerate(self._file, start=1):
            self.bytes_read += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._undecodable.add(number)
                text = raw.decode("utf-8", "replace")
            yield text.removeprefix("\ufeff") if number == 1 else text

    def _records(self) -> Iterator[tuple[int, list[str] | None, str | None]]:
        """(first line, fields or None, problem) per record; blank lines are skipped."""
        while True:
            first = self._csv.line_num + 1
            try:
                fields = next(self._csv)
            except StopIteration:
                return
            except csv.Error as exc:
                yield first, None, f"malformed CSV: {exc}"
                continue
            if not fields:
                continue
            lines = range(first, self._csv.line_num + 1)
            if any(n in self._undecodable for n in lines):
                yield first, None, "not valid UTF-8 (save the file as UTF-8)"
                continue
            yield first, fields, None

    def _header(self) -> dict[str, int]:
        for line, fields, problem in self._records():
            if self._undecodable:
                raise _UnusableError("not UTF-8 text (save it as CSV UTF-8)")
            if fields is None:
                raise _UnusableError(f"line {line}: the header cannot be read ({problem})")
            names = [name.strip().lower() for name in fields]
            twice = sorted({n for n in names if n in COLUMNS and names.count(n) > 1})
            if twice:
                raise _UnusableError(f"the header names {', '.join(twice)} more than once")
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise _UnusableError(
                    f"the header lacks {', '.join(missing)} (it must name {', '.join(COLUMNS)})"
                )
            self._width = len(names)
            return {name: names.index(name) for name in COLUMNS}
        raise _UnusableError("the file is empty: a header row is required")

    def _bad(self, line: int, reason: str) -> None:
        self.skipped += 1
        if len(self.bad_rows) < MAX_REPORTED:
            self.bad_rows.append(BadRow(line, reason))

    def read_batch(self, size: int) -> _Batch:
        """Up to `size` good rows; bad ones are recorded and skipped."""
        rows: list[PriceRow] = []
        with self._lock:
            try:
                for line, fields, problem in self._records():
                    self.rows_read += 1
                    if fields is None:
                        self._bad(line, problem or "unreadable")
                    elif len(fields) != self._width:
                        # A missing or extra comma shifts every later value into the wrong column.
                        self._bad(line, f"has {len(fields)} fields; the header has {self._width}")
                    else:
                        values = {n: fields[i].strip() for n, i in self._columns.items()}
                        try:
                            rows.append(parse_row(values, self._zone))
                        except ValueError as exc:
                            self._bad(line, str(exc))
                    if len(rows) >= size:
                        return _Batch(rows, done=False)
            except OSError as exc:
                raise _UnusableError(
                    f"reading failed at line {self._csv.line_num} ({exc})"
                ) from None
        return _Batch(rows, done=True)

    def close(self) -> None:
        """Close the file once no batch is being read."""
        with self._lock:
            self._file.close()


async def import_prices(
    db: Database,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    tz: str = "Asia/Shanghai",
    *,
    batch_rows: int = BATCH_ROWS,
) -> ImportReport:
    """Load a price CSV: good rows upserted by (doc_no, material_code), bad rows reported."""
    try:
        zone = ZoneInfo(tz)
    except (ValueError, KeyError):
        raise ValueError(f"unknown time zone {tz!r}") from None
    try:
        reader = await asyncio.to_thread(_CsvReader, path, zone)
    except _UnusableError as exc:
        return ImportReport(path, 0, 0, 0, (), error=f"{path}: {exc}")
    loaded, error = 0, None
    try:
        if progress is not None:
            progress(0, reader.total)
        done = False
        while not done:
            batch = await asyncio.to_thread(reader.read_batch, batch_rows)
            done = batch.done
            if batch.rows:
                # A transaction per batch: a crash keeps whole batches; a rerun fixes the rest.
                async with db.write() as conn:
                    await upsert(conn, batch.rows)
                loaded += len(batch.rows)
            if progress is not None:
                progress(reader.bytes_read, reader.total)
    except _UnusableError as exc:
        error = f"{path}: {exc}"
    finally:
        await asyncio.to_thread(reader.close)
    return ImportReport(
        path, reader.rows_read, loaded, reader.skipped, tuple(reader.bad_rows), error=error
    )

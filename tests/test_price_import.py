"""The CSV price import on SQLite and PostgreSQL: formats, bad rows, exit codes, progress."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from approvals.db.engine import Database
from approvals.db.tables import price
from approvals.price_import import MAX_REPORTED, BadRow, ImportReport, import_prices

D = Decimal
UTC = dt.UTC
HEADER = "material_code,supplier_code,unit_price,currency,quantity,ordered_at,doc_no"
GOOD = [
    "M-1,S-1,12.50,CNY,10,2026-01-05,PO-1",
    "M-2,S-2,0.000001,cny,3.5,2026-01-05T10:30:00,PO-1",
    "M-1,S-3,13,USD,1,2026-01-06T10:30:00+00:00,PO-2",
]


def csv_file(tmp_path: Path, *lines: str, prefix: bytes = b"", name: str = "prices.csv") -> Path:
    """A CSV file of the given lines (CRLF, as spreadsheets write them)."""
    path = tmp_path / name
    path.write_bytes(prefix + "".join(line + "\r\n" for line in lines).encode())
    return path


async def rows(db: Database) -> list[Any]:
    """Every stored price, by doc_no and material."""
    async with db.read() as conn:
        query = select(price).order_by(price.c.doc_no, price.c.material_code)
        return list(await conn.execute(query))


async def count(db: Database) -> int:
    """How many prices are stored."""
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(price))).scalar_one())


async def test_import_loads_every_good_row(db: Database, tmp_path: Path) -> None:
    path = csv_file(tmp_path, HEADER, *GOOD)
    report = await import_prices(db, path, None, "Asia/Shanghai")
    assert report == ImportReport(path, rows_read=3, loaded=3, skipped=0, bad_rows=())
    assert report.exit_code == 0
    got = [
        (r.doc_no, r.material_code, r.supplier_code, r.currency, r.source, r.ordered_at)
        for r in await rows(db)
    ]
    assert got == [
        # A date is midnight in Shanghai: 16:00 UTC the day before.
        ("PO-1", "M-1", "S-1", "CNY", "import", dt.datetime(2026, 1, 4, 16, tzinfo=UTC)),
        # A naive date-time is Shanghai time too.
        ("PO-1", "M-2", "S-2", "CNY", "import", dt.datetime(2026, 1, 5, 2, 30, tzinfo=UTC)),
        ("PO-2", "M-1", "S-3", "USD", "import", dt.datetime(2026, 1, 6, 10, 30, tzinfo=UTC)),
    ]
    assert [(r.unit_price, r.quantity, r.amount) for r in await rows(db)] == [
        (D("12.5"), D(10), D(125)),
        (D("0.000001"), D("3.5"), D("0.000004")),  # 0.0000035, half-even
        (D(13), D(1), D(13)),
    ]


async def test_zone_is_configurable(db: Database, tmp_path: Path) -> None:
    path = csv_file(tmp_path, HEADER, GOOD[0], "M-2,S-2,1,CNY,1,2026-01-05 08:00Z,PO-9")
    report = await import_prices(db, path, None, "UTC")
    assert report.exit_code == 0
    assert [r.ordered_at for r in await rows(db)] == [
        dt.datetime(2026, 1, 5, tzinfo=UTC),
        dt.datetime(2026, 1, 5, 8, tzinfo=UTC),
    ]
    with pytest.raises(ValueError, match="unknown time zone"):
        await import_prices(db, path, None, "Mars/Olympus")


async def test_bom_and_reordered_columns_with_extras(db: Database, tmp_path: Path) -> None:
    header = ' Doc_No ,QUANTITY,note,"ordered_at",Unit_Price,currency,supplier_code,material_code'
    path = csv_file(
        tmp_path,
        header,
        'PO-5,2,"free text, with a comma",2026-02-01,7.25,CNY,S-5,M-5',
        prefix=b"\xef\xbb\xbf",
    )
    report = await import_prices(db, path, None, "Asia/Shanghai")
    assert (report.exit_code, report.loaded) == (0, 1)
    (stored,) = await rows(db)
    assert (stored.doc_no, stored.material_code, stored.supplier_code) == ("PO-5", "M-5", "S-5")
    assert (stored.unit_price, stored.quantity, stored.amount) == (D("7.25"), D(2), D("14.5"))


async def test_bom_before_a_quoted_header(db: Database, tmp_path: Path) -> None:
    header = ",".join(f'"{name}"' for name in HEADER.split(","))
    path = csv_file(tmp_path, header, GOOD[0], prefix=b"\xef\xbb\xbf")
    report = await import_prices(db, path, None, "Asia/Shanghai")
    assert (report.exit_code, report.loaded) == (0, 1)


async def test_reimport_is_idempotent_and_updates(db: Database, tmp_path: Path) -> None:
    path = csv_file(tmp_path, HEADER, *GOOD)
    await import_prices(db, path, None, "Asia/Shanghai")
    first = await rows(db)
    again = await import_prices(db, path, None, "Asia/Shanghai")
    assert (again.exit_code, again.loaded) == (0, 3)
    assert await rows(db) == first  # same ids, same values
    changed = csv_file(tmp_path, HEADER, "M-1,S-9,12.75,CNY,4,2026-01-07,PO-1", name="b.csv")
    assert (await import_prices(db, changed, None, "Asia/Shanghai")).exit_code == 0
    assert await count(db) == 3
    updated = next(r for r in await rows(db) if (r.doc_no, r.material_code) == ("PO-1", "M-1"))
    assert updated.id == first[0].id
    assert (updated.supplier_code, updated.unit_price, updated.quantity) == (
        "S-9",
        D("12.75"),
        D(4),
    )
    assert (updated.amount, updated.ordered_at) == (D(51), dt.datetime(2026, 1, 6, 16, tzinfo=UTC))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (",S-1,1,CNY,1,2026-01-05,PO-9", "material_code is empty"),
        (f"{'M' * 129},S-1,1,CNY,1,2026-01-05,PO-9", "material_code is longer than 128 characters"),
        ("M-9,  ,1,CNY,1,2026-01-05,PO-9", "supplier_code is empty"),
        ("M-9,S-1,1,CNY,1,2026-01-05,", "doc_no is empty"),
        ("M-9,S-1,1,YUAN,1,2026-01-05,PO-9", "currency 'YUAN' is not a 3-letter code"),
        ("M-9,S-1,abc,CNY,1,2026-01-05,PO-9", "unit_price 'abc' is not a decimal number"),
        (
            'M-9,S-1,"1,234.50",CNY,1,2026-01-05,PO-9',
            "unit_price '1,234.50' is not a decimal number",
        ),
        ("M-9,S-1,1_000,CNY,1,2026-01-05,PO-9", "unit_price '1_000' is not a decimal number"),
        ("M-9,S-1,NaN,CNY,1,2026-01-05,PO-9", "unit_price 'NaN' is not a decimal number"),
        ("M-9,S-1,,CNY,1,2026-01-05,PO-9", "unit_price '' is not a decimal number"),
        (
            "M-9,S-1,1.1234567,CNY,1,2026-01-05,PO-9",
            "unit_price 1.1234567 has more than 6 decimal places",
        ),
        ("M-9,S-1,1e-7,CNY,1,2026-01-05,PO-9", "unit_price 1e-7 has more than 6 decimal places"),
        ("M-9,S-1,-1,CNY,1,2026-01-05,PO-9", "unit_price -1 is negative"),
        ("M-9,S-1,1000000000000,CNY,1,2026-01-05,PO-9", "unit_price 1000000000000 is out of range"),
        ("M-9,S-1,1,CNY,0,2026-01-05,PO-9", "quantity must be greater than 0"),
        ("M-9,S-1,1,CNY,-2,2026-01-05,PO-9", "quantity -2 is negative"),
        ("M-9,S-1,1000000,CNY,1000000,2026-01-05,PO-9", "unit_price × quantity is out of range"),
        (
            "M-9,S-1,1,CNY,1,05/01/2026,PO-9",
            "ordered_at '05/01/2026' is not an ISO date or date-time",
        ),
        (
            "M-9,S-1,1,CNY,1,2026-02-30,PO-9",
            "ordered_at '2026-02-30' is not an ISO date or date-time",
        ),
        ("M-9,S-1,1,CNY,1,2026-01-05", "has 6 fields; the header has 7"),
        ("M-9,S-1,1,CNY,1,2026-01-05,PO-9,extra", "has 8 fields; the header has 7"),
    ],
)
async def test_each_bad_row_is_reported_with_its_line(
    db: Database, tmp_path: Path, bad: str, reason: str
) -> None:
    path = csv_file(tmp_path, HEADER, GOOD[0], bad, GOOD[2])
    report = await import_prices(db, path, None, "Asia/Shanghai")
    assert report.bad_rows == (BadRow(3, reason),)
    assert (report.rows_read, report.loaded, report.skipped, report.exit_code) == (3, 2, 1, 1)
    assert [r.doc_no for r in await rows(db)] == ["PO-1", "PO-2"]


async def test_line_numbers_count_physical_lines(db: Database, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        HEADER,
        "",  # blank lines are skipped, but still counted
        'M-1,S-1,1,CNY,1,2026-01-05,"PO-1',  # a quoted doc_no spanning two lines
        'continued"',
        "M-2,S-1,x,CNY,1,2026-01-05,PO-2",
        "M-3,S-1,1.0000000,CNY,1,2026-01-05,PO-3",  # trailing zeros are not extra precision
        "",
    )
    report = await import_prices(db, path, None, "Asia/Shanghai")
    assert report.bad_rows == (BadRow(5, "unit_price 'x' is not a decimal number"),)
    assert (report.rows_read, report.loaded, report.exit_code) == (3, 2, 1)
    assert [r.doc_no for r in await rows(db)] == ["PO-1\r\ncontinued", "PO-3"]


async def test_a_row_that_is_not_utf8_is_skipped(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        (HEADER + "\n" + GOOD[0] + "\n").encode()
        + "M-2,供应商,1,CNY,1,2026-01-05,PO-2\n".encode("gbk")
        + (GOOD[2] + "\n").encode()
    )
    report = await import_prices(db, path, None, "Asia/Shanghai")
    assert report.bad_rows == (BadRow(3, "not valid UTF-8 (save the file as UTF-8)"),)
    assert (report.loaded, report.exit_code) == (2, 1)


async def test_only_bad_rows_is_exit_1_and_the_list_is_capped(db: Database, tmp_path: Path) -> None:
    bad = [f"M-{i},S-1,-1,CNY,1,2026-01-05,PO-{i}" for i in range(MAX_REPORTED + 5)]
    report = await import_prices(db, csv_file(tmp_path, HEADER, *bad), None, "Asia/Shanghai")
    assert (report.rows_read, report.loaded, report.skipped) == (
        MAX_REPORTED + 5,
        0,
        MAX_REPORTED + 5,
    )
    assert len(report.bad_rows) == MAX_REPORTED
    assert report.bad_rows[-1] == BadRow(MAX_REPORTED + 1, "unit_price -1 is negative")
    assert (report.exit_code, report.error) == (1, None)
    assert await count(db) == 0


async def test_header_only_is_exit_0(db: Database, tmp_path: Path) -> None:
    report = await import_prices(db, csv_file(tmp_path, HEADER), None, "Asia/Shanghai")
    assert (report.rows_read, report.loaded, report.exit_code) == (0, 0, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "the file is empty: a header row is required"),
        (b"\r\n\r\n", "the file is empty: a header row is required"),
        (
            b"material_code,supplier_code,unit_price,currency,ordered_at\nM,S,1,CNY,2026-01-05\n",
            "the header lacks quantity, doc_no",
        ),
        ((HEADER + ",Doc_No\n").encode(), "the header names doc_no more than once"),
        ((HEADER + "\n").encode("utf-16"), "not UTF-8 text"),
        ("物料编码,供应商\n".encode("gbk"), "not UTF-8 text"),
    ],
)
async def test_unusable_file_is_exit_2(
    db: Database, tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "prices.csv"
    if content is not None:
        path.write_bytes(content)
    report = await import_prices(db, path, None, "Asia/Shanghai")
    assert report.exit_code == 2
    assert report.error is not None
    assert report.error.startswith(f"{path}: {message}")
    assert (report.rows_read, report.loaded, report.skipped) == (0, 0, 0)
    assert await count(db) == 0


async def test_a_directory_is_exit_2(db: Database, tmp_path: Path) -> None:
    report = await import_prices(db, tmp_path, None, "Asia/Shanghai")
    assert report.exit_code == 2
    assert report.error == f"{tmp_path}: is a directory, not a CSV file"


async def test_batches_and_progress(db: Database, tmp_path: Path) -> None:
    lines = [f"M-{i},S-1,{i}.5,CNY,2,2026-01-05,PO-{i}" for i in range(7)]
    path = csv_file(tmp_path, HEADER, *lines)
    size = path.stat().st_size
    calls: list[tuple[int, int]] = []
    report = await import_prices(
        db, path, lambda done, total: calls.append((done, total)), "Asia/Shanghai", batch_rows=2
    )
    assert (report.loaded, report.exit_code) == (7, 0)
    assert await count(db) == 7
    assert calls[0] == (0, size)
    assert calls[-1] == (size, size)
    assert len(calls) == 5  # the start, then after each of four batches (2, 2, 2, 1 rows)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)

"""Price storage on SQLite and PostgreSQL: statistics, the lookback window, upserts, learning."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, select

from approvals.db.engine import Database
from approvals.db.price_repo import PriceRow, load_stats, rows_from_order, upsert
from approvals.db.tables import price
from approvals.models import CodeName, OrderLine, Person, PurchaseOrder
from approvals.prices import PriceStats

D = Decimal
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def row(
    material: str,
    unit_price: str,
    at: dt.datetime,
    doc_no: str,
    *,
    quantity: str = "1",
    supplier: str = "S-1",
) -> PriceRow:
    """An imported price row."""
    return PriceRow(material, supplier, D(unit_price), "CNY", D(quantity), at, doc_no, "import")


async def write(db: Database, rows: list[PriceRow]) -> int:
    """Upsert in one transaction."""
    async with db.write() as conn:
        return await upsert(conn, rows)


async def stats_of(db: Database, codes: list[str], since: dt.datetime) -> dict[str, PriceStats]:
    """`load_stats` on a read connection."""
    async with db.read() as conn:
        return await load_stats(conn, codes, since)


async def stored(db: Database) -> list[Any]:
    """Every price row, by id."""
    async with db.read() as conn:
        return list(await conn.execute(select(price).order_by(price.c.id)))


async def test_stats_match_a_brute_force_computation(db: Database) -> None:
    rnd = random.Random(20261125)
    materials = [f"M-{i}" for i in range(8)]
    rows = [
        row(
            rnd.choice(materials),
            f"{rnd.randint(0, 5_000_000)}.{rnd.randint(0, 999_999):06d}",
            # Coarse times, so several purchases share an instant and the tie-break matters.
            T0 + dt.timedelta(days=rnd.randint(0, 40), hours=rnd.choice([0, 12])),
            f"PO-{i}",
            quantity=f"{rnd.randint(0, 500)}.{rnd.randint(1, 999_999):06d}",
            supplier=f"S-{rnd.randint(1, 5)}",
        )
        for i in range(400)
    ]
    for start in range(0, len(rows), 150):  # several transactions, ids still in order
        await write(db, rows[start : start + 150])
    since = T0 + dt.timedelta(days=20)
    got = await stats_of(db, [*materials, "NONE"], since)

    expected: dict[str, PriceStats] = {}
    tied = 0
    everything = await stored(db)
    for code in materials:
        mine = [r for r in everything if r.material_code == code and r.ordered_at >= since]
        if not mine:
            continue
        newest = max(mine, key=lambda r: (r.ordered_at, r.id))
        tied += sum(r.ordered_at == newest.ordered_at for r in mine) > 1
        expected[code] = PriceStats(
            material_code=code,
            count=len(mine),
            min=min(r.unit_price for r in mine),
            max=max(r.unit_price for r in mine),
            sum_amount=sum((r.amount for r in mine), D(0)),
            sum_quantity=sum((r.quantity for r in mine), D(0)),
            last_price=newest.unit_price,
            last_at=newest.ordered_at,
            last_supplier=newest.supplier_code,
        )
    assert got == expected
    assert len(got) == 8
    assert all(s.count > 1 for s in got.values())
    assert tied > 0  # the data exercised the tie-break


async def test_lookback_window_includes_its_start_only(db: Database) -> None:
    since = T0 + dt.timedelta(days=30)
    await write(
        db,
        [
            row("A", "5", since - dt.timedelta(microseconds=1), "PO-1"),
            row("A", "7", since, "PO-2"),
            row("A", "9", since + dt.timedelta(days=1), "PO-3", quantity="3"),
            row("OLD", "1", since - dt.timedelta(days=1), "PO-4"),
        ],
    )
    got = await stats_of(db, ["A", "OLD"], since)
    assert set(got) == {"A"}
    a = got["A"]
    assert (a.count, a.min, a.max) == (2, D(7), D(9))
    assert (a.sum_amount, a.sum_quantity) == (D(34), D(4))
    assert (a.last_price, a.last_at) == (D(9), since + dt.timedelta(days=1))


async def test_window_compares_instants_not_wall_clocks(db: Database) -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    # 07:00 in Shanghai is 23:00 UTC the day before: outside a window starting at 00:00 UTC.
    await write(db, [row("A", "1", dt.datetime(2026, 2, 1, 7, tzinfo=shanghai), "PO-1")])
    assert await stats_of(db, ["A"], dt.datetime(2026, 2, 1, tzinfo=dt.UTC)) == {}
    got = await stats_of(db, ["A"], dt.datetime(2026, 1, 31, 22, tzinfo=dt.UTC))
    assert got["A"].last_at == dt.datetime(2026, 1, 31, 23, tzinfo=dt.UTC)


async def test_last_price_is_the_latest_then_the_last_recorded(db: Database) -> None:
    noon = T0 + dt.timedelta(hours=12)
    await write(db, [row("A", "10", noon, "PO-1", supplier="S-1")])
    await write(db, [row("A", "11", noon, "PO-2", supplier="S-2")])  # same instant, higher id
    await write(db, [row("A", "99", T0, "PO-3", supplier="S-3")])  # highest id, but earlier
    got = (await stats_of(db, ["A"], T0))["A"]
    assert (got.last_price, got.last_supplier, got.last_at) == (D(11), "S-2", noon)
    assert got.count == 3
    # Updating PO-1 keeps its id: the row recorded last at that instant is still PO-2.
    await write(db, [row("A", "12", noon, "PO-1", supplier="S-1")])
    got = (await stats_of(db, ["A"], T0))["A"]
    assert (got.last_price, got.last_supplier) == (D(11), "S-2")


async def test_no_codes_and_unknown_codes(db: Database) -> None:
    await write(db, [row("A", "1", T0, "PO-1")])
    assert await stats_of(db, [], T0) == {}
    assert await stats_of(db, ["B", "C"], T0) == {}
    assert set(await stats_of(db, ["A", "A", "B"], T0)) == {"A"}


async def test_upsert_updates_by_doc_and_material(db: Database) -> None:
    assert await write(db, [row("A", "1", T0, "PO-1"), row("B", "2", T0, "PO-1")]) == 2
    before = await stored(db)
    changed = row("A", "1.5", T0 + dt.timedelta(days=1), "PO-1", quantity="4", supplier="S-7")
    assert await write(db, [changed]) == 1
    after = await stored(db)
    assert len(after) == 2
    a = next(r for r in after if r.material_code == "A")
    assert a.id == next(r.id for r in before if r.material_code == "A")
    assert (a.unit_price, a.quantity, a.amount, a.supplier_code) == (D("1.5"), D(4), D(6), "S-7")
    assert a.ordered_at == T0 + dt.timedelta(days=1)


async def test_upsert_batch_with_a_repeated_key_keeps_the_last(db: Database) -> None:
    rows = [row("A", "1", T0, "PO-1"), row("A", "2", T0, "PO-1"), row("A", "3", T0, "PO-2")]
    assert await write(db, rows) == 2
    assert [(r.doc_no, r.unit_price) for r in await stored(db)] == [("PO-1", D(2)), ("PO-2", D(3))]
    assert await write(db, []) == 0


@pytest.mark.parametrize(
    ("unit_price", "quantity", "amount"),
    [
        ("0.000001", "0.5", "0.000000"),  # half-even: 0.0000005 -> 0
        ("0.000003", "0.5", "0.000002"),  # half-even: 0.0000015 -> 0.000002
        ("12.345678", "1000.5", "12351.850839"),
        ("999999.999999", "999999.999999", "999999999998.000000"),
    ],
)
async def test_amount_is_rounded_half_even(
    db: Database, unit_price: str, quantity: str, amount: str
) -> None:
    await write(db, [row("A", unit_price, T0, "PO-1", quantity=quantity)])
    (stored_row,) = await stored(db)
    assert stored_row.amount == D(amount)
    assert row("A", unit_price, T0, "PO-1", quantity=quantity).amount == D(amount)


def test_price_row_refuses_naive_times_and_unknown_sources() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        row("A", "1", dt.datetime(2026, 1, 1), "PO-1")  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="unknown price source"):
        PriceRow("A", "S", D(1), "CNY", D(1), T0, "PO-1", "guess")  # type: ignore[arg-type]


def order(*lines: tuple[str, str, str]) -> PurchaseOrder:
    """A purchase order from (material, quantity, unit price) lines."""
    return PurchaseOrder(
        doc_no="PO-77",
        revision=2,
        buyer=Person(erp_user="u1"),
        supplier=CodeName(code="S-42"),
        currency="USD",
        total_amount=D(0),
        lines=[
            OrderLine(line_no=i, material_code=m, quantity=D(q), unit_price=D(p))
            for i, (m, q, p) in enumerate(lines, start=1)
        ],
    )


def test_rows_from_order_merges_lines_of_one_material() -> None:
    approved = dt.datetime(2026, 3, 2, 10, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    po = order(
        ("A", "3", "10"),
        ("B", "2", "5"),
        ("A", "1", "14"),
        ("C", "1", "1"),
        ("C", "2", "2"),
        ("Z", "0", "8"),  # nothing bought: no price to learn
    )
    rows = rows_from_order(po, approved)
    assert [(r.material_code, r.quantity, r.unit_price) for r in rows] == [
        ("A", D(4), D(11)),  # (30 + 14) / 4
        ("B", D(2), D(5)),
        ("C", D(3), D("1.666667")),  # 5 / 3, rounded to the money scale
    ]
    assert {(r.doc_no, r.supplier_code, r.currency, r.source) for r in rows} == {
        ("PO-77", "S-42", "USD", "approved")
    }
    assert all(r.ordered_at == approved for r in rows)
    assert rows[2].amount == D("5.000001")  # 1.666667 x 3, as stored


def test_rows_from_order_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rows_from_order(order(("A", "1", "1")), dt.datetime(2026, 3, 2))  # noqa: DTZ001


async def test_learned_prices_feed_the_statistics(db: Database) -> None:
    await write(db, [row("A", "8", T0, "PO-1", quantity="2")])
    approved = T0 + dt.timedelta(days=3)
    await write(db, rows_from_order(order(("A", "3", "10"), ("A", "1", "14")), approved))
    # The ERP approves a later revision of the same order: the learned row is replaced.
    await write(db, rows_from_order(order(("A", "2", "12")), approved + dt.timedelta(hours=1)))
    got = (await stats_of(db, ["A"], T0))["A"]
    assert (got.count, got.min, got.max) == (2, D(8), D(12))
    assert (got.sum_amount, got.sum_quantity) == (D(40), D(4))
    assert (got.last_price, got.last_supplier) == (D(12), "S-42")
    async with db.read() as conn:
        sources = (
            await conn.execute(select(price.c.source, func.count()).group_by(price.c.source))
        ).all()
    assert sorted(tuple(s) for s in sources) == [("approved", 1), ("import", 1)]


async def test_sqlite_reads_only_the_covering_index(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("the query plan checked here is SQLite's")
    await write(db, [row("A", "1", T0, "PO-1"), row("B", "2", T0, "PO-2")])
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "FROM price" in statement and not statement.startswith("EXPLAIN"):
            seen.append((statement, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        await stats_of(db, ["A", "B"], T0)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    assert len(seen) == 1  # one round trip for aggregates and last prices
    statement, params = seen[0]
    async with db.read() as conn:
        plan = [
            r[-1] for r in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
        ]
    searches = [step for step in plan if "price" in step and ("SEARCH" in step or "SCAN" in step)]
    # The window's range scan, then per material a seek to its latest instant and one for the
    # purchases at it.
    assert len(searches) == 3, plan
    assert all("USING COVERING INDEX ix_price_context" in step for step in searches), plan

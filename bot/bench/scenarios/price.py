"""*price*: the price context of a 50-line order over 1,000,000 history rows (p99 <= 5 ms)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gc
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

from approvals.config import DatabaseConfig, PriceConfig
from approvals.db.engine import Database
from approvals.db.repo import RevisionRow
from approvals.models import CodeName, DocType, OrderLine, Person, PurchaseOrder
from approvals.price_import import BATCH_ROWS, COLUMNS, import_prices
from approvals.prices import line_amount
from approvals.states import State
from approvals.submit import instance_request
from bot.bench.context import BenchContext
from bot.bench.report import ScenarioResult, at_most, info, percentile
from bot.bench.stack import fresh_database

LINES = 50
TARGET_P99_MS = 5.0
PURCHASES_PER_MATERIAL = 200
"""Kept in quick mode too (fewer materials instead), so each query aggregates as many rows."""
SUPPLIERS = 60
SUPPLIERS_PER_MATERIAL = 4
WARMUP_ORDERS = 20
SEED = 20261125


@dataclass(frozen=True)
class Catalogue:
    """The materials of the seeded history: each one's typical price and usual suppliers."""

    cents: list[int]
    suppliers: list[list[str]]

    @classmethod
    def of(cls, materials: int, rnd: random.Random) -> Catalogue:
        """Typical prices log-uniform from 0.50 to 50,000 CNY; a few suppliers per material."""
        cents = [round(10 ** rnd.uniform(1.7, 6.7)) for _ in range(materials)]
        codes = [f"SUP-{s:03d}" for s in range(SUPPLIERS)]
        return cls(cents, [rnd.sample(codes, SUPPLIERS_PER_MATERIAL) for _ in cents])

    def __len__(self) -> int:
        return len(self.cents)

    @staticmethod
    def code(index: int) -> str:
        """The code of the `index`-th material."""
        return f"MAT-{index:06d}"


def money(cents: int) -> str:
    """Cents as a decimal string, as an ERP export writes them."""
    return f"{cents // 100}.{cents % 100:02d}"


def history(
    catalogue: Catalogue, rows: int, end: dt.datetime, window: dt.timedelta, rnd: random.Random
) -> Iterator[tuple[str, ...]]:
    """Price-file records in time order (as an ERP export lists them), all inside the window."""
    # An hour's margin at either end, so no row sits on the lookback boundary.
    start = end - window + dt.timedelta(hours=1)
    step = (window - dt.timedelta(hours=2)) / rows
    for i in range(rows):
        m = int(rnd.random() * len(catalogue))
        cents = max(1, round(catalogue.cents[m] * rnd.uniform(0.85, 1.15)))
        yield (
            catalogue.code(m),
            catalogue.suppliers[m][int(rnd.random() * SUPPLIERS_PER_MATERIAL)],
            money(cents),
            "CNY",
            str(1 + int(rnd.random() * 500)),
            (start + step * i).isoformat(),
            f"PO-H{i:08d}",
        )


def write_csv(path: Path, records: Iterator[tuple[str, ...]]) -> None:
    """A price file in the import's format (CONTRACT section 4)."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows(records)


async def seed(ctx: BenchContext, db: Database, path: Path, rows: int) -> float:
    """Load the price file with the CSV import (`approval-bridge import-prices`); its seconds."""
    shown = [0]

    def progress(done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth > shown[0]:
            shown[0] = tenth
            ctx.say(f"price: imported {tenth * 10}% of {rows:,} rows")

    started = time.perf_counter()
    report = await import_prices(db, path, progress)
    seconds = time.perf_counter() - started
    if report.error is not None or report.loaded != rows:
        raise RuntimeError(f"import loaded {report.loaded:,} of {rows:,}: {report.error}")
    return seconds


async def settle(db: Database) -> None:
    """On PostgreSQL, what autovacuum does within a minute of a large import."""
    if db.is_sqlite:
        return
    # Straight after the import the planner has no statistics (it picks a sequential scan) and
    # the visibility map is empty (index-only scans visit the heap): several times slower.
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM (ANALYZE) price"))


def order(catalogue: Catalogue, rnd: random.Random, number: int) -> PurchaseOrder:
    """A 50-line order of distinct random materials, priced around their history."""
    picks = rnd.sample(range(len(catalogue)), min(LINES, len(catalogue)))
    lines = [
        OrderLine(
            line_no=n + 1,
            material_code=catalogue.code(m),
            quantity=Decimal(rnd.randint(1, 200)),
            # Up to 25% over the typical price, so some lines carry warnings.
            unit_price=Decimal(money(round(catalogue.cents[m] * rnd.uniform(0.8, 1.25)) or 1)),
        )
        for n, m in enumerate(picks)
    ]
    total = sum((line_amount(line.unit_price, line.quantity) for line in lines), Decimal(0))
    return PurchaseOrder(
        doc_no=f"PO-BENCH-{number:05d}",
        revision=1,
        buyer=Person(erp_user="u1001"),
        supplier=CodeName(code="SUP-000"),
        total_amount=total,
        lines=lines,
    )


def revision_row(po: PurchaseOrder, now: dt.datetime) -> RevisionRow:
    """The order as the submit handler reads it back from the revision table."""
    return RevisionRow(
        approval_id=f"ap-{po.doc_no}",
        doc_type=DocType.PURCHASE_ORDER,
        doc_no=po.doc_no,
        revision=po.revision,
        state=State.SUBMITTING,
        document=po.model_dump(mode="json"),
        instance_id=None,
        decision=None,
        decided_at=None,
        approvers=None,
        erp_ref=None,
        last_error=None,
        created_at=now,
        updated_at=now,
    )


@dataclass
class Timings:
    """Per order: wall-clock milliseconds, and CPU milliseconds this process spent on it."""

    wall_ms: list[float]
    cpu_ms: list[float]


async def measure(
    db: Database, rows: list[RevisionRow], prices: PriceConfig, now: dt.datetime
) -> Timings:
    """Time whole `instance_request` calls: the document, the statistics query, the contexts."""
    timings = Timings([], [])
    for row in rows:
        cpu, started = time.process_time(), time.perf_counter()
        request = await instance_request(db, row, prices, now)
        timings.wall_ms.append((time.perf_counter() - started) * 1000)
        # process_time counts every thread, the database driver's included.
        timings.cpu_ms.append((time.process_time() - cpu) * 1000)
        if len(request.prices) != LINES:
            raise RuntimeError(f"{len(request.prices)} price contexts for {LINES} lines")
    return timings


async def run(ctx: BenchContext) -> ScenarioResult:
    """Import the history, then time the submit path's price context for many 50-line orders."""
    rows, orders = ctx.size(1_000_000, 100_000), ctx.size(500, 100)
    prices = PriceConfig()
    now = dt.datetime.now(dt.UTC)
    rnd = random.Random(SEED)  # noqa: S311 - a repeatable workload, not a secret
    catalogue = Catalogue.of(max(1, rows // PURCHASES_PER_MATERIAL), rnd)
    folder = ctx.workdir / "price"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "history.csv"
    window = dt.timedelta(days=prices.lookback_days)
    ctx.say(f"price: writing {rows:,} purchases of {len(catalogue):,} materials")
    await asyncio.to_thread(write_csv, path, history(catalogue, rows, now, window, rnd))
    requests = [revision_row(order(catalogue, rnd, n), now) for n in range(orders)]
    async with fresh_database(folder, ctx.server_url) as url:
        db = Database.from_config(DatabaseConfig(url=url))
        try:
            seconds = await seed(ctx, db, path, rows)
            ctx.say(f"price: imported in {seconds:.1f} s; timing {orders} orders of {LINES} lines")
            await settle(db)
            gc.collect()  # the import's garbage is not the orders' to pay for
            await measure(db, requests[:WARMUP_ORDERS], prices, now)
            timings = await measure(db, requests, prices, now)
        finally:
            await db.dispose()
    path.unlink()
    return _result(ctx, rows, len(catalogue), seconds, timings)


def _result(
    ctx: BenchContext, rows: int, materials: int, seed_s: float, timings: Timings
) -> ScenarioResult:
    samples = timings.wall_ms
    result = ScenarioResult(
        "price",
        [
            info("p50", percentile(samples, 50), "ms"),
            at_most("p99", percentile(samples, 99), TARGET_P99_MS, "ms"),
            info("max", max(samples), "ms"),
            info("rows", rows),
            info("import rate", rows / seed_s, "rows/s"),
        ],
    )
    database = "SQLite" if ctx.server_url is None else "PostgreSQL"
    result.notes.append(
        f"{len(samples)} orders of {LINES} distinct random materials after {WARMUP_ORDERS} "
        f"warm-up ones, each timed as one approvals.submit.instance_request call (what the "
        f"submit path runs: the document, one statistics query, {LINES} price contexts)"
    )
    result.notes.append(
        f"measured in the bench process, off the service's core: the same code the service "
        f"runs; CPU time of this process per order p50 {percentile(timings.cpu_ms, 50):.2f} ms, "
        f"p99 {percentile(timings.cpu_ms, 99):.2f} ms (wall time above it is waiting: for a "
        f"busy CPU, the disk, or the database server)"
    )
    result.notes.append(
        f"{rows:,} rows on {database}: {materials:,} materials x ~{PURCHASES_PER_MATERIAL} "
        f"purchases, {SUPPLIERS} suppliers, CNY, all inside the lookback; loaded by the CSV "
        f"import ({BATCH_ROWS:,} rows per transaction) in {seed_s:.1f} s"
    )
    if ctx.server_url is not None:
        result.notes.append(
            "VACUUM (ANALYZE) price ran after the import, as autovacuum would within a minute; "
            "before it, the statistics query is several times slower (a sequential scan)"
        )
    return result

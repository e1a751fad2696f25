"""The migrated schema works on both databases, with exact money and aware times."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, insert, select

from approvals.db.engine import Database
from approvals.db.migrate import status
from approvals.db.tables import price


async def test_schema_is_current(db: Database) -> None:
    s = await status(db)
    assert s.up_to_date, s


async def test_money_is_exact_and_times_aware(db: Database) -> None:
    at = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    rows = [
        {
            "material_code": "M",
            "supplier_code": "S",
            "unit_price": Decimal(p),
            "currency": "CNY",
            "quantity": Decimal("1"),
            "amount": Decimal(p),
            "ordered_at": at,
            "doc_no": f"D{i}",
            "source": "import",
        }
        for i, p in enumerate(["0.1", "0.2", "0.000001"])
    ]
    async with db.write() as conn:
        await conn.execute(insert(price), rows)
    async with db.read() as conn:
        total, low = (
            await conn.execute(select(func.sum(price.c.unit_price), func.min(price.c.unit_price)))
        ).one()
        stored = (await conn.execute(select(price.c.ordered_at).limit(1))).scalar_one()
    assert total == Decimal("0.300001")
    assert low == Decimal("0.000001")
    assert stored == at
    assert stored.utcoffset() == dt.timedelta(0)

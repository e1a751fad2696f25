"""The price scenario's workload: records the import accepts, orders of distinct materials."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

from approvals.price_import import COLUMNS, parse_row
from bot.bench.scenarios.price import LINES, Catalogue, history, money, order

END = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
WINDOW = dt.timedelta(days=365)


def test_money_writes_cents_as_a_decimal_string() -> None:
    assert [money(1), money(50), money(123456)] == ["0.01", "0.50", "1234.56"]


def test_history_records_pass_the_import_and_stay_inside_the_window() -> None:
    rnd = random.Random(1)
    catalogue = Catalogue.of(20, rnd)
    records = list(history(catalogue, 1000, END, WINDOW, rnd))
    rows = [parse_row(dict(zip(COLUMNS, r, strict=True)), ZoneInfo("UTC")) for r in records]
    assert len({(r.doc_no, r.material_code) for r in rows}) == 1000
    assert all(END - WINDOW < r.ordered_at < END for r in rows)
    assert [r.ordered_at for r in rows] == sorted(r.ordered_at for r in rows)
    assert len({r.material_code for r in rows}) == 20


def test_an_order_has_distinct_materials_of_the_catalogue() -> None:
    rnd = random.Random(2)
    catalogue = Catalogue.of(100, rnd)
    po = order(catalogue, rnd, 7)
    codes = [line.material_code for line in po.lines]
    assert len(codes) == LINES == len(set(codes))
    assert set(codes) <= {Catalogue.code(i) for i in range(100)}

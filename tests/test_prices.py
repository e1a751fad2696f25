"""The price math, from tables of cases: averages, percentages, warnings, exactness."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from approvals.models import OrderLine
from approvals.prices import (
    PriceContext,
    PriceStats,
    PriceWarning,
    line_amount,
    price_context,
    round_money,
    threshold,
)

D = Decimal
AT = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
ABOVE_MAX, ABOVE_AVG, NO_HISTORY = (
    PriceWarning.ABOVE_MAX,
    PriceWarning.ABOVE_AVERAGE,
    PriceWarning.NO_HISTORY,
)


def line(unit_price: str, material: str = "M-1") -> OrderLine:
    """An order line at a given unit price."""
    return OrderLine(line_no=1, material_code=material, quantity=D(3), unit_price=D(unit_price))


def stats(**overrides: Any) -> PriceStats:
    """History of M-1: 4 purchases, 8..20, average 10, last 12 from S-9."""
    values: dict[str, Any] = {
        "material_code": "M-1",
        "count": 4,
        "min": D(8),
        "max": D(20),
        "sum_amount": D(100),
        "sum_quantity": D(10),
        "last_price": D(12),
        "last_at": AT,
        "last_supplier": "S-9",
    }
    values.update(overrides)
    return PriceStats(**values)


@pytest.mark.parametrize(
    ("sum_amount", "sum_quantity", "average"),
    [
        ("70", "4", "17.500000"),  # 10 x 1 + 20 x 3: weighted, not (10 + 20) / 2
        ("10", "3", "3.333333"),
        ("20", "3", "6.666667"),
        ("0.000001", "2", "0.000000"),  # half-even: 0.0000005 -> 0
        ("0.000003", "2", "0.000002"),  # half-even: 0.0000015 -> 0.000002
        ("0", "5", "0.000000"),
        ("1.5", "0.000001", "1500000.000000"),
        ("1", "8", "0.125000"),
    ],
)
def test_average_is_weighted_by_quantity(sum_amount: str, sum_quantity: str, average: str) -> None:
    ctx = price_context(
        line("1"), stats(sum_amount=D(sum_amount), sum_quantity=D(sum_quantity)), 10
    )
    assert ctx.average == D(average)
    assert str(ctx.average) == average


@pytest.mark.parametrize(
    ("current", "sum_amount", "sum_quantity", "pct"),
    [
        ("11", "100", "10", "10.0"),
        ("9", "100", "10", "-10.0"),
        ("10", "100", "10", "0.0"),
        ("10.05", "100", "10", "0.5"),
        ("10.005", "100", "10", "0.0"),  # 0.05 -> half-even 0.0
        ("10.015", "100", "10", "0.2"),  # 0.15 -> half-even 0.2
        ("4", "9", "3", "33.3"),
        ("2", "9", "3", "-33.3"),
        ("0", "9", "3", "-100.0"),
        ("30", "9", "3", "900.0"),
        # Against the exact average 17.5 (70/4), not a rounded one.
        ("17.5", "70", "4", "0.0"),
        ("1", "0", "5", None),  # average 0: no meaningful percent
        ("1", "5", "0", None),  # no quantities: no average
    ],
)
def test_pct_vs_average(current: str, sum_amount: str, sum_quantity: str, pct: str | None) -> None:
    ctx = price_context(
        line(current), stats(sum_amount=D(sum_amount), sum_quantity=D(sum_quantity)), 10
    )
    assert ctx.pct_vs_average == (None if pct is None else D(pct))
    if pct is not None:
        assert str(ctx.pct_vs_average) == pct


@pytest.mark.parametrize(
    ("current", "last", "pct"),
    [
        ("10", "8", "25.0"),
        ("6", "8", "-25.0"),
        ("8", "8", "0.0"),
        ("1", "3", "-66.7"),
        ("1", "0", None),
    ],
)
def test_pct_vs_last(current: str, last: str, pct: str | None) -> None:
    ctx = price_context(line(current), stats(last_price=D(last)), 10)
    assert ctx.pct_vs_last == (None if pct is None else D(pct))


@pytest.mark.parametrize(
    ("current", "overrides", "limit", "warnings"),
    [
        ("10", {}, 10.0, ()),
        ("20", {}, 10.0, (ABOVE_AVG,)),  # the max itself is not above it, but 100% over 10
        ("20.000001", {}, 10.0, (ABOVE_MAX, ABOVE_AVG)),
        ("11", {}, 10.0, ()),  # exactly 10% over: not *more* than 10%
        ("11.000001", {}, 10.0, (ABOVE_AVG,)),
        ("10.000001", {}, 0.0, (ABOVE_AVG,)),
        ("12.5", {}, 25.0, ()),
        ("12.500001", {}, 25.0, (ABOVE_AVG,)),
        ("10.05", {}, 0.5, ()),  # 0.5 is taken as written, not as the float 0.5000000000000000277
        ("10.050001", {}, 0.5, (ABOVE_AVG,)),
        ("25", {"max": D(30)}, 1000.0, ()),
        ("21", {"max": D(30)}, 100.0, (ABOVE_AVG,)),
        ("31", {"max": D(30)}, 1000.0, (ABOVE_MAX,)),
        # Zero quantities: no average, so never "above average"; the maximum still speaks.
        ("50", {"sum_quantity": D(0), "sum_amount": D(0)}, 10.0, (ABOVE_MAX,)),
        # Free goods in the past: any positive price is above an average of zero.
        ("0.01", {"sum_amount": D(0), "max": D(0)}, 10.0, (ABOVE_MAX, ABOVE_AVG)),
        ("0", {"sum_amount": D(0), "max": D(0)}, 10.0, ()),
    ],
)
def test_warnings(
    current: str, overrides: dict[str, Any], limit: float, warnings: tuple[PriceWarning, ...]
) -> None:
    ctx = price_context(line(current), stats(**overrides), limit)
    assert ctx.warnings == warnings
    assert ctx.warn_above_average_pct == threshold(limit)


def test_no_history() -> None:
    ctx = price_context(line("12.34", material="NEW"), None, 10.0)
    assert ctx == PriceContext(
        material_code="NEW",
        unit_price=D("12.34"),
        count=0,
        min=None,
        max=None,
        average=None,
        last_price=None,
        last_at=None,
        last_supplier=None,
        pct_vs_average=None,
        pct_vs_last=None,
        warn_above_average_pct=D("10.0"),
        warnings=(NO_HISTORY,),
    )


def test_history_is_carried_through_in_utc() -> None:
    ctx = price_context(line("12"), stats(), 10.0)
    assert (ctx.material_code, ctx.count, ctx.min, ctx.max) == ("M-1", 4, D(8), D(20))
    assert (ctx.last_price, ctx.last_supplier) == (D(12), "S-9")
    assert ctx.last_at == AT
    assert ctx.last_at is not None
    assert ctx.last_at.utcoffset() == dt.timedelta(0)
    assert ctx.pct_vs_last == D("0.0")
    assert ctx.pct_vs_average == D("20.0")


def test_exact_beyond_the_default_decimal_precision() -> None:
    # 30 significant digits: the default 28-digit context would round these.
    big = D("123456789012345678901234.123456")
    total = D("370370367037037036703702.370368")  # big x 3
    ctx = price_context(line("0.1"), stats(sum_amount=total, sum_quantity=D(3), max=D(1)), 10.0)
    assert ctx.average == big
    ctx = price_context(line("0.1"), stats(sum_amount=D("0.9"), sum_quantity=D(3)), 10.0)
    assert ctx.average == D("0.300000")
    assert ctx.pct_vs_average == D("-66.7")
    assert line_amount(D("999999.999999"), D("999999.999999")) == D("999999999998.000000")
    assert round_money(D("2.0000005")) == D("2.000000")
    assert round_money(D("2.0000015")) == D("2.000002")


def test_results_hold_no_floats_and_serialize_as_decimal_strings() -> None:
    ctx = price_context(line("11"), stats(), 10.0)
    assert not any(isinstance(v, float) for v in ctx.model_dump().values())
    wire = ctx.model_dump(mode="json")
    assert wire["average"] == "10.000000"
    assert wire["pct_vs_average"] == "10.0"
    assert wire["warn_above_average_pct"] == "10.0"
    assert wire["warnings"] == []


def test_contexts_round_trip_through_json() -> None:
    ctx = price_context(line("11"), stats(), 10.0)
    assert PriceContext.model_validate_json(ctx.model_dump_json()) == ctx
    assert PriceContext.model_validate(ctx.model_dump(mode="json")) == ctx
    assert PriceStats.model_validate(stats().model_dump(mode="json")) == stats()


def test_stats_refuse_floats_and_naive_times() -> None:
    with pytest.raises(ValidationError, match="not a float"):
        stats(min=8.5)
    with pytest.raises(ValidationError, match="not a float"):
        PriceContext.model_validate(
            {**price_context(line("1"), None, 10).model_dump(), "unit_price": 1.0}
        )
    with pytest.raises(ValidationError):
        stats(last_at=dt.datetime(2026, 3, 1, 9, 30))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValidationError):
        stats(count=0)

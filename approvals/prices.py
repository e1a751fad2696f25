"""Pure price math: a line's unit price against the material's purchase history."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from approvals.models import MONEY_SCALE, OrderLine

# Wide enough that products and quotients of two in-range amounts (< 10**12, 6 places) are exact
# before the one final rounding; the default 28 digits would round silently.
EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN)
"""Arithmetic context for money: exact for in-range operands, half-even when it must round."""
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_PCT_QUANTUM = Decimal("0.1")
_HUNDRED = Decimal(100)


def round_money(value: Decimal) -> Decimal:
    """A decimal rounded half-even to the money scale."""
    return value.quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT)


def line_amount(unit_price: Decimal, quantity: Decimal) -> Decimal:
    """`unit_price * quantity`, rounded half-even to the money scale."""
    return round_money(EXACT.multiply(unit_price, quantity))


def _aware_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("must be timezone-aware")
    return value.astimezone(dt.UTC)


def _no_float(value: Any) -> Any:
    # A float has already lost the exact value; decimal strings (from JSON) and ints are fine.
    if isinstance(value, float):
        raise ValueError("must be a Decimal or a decimal string, not a float")
    return value


_Aware = Annotated[dt.datetime, AfterValidator(_aware_utc)]
Exact = Annotated[Decimal, BeforeValidator(_no_float)]
"""A Decimal field that refuses floats."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PriceStats(_Frozen):
    """One material's purchases over the lookback window, as the database aggregates them."""

    material_code: str
    count: int = Field(ge=1)
    min: Exact
    max: Exact
    sum_amount: Exact
    sum_quantity: Exact
    last_price: Exact
    last_at: _Aware
    last_supplier: str


class PriceWarning(StrEnum):
    """Why an approver should look twice at a line's price."""

    ABOVE_MAX = "above_max"
    ABOVE_AVERAGE = "above_average"
    NO_HISTORY = "no_history"


class PriceContext(_Frozen):
    """What an approver sees for one order line (CONTRACT section 5)."""

    material_code: str
    unit_price: Exact
    count: int = Field(ge=0)
    min: Exact | None
    max: Exact | None
    average: Exact | None
    """Quantity-weighted, rounded to the money scale; None without history or quantities."""
    last_price: Exact | None
    last_at: _Aware | None
    last_supplier: str | None
    pct_vs_average: Exact | None
    """Percent above (+) or below (-) the average, to 0.1; None when the average is 0 or unknown."""
    pct_vs_last: Exact | None
    """Percent above (+) or below (-) the last price, to 0.1; None when it is 0 or unknown."""
    warn_above_average_pct: Exact
    """The threshold behind ABOVE_AVERAGE, for the card's wording."""
    warnings: tuple[PriceWarning, ...]


def _pct(current: Decimal, numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """Percent of `current` over the reference `numerator / denominator`, to 0.1."""
    if numerator == 0 or denominator == 0:
        return None
    # (current * d - n) * 100 / n: a single division, so only the final rounding is inexact.
    excess = EXACT.subtract(EXACT.multiply(current, denominator), numerator)
    pct = EXACT.divide(EXACT.multiply(excess, _HUNDRED), numerator)
    return pct.quantize(_PCT_QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT)


def threshold(warn_above_average_pct: float) -> Decimal:
    """The configured percentage as the decimal a person wrote (10.0 -> 10.0, not 10.00000001)."""
    return Decimal(repr(warn_above_average_pct))


def price_context(
    line: OrderLine, stats: PriceStats | None, warn_above_average_pct: float
) -> PriceContext:
    """Compare a line's unit price with its material's history."""
    current = line.unit_price
    limit = threshold(warn_above_average_pct)
    if stats is None:
        return PriceContext(
            material_code=line.material_code,
            unit_price=current,
            count=0,
            min=None,
            max=None,
            average=None,
            last_price=None,
            last_at=None,
            last_supplier=None,
            pct_vs_average=None,
            pct_vs_last=None,
            warn_above_average_pct=limit,
            warnings=(PriceWarning.NO_HISTORY,),
        )
    warnings: list[PriceWarning] = []
    if current > stats.max:
        warnings.append(PriceWarning.ABOVE_MAX)
    average: Decimal | None = None
    if stats.sum_quantity != 0:
        average = round_money(EXACT.divide(stats.sum_amount, stats.sum_quantity))
        # Compared exactly (current > average * (1 + limit/100)), not via the rounded figures.
        lhs = EXACT.multiply(EXACT.multiply(current, stats.sum_quantity), _HUNDRED)
        rhs = EXACT.multiply(stats.sum_amount, EXACT.add(_HUNDRED, limit))
        if lhs > rhs:
            warnings.append(PriceWarning.ABOVE_AVERAGE)
    return PriceContext(
        material_code=line.material_code,
        unit_price=current,
        count=stats.count,
        min=stats.min,
        max=stats.max,
        average=average,
        last_price=stats.last_price,
        last_at=stats.last_at,
        last_supplier=stats.last_supplier,
        pct_vs_average=_pct(current, stats.sum_amount, stats.sum_quantity),
        pct_vs_last=_pct(current, stats.last_price, Decimal(1)),
        warn_above_average_pct=limit,
        warnings=tuple(warnings),
    )

"""View models: what an approver sees of a document, built from the core's request."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from approvals.models import CodeName, OrderLine, Person, PurchaseOrder, StockAlert
from approvals.ports import InstanceRequest
from approvals.prices import PriceContext, line_amount


@dataclass(frozen=True)
class PriceView:
    """One line's price context (CONTRACT section 5); `warnings` are `PriceWarning` values."""

    count: int
    min: Decimal | None
    max: Decimal | None
    average: Decimal | None
    last_price: Decimal | None
    last_at: dt.datetime | None
    last_supplier: str | None
    pct_vs_average: Decimal | None
    pct_vs_last: Decimal | None
    threshold: Decimal
    warnings: tuple[str, ...]

    @classmethod
    def of(cls, ctx: PriceContext) -> PriceView:
        """The view of a computed price context."""
        return cls(
            count=ctx.count,
            min=ctx.min,
            max=ctx.max,
            average=_display_average(ctx),
            last_price=ctx.last_price,
            last_at=ctx.last_at,
            last_supplier=ctx.last_supplier,
            pct_vs_average=ctx.pct_vs_average,
            pct_vs_last=ctx.pct_vs_last,
            threshold=ctx.warn_above_average_pct,
            warnings=tuple(str(w) for w in ctx.warnings),
        )


def _places(value: Decimal | None) -> int:
    """Decimal places a price is written with, trailing zeros ignored."""
    if value is None:
        return 0
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _display_average(ctx: PriceContext) -> Decimal | None:
    """The weighted average as precise as the prices it averages (at least 2 places).

    It is a quotient, so it has no exact decimal form: 276.666667 reads worse than 276.67.
    """
    if ctx.average is None:
        return None
    places = max(2, *(_places(p) for p in (ctx.min, ctx.max, ctx.last_price, ctx.unit_price)))
    return ctx.average.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class LineView:
    """One purchase-order line with its price context (None when none was computed)."""

    no: int
    material_code: str
    material_name: str
    spec: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    price: PriceView | None

    @property
    def material(self) -> str:
        """Code and name: `M-001 硬质合金刀片`."""
        return f"{self.material_code} {self.material_name}".strip()


@dataclass(frozen=True)
class OrderView:
    """A purchase-order revision as the approval form shows it."""

    doc_no: str
    reference: str
    supplier: str
    buyer: str
    department: str
    currency: str
    total: Decimal
    expected_date: dt.date | None
    remark: str
    lines: tuple[LineView, ...]

    @property
    def warned_lines(self) -> tuple[LineView, ...]:
        """Lines whose price carries at least one warning."""
        return tuple(line for line in self.lines if line.price and line.price.warnings)


@dataclass(frozen=True)
class ReplenishmentView:
    """A below-safety-stock purchase request as the approval form shows it."""

    doc_no: str
    reference: str
    material: str
    unit: str
    warehouse: str
    on_hand: Decimal
    safety_stock: Decimal
    reorder_qty: Decimal
    preferred_supplier: str
    requester: str


def code_name(value: CodeName | None) -> str:
    """`杭州某某五金有限公司（S001）`, or the bare code when there is no name."""
    if value is None:
        return ""
    return f"{value.name}（{value.code}）" if value.name else value.code


def person(value: Person) -> str:
    """`张三（u1001）`, or the bare ERP user when there is no name."""
    return f"{value.name}（{value.erp_user}）" if value.name else value.erp_user


def _contexts(lines: Sequence[OrderLine], prices: Sequence[PriceContext]) -> list[PriceView | None]:
    """Price contexts come one per line in order; if they do not, match them by material."""
    if len(prices) == len(lines) and all(
        p.material_code == line.material_code for p, line in zip(prices, lines, strict=True)
    ):
        return [PriceView.of(p) for p in prices]
    by_code = {p.material_code: p for p in prices}
    return [
        PriceView.of(by_code[ln.material_code]) if ln.material_code in by_code else None
        for ln in lines
    ]


def order_view(request: InstanceRequest) -> OrderView:
    """The view of a purchase-order request."""
    order = request.document
    if not isinstance(order, PurchaseOrder):
        raise TypeError(f"{request.doc_no} is not a purchase order")
    contexts = _contexts(order.lines, request.prices)
    lines = tuple(
        LineView(
            no=line.line_no,
            material_code=line.material_code,
            material_name=line.material_name,
            spec=line.spec,
            unit=line.unit,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount
            if line.amount is not None
            else line_amount(line.unit_price, line.quantity),
            price=price,
        )
        for line, price in zip(order.lines, contexts, strict=True)
    )
    return OrderView(
        doc_no=order.doc_no,
        reference=request.reference,
        supplier=code_name(order.supplier),
        buyer=person(order.buyer),
        department=code_name(order.department),
        currency=order.currency,
        total=order.total_amount,
        expected_date=order.expected_date,
        remark=order.remark,
        lines=lines,
    )


def replenishment_view(request: InstanceRequest) -> ReplenishmentView:
    """The view of a replenishment request."""
    alert = request.document
    if not isinstance(alert, StockAlert):
        raise TypeError(f"{request.doc_no} is not a stock alert")
    return ReplenishmentView(
        doc_no=request.doc_no,
        reference=request.reference,
        material=f"{alert.material_code} {alert.material_name}".strip(),
        unit=alert.unit,
        warehouse=alert.warehouse,
        on_hand=alert.on_hand,
        safety_stock=alert.safety_stock,
        reorder_qty=alert.reorder_qty,
        preferred_supplier=code_name(alert.preferred_supplier),
        requester=person(alert.requester),
    )

"""Purchase prices from submitted orders: one point per (order, item), quantity-weighted."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from zoneinfo import ZoneInfo

from approvals.db.price_repo import PriceRow
from erp_adapter.erpnext.client import FrappeClient
from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.erpnext.feed import ITEM_FIELDS, TAX_FIELDS, children, heads_after
from erp_adapter.erpnext.mapping import day_start_utc, line, money, to_utc
from erp_adapter.native.base import Cursor, PricePoint

_FIELDS = ("name", "modified", "supplier", "currency", "transaction_date")


async def since(
    client: FrappeClient, config: ErpnextConfig, after: Cursor, limit: int, zone: ZoneInfo
) -> list[PricePoint]:
    """Points of submitted orders with (modified, name) after the cursor.

    An order's points share its cursor, so an order is never split across calls: a call
    returns whole orders, at most `limit` points unless the first order alone has more.
    """
    filters: list[list[object]] = [["docstatus", "=", 1]]
    if config.company:
        filters.append(["company", "=", config.company])
    heads = await heads_after(client, _FIELDS, filters, after, limit, zone)
    names = [str(h["name"]) for h in heads]
    items = await children(client, "Purchase Order Item", [*ITEM_FIELDS, "item_tax_rate"], names)
    taxes = await children(client, "Purchase Taxes and Charges", TAX_FIELDS, names)
    points: list[PricePoint] = []
    for head in heads:
        name = str(head["name"])
        mine = _points(head, items.get(name, []), taxes.get(name, []), config, zone)
        if points and len(points) + len(mine) > limit:
            break
        points.extend(mine)
    return points


def _points(
    head: dict[str, object],
    items: Sequence[dict[str, object]],
    taxes: Sequence[dict[str, object]],
    config: ErpnextConfig,
    zone: ZoneInfo,
) -> list[PricePoint]:
    """Lines of one order aggregated per item: total quantity, quantity-weighted price."""
    totals: dict[str, tuple[Decimal, Decimal]] = {}
    for item in items:
        row = line(dict(item), [dict(t) for t in taxes], config)
        qty, value = totals.get(row.material_code, (Decimal(0), Decimal(0)))
        totals[row.material_code] = (qty + row.quantity, value + row.unit_price * row.quantity)
    cursor = (to_utc(head["modified"], zone), str(head["name"]))
    ordered_at = day_start_utc(head["transaction_date"], zone)
    return [
        PricePoint(
            cursor=cursor,
            row=PriceRow(
                material_code=code,
                supplier_code=str(head["supplier"]),
                unit_price=money(value / qty) if qty else Decimal(0),
                currency=str(head.get("currency") or "CNY"),
                quantity=qty,
                ordered_at=ordered_at,
                doc_no=str(head["name"]),
                source="erp",
            ),
        )
        for code, (qty, value) in sorted(totals.items())
    ]

"""Stock against safety stock, the price feed, and requisitions for approved replenishments."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from approvals.db.price_repo import PriceRow
from approvals.errors import Permanent
from approvals.models import Person, StockAlert
from approvals.ports import WriteBack
from erp_adapter.kingdee.client import KingdeeClient
from erp_adapter.kingdee.config import KingdeeConfig
from erp_adapter.kingdee.orders import (
    PO_FORM,
    after_filter,
    decimal,
    fid_key,
    parse_local,
    quote,
)
from erp_adapter.native.base import Cursor, PricePoint, StockLevel

REQ_FORM = "PUR_Requisition"
_PRICE_SCALE = Decimal("0.000001")


def _in(field: str, values: Sequence[str]) -> str:
    return f"{field} in ({','.join(quote(v) for v in values)})"


class FeedReader:
    """The reads and writes beyond purchase orders themselves."""

    def __init__(self, config: KingdeeConfig, client: KingdeeClient) -> None:
        self.config = config
        self.client = client
        self.tz = ZoneInfo(config.timezone)

    async def stock_levels(self) -> list[StockLevel]:
        """BD_MATERIAL with 启用安全库存 vs STK_Inventory summed per material and warehouse."""
        org = quote(self.config.org_number)
        materials = await self.client.query_all(
            "BD_MATERIAL",
            [
                "FNumber",
                "FName",
                "FBaseUnitId.FName",
                "FSafeStock",
                "FEconReOrderQty",
                "FStockId.FNumber",
            ],
            f"FIsEnableSafeStock = '1' and FUseOrgId.FNumber = {org} and FDocumentStatus = 'C' "
            "and FForbidStatus = 'A'",
            "FNumber ASC",
            self.config.page_size,
        )
        where = f"FStockOrgId.FNumber = {org}"
        if self.config.warehouses:
            where += " and " + _in("FStockId.FNumber", self.config.warehouses)
        inventory = await self.client.query_all(
            "STK_Inventory",
            ["FMaterialId.FNumber", "FStockId.FNumber", "FBaseQty"],
            where,
            "FMaterialId.FNumber ASC, FStockId.FNumber ASC",
            self.config.page_size,
        )
        on_hand: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for material, stock, qty in inventory:
            per = on_hand[str(material)]
            per[str(stock)] = per.get(str(stock), Decimal(0)) + decimal(qty)
        requester = Person(erp_user=self.config.requester)
        out: list[StockLevel] = []
        for number, name, unit, safe, reorder, default_stock in materials:
            stocks = set(on_hand.get(str(number), {}))
            if default_stock:
                stocks.add(str(default_stock))
            if self.config.warehouses:
                stocks &= set(self.config.warehouses)
            for stock in sorted(stocks):
                alert = StockAlert(
                    material_code=str(number),
                    material_name=str(name or ""),
                    unit=str(unit or ""),
                    warehouse=stock,
                    on_hand=on_hand.get(str(number), {}).get(stock, Decimal(0)),
                    safety_stock=decimal(safe),
                    reorder_qty=decimal(reorder),
                    requester=requester,
                )
                out.append(StockLevel(alert=alert))
        return out

    async def prices_since(self, after: Cursor, limit: int) -> list[PricePoint]:
        """Whole orders only: the points of one order share its cursor, so none is split."""
        field = self.config.price_cursor
        where = (
            f"FDocumentStatus = 'C' and FCancelStatus = 'A' and FPurchaseOrgId.FNumber = "
            f"{quote(self.config.org_number)} and {after_filter(field, after, self.tz)}"
        )
        heads = await self.client.query(
            PO_FORM, ["FID"], where, f"{field} ASC, FID ASC", 0, max(1, limit)
        )
        if not heads:
            return []
        fids = [int(row[0]) for row in heads]
        fields = ["FID", "FBillNo", "FDate", field, "FSupplierId.FNumber", "FSettleCurrId.FCode"]
        fields += ["FMaterialId.FNumber", "FQty", self.config.price_field]
        rows = await self.client.query_all(
            PO_FORM,
            fields,
            f"FID in ({','.join(map(str, fids))}) and FDocumentStatus = 'C'",
            "FID ASC, FPOOrderEntry_FSeq ASC",
            self.config.page_size,
        )
        per_order: dict[int, list[list[Any]]] = defaultdict(list)
        for row in rows:
            per_order[int(row[0])].append(row)
        points: list[PricePoint] = []
        for fid in fids:
            order_points = self._points(per_order.get(fid, []))
            if points and len(points) + len(order_points) > limit:
                break
            points.extend(order_points)
        return points

    def _points(self, rows: list[list[Any]]) -> list[PricePoint]:
        if not rows:
            return []
        _, doc_no, ordered, stamp, supplier, currency = rows[0][:6]
        at = parse_local(stamp, self.tz)
        ordered_at = parse_local(ordered, self.tz)
        if at is None or ordered_at is None:
            raise Permanent(f"Kingdee order {doc_no} has no {self.config.price_cursor} or FDate")
        totals: dict[str, tuple[Decimal, Decimal]] = {}
        for row in rows:
            material, qty, price = str(row[6]), decimal(row[7]), decimal(row[8])
            q, value = totals.get(material, (Decimal(0), Decimal(0)))
            totals[material] = (q + qty, value + qty * price)
        cursor = (at, fid_key(int(rows[0][0])))
        out: list[PricePoint] = []
        for material, (qty, value) in totals.items():
            if qty <= 0:
                continue
            point = PriceRow(
                material_code=material,
                supplier_code=str(supplier),
                unit_price=(value / qty).quantize(_PRICE_SCALE),
                currency=str(currency or "CNY").upper(),
                quantity=qty,
                ordered_at=ordered_at,
                doc_no=str(doc_no),
                source="erp",
            )
            out.append(PricePoint(cursor=cursor, row=point))
        return out

    async def create_requisition(self, result: WriteBack) -> str:
        """Find the requisition carrying the key in FNote, else Save one; then Submit and Audit."""
        if not result.material_code or not result.warehouse or result.quantity is None:
            raise Permanent(f"replenishment {result.doc_no} lacks material, warehouse or quantity")
        key = result.idempotency_key
        found = await self.client.query(
            REQ_FORM,
            ["FBillNo", "FDocumentStatus"],
            f"FNote = {quote(key)} and FCancelStatus = 'A'",
            "FID ASC",
            0,
            1,
        )
        if found:
            number, status = str(found[0][0]), str(found[0][1])
        else:
            number, status = await self._save(result), "A"
        if self.config.audit_requisitions:
            # A repeat resumes a create that stopped half-way (saved but not submitted/audited).
            if status in ("Z", "A", "D"):
                await self.client.operate("Submit", REQ_FORM, {"Numbers": [number], "Ids": ""})
                status = "B"
            if status == "B":
                data = {"Numbers": [number], "Ids": "", "IsVerifyProcInst": "true"}
                await self.client.operate("Audit", REQ_FORM, data)
        return number

    async def _save(self, result: WriteBack) -> str:
        org = {"FNumber": self.config.org_number}
        today = dt.datetime.now(self.tz).strftime("%Y-%m-%d")
        model = {
            "FBillTypeID": {"FNumber": self.config.requisition_bill_type},
            "FRequestType": "Material",
            "FApplicationDate": today,
            "FApplicationOrgId": org,
            "FNote": result.idempotency_key,
            "FEntity": [
                {
                    "FMaterialId": {"FNumber": result.material_code},
                    "FReqQty": str(result.quantity),
                    "FStockId": {"FNumber": result.warehouse},
                    "FPurchaseOrgId": org,
                    "FRequireOrgId": org,
                    "FReceiveOrgId": org,
                }
            ],
        }
        saved = await self.client.operate(
            "Save", REQ_FORM, {"Model": model, "IsDeleteEntry": "true"}
        )
        number = saved.get("Number")
        if not number:
            raise Permanent(f"Kingdee saved a requisition without returning its number: {saved}")
        return str(number)

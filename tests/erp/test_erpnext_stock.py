"""ERPNext stock levels, Material Requests and price history through the adapter."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from approvals.errors import Permanent
from erp_adapter.simulators import SimLine
from tests.erp.test_erpnext_support import EPOCH, SHANGHAI, decision, order, running


async def test_stock_levels_join_reorder_levels_bins_and_default_suppliers() -> None:
    async with running() as (sim, adapter):
        sim.set_stock("M-001", "WH1", Decimal(40), Decimal(100), Decimal(200))
        sim.set_stock("M-002", "WH2", Decimal(500), Decimal(100), Decimal(50))
        sim.set_default_supplier("M-001", "S001")
        levels = await adapter.stock_levels()
    low, fine = levels
    assert (low.alert.material_code, low.alert.warehouse, low.low) == ("M-001", "WH1", True)
    assert (low.alert.on_hand, low.alert.safety_stock, low.alert.reorder_qty) == (
        Decimal(40), Decimal(100), Decimal(200),
    )  # fmt: skip
    assert (low.alert.material_name, low.alert.unit) == ("Steel plate", "Kg")
    assert low.alert.preferred_supplier is not None
    assert low.alert.preferred_supplier.name == "Shanghai Steel Co."
    assert low.alert.requester.erp_user == "u1001"
    assert (fine.alert.material_code, fine.low, fine.alert.preferred_supplier) == (
        "M-002", False, None,
    )  # fmt: skip


async def test_stock_filters_warehouse_company_and_measure() -> None:
    async with running(warehouses=["WH1", "WH9"], stock_measure="projected", company="Demo Co") as (
        sim,
        adapter,
    ):
        sim.set_stock("M-001", "WH1", Decimal(40), Decimal(100), Decimal(200))
        sim.set_bin("M-001", "WH1", Decimal(40), Decimal(240))  # 200 on order already
        sim.set_stock("M-002", "WH2", Decimal(5), Decimal(100), Decimal(50))
        sim.add_warehouse("WH9", company="Other Co")
        sim.set_stock("M-002", "WH9", Decimal(5), Decimal(100), Decimal(50))
        [level] = await adapter.stock_levels()
    assert (level.alert.material_code, level.alert.warehouse) == ("M-001", "WH1")
    assert level.alert.on_hand == Decimal(240) and not level.low


async def test_requisition_is_created_once_per_key_and_submitted() -> None:
    async with running() as (sim, adapter):
        result = decision("M-001@WH1", key="rp-7", material_code="M-001", warehouse="WH1",
                          quantity=Decimal(200))  # fmt: skip
        sim.add_warehouse("WH1")
        first = await adapter.create_requisition(result)
        again = await adapter.create_requisition(result)
        [stored] = sim.requisitions()
    assert first == again == stored["name"] and first.startswith("MAT-MR-")
    assert stored["title"] == "approval-bridge:rp-7:1"
    assert (stored["material_request_type"], stored["docstatus"], stored["status"]) == (
        "Purchase", 1, "Pending",
    )  # fmt: skip
    [item] = stored["items"]
    assert (item["item_code"], item["qty"], item["warehouse"]) == ("M-001", 200.0, "WH1")


async def test_a_requisition_left_in_draft_is_submitted_not_duplicated() -> None:
    async with running() as (sim, adapter):
        sim.add_warehouse("WH1")
        result = decision("M-002@WH1", key="rp-8", material_code="M-002", warehouse="WH1",
                          quantity=Decimal(5))  # fmt: skip
        sim.flow.insert(
            "bridge@example.com",
            "Material Request",
            {
                "material_request_type": "Purchase",
                "schedule_date": "2026-12-31",
                "title": "approval-bridge:rp-8:1",
                "items": [{"item_code": "M-002", "qty": 5, "warehouse": "WH1"}],
            },
        )
        name = await adapter.create_requisition(result)
        [stored] = sim.requisitions()
    assert name == stored["name"] and stored["docstatus"] == 1


async def test_requisition_without_material_is_permanent() -> None:
    async with running() as (_sim, adapter):
        with pytest.raises(Permanent, match="lacks material"):
            await adapter.create_requisition(decision("x"))


async def test_prices_aggregate_per_order_and_item_and_page_by_whole_orders() -> None:
    async with running() as (sim, adapter):
        sim.freeze_clock(dt.datetime(2026, 11, 20, 9, 0, tzinfo=SHANGHAI))
        old = sim.add_history("M-001", "S001", Decimal("10.00"), Decimal(100), dt.date(2026, 5, 1))
        sim.freeze_clock(dt.datetime(2026, 11, 21, 9, 0, tzinfo=SHANGHAI))
        lines = [
            SimLine("M-001", Decimal(10), Decimal("10")),
            SimLine("M-001", Decimal(30), Decimal("14")),
            SimLine("M-002", Decimal(1000), Decimal("0.5")),
        ]
        mixed = sim.submit_order("S001", "u1001", lines)
        waiting = order(sim)
        native = await adapter.order(mixed)
        assert native is not None
        await adapter.approve(native, decision(mixed))
        points = await adapter.prices_since(EPOCH, 10)
        first = await adapter.prices_since(EPOCH, 1)
        rest = await adapter.prices_since(first[-1].cursor, 1)
    assert [(p.row.doc_no, p.row.material_code) for p in points] == [
        (old, "M-001"), (mixed, "M-001"), (mixed, "M-002"),
    ]  # fmt: skip
    assert waiting not in {p.row.doc_no for p in points}
    history = points[0].row
    assert (history.unit_price, history.quantity, history.source) == (
        Decimal("11.3"), Decimal(100), "erp",
    )  # fmt: skip
    # midnight in Shanghai is 16:00 UTC the day before
    assert history.ordered_at == dt.datetime(2026, 4, 30, 16, 0, tzinfo=dt.UTC)
    steel = points[1].row
    # (10 x 10 + 30 x 14) / 40 = 13 net, 14.69 with 13 % VAT
    assert (steel.quantity, steel.unit_price) == (Decimal(40), Decimal("14.69"))
    assert [p.row.doc_no for p in first] == [old]
    # one order's points are never split across calls, even past `limit`
    assert [p.row.material_code for p in rest] == ["M-001", "M-002"]

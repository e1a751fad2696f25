"""The Odoo adapter against the simulator over loopback: every `NativeErp` method and the quirks."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from approvals.errors import Permanent, Retryable
from approvals.models import ApproverAction, Decision, DocType
from approvals.ports import WriteBack
from erp_adapter.native.base import NativeErp, OrderStatus, PricePoint
from erp_adapter.odoo import OdooAdapter, OdooConfig, build, parse_hint
from erp_adapter.simulators import SimLine
from erp_adapter.simulators.odoo import OdooSimulator

START: tuple[dt.datetime, str] = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "")


@pytest.fixture(params=[17, 19])
def version(request: pytest.FixtureRequest) -> int:
    """JSON-RPC (17) and JSON-2 (19)."""
    return int(request.param)


@pytest.fixture
async def sim(version: int) -> AsyncIterator[OdooSimulator]:
    """A running simulator with materials and a vendor price for M001."""
    simulator = OdooSimulator(version=version)
    simulator.add_material("M001", "Steel bolt M8")
    simulator.add_material("M002", "Copper wire", unit="kg")
    simulator.add_seller("M001", "S001", Decimal("2.40"))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The one HTTP session the adapter is given."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def _adapter(
    sim: OdooSimulator, session: aiohttp.ClientSession, timeout_s: float = 5.0, **overrides: Any
) -> OdooAdapter:
    section = sim.bridge_section() | overrides
    config = OdooConfig.model_validate(section | {"api_key": sim.api_key})
    return build(config, session, timeout_s)


@pytest.fixture
def adapter(sim: OdooSimulator, session: aiohttp.ClientSession) -> OdooAdapter:
    """The adapter configured from the simulator's own section and key."""
    return _adapter(sim, session)


def _write_back(doc_no: str, decision: Decision, **extra: Any) -> WriteBack:
    return WriteBack(
        approval_id="A1",
        doc_type=DocType.PURCHASE_ORDER,
        doc_no=doc_no,
        revision=1,
        decision=decision,
        process_instance_id="proc-1",
        decided_at=dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC),
        approvers=(ApproverAction(user_id="m1", name="Wang Fang", result="agree", comment="ok"),),
        **extra,
    )


def test_adapter_is_a_native_erp(sim: OdooSimulator, session: aiohttp.ClientSession) -> None:
    erp: NativeErp = _adapter(sim, session)
    assert erp.name == "odoo"


def test_build_needs_the_api_key(sim: OdooSimulator, session: aiohttp.ClientSession) -> None:
    config = OdooConfig.model_validate(sim.bridge_section())
    with pytest.raises(ValueError, match="APPROVAL_BRIDGE__ERP__ODOO__API_KEY"):
        build(config, session, 5.0)


async def test_orders_map_to_the_canonical_order(sim: OdooSimulator, adapter: OdooAdapter) -> None:
    doc_no = sim.submit_order(
        "S001",
        "u1001",
        [SimLine("M001", Decimal(10), Decimal("2.5")), SimLine("M002", Decimal(3), Decimal(7))],
        tax=True,
    )
    sim.order_record(doc_no)["notes"] = "<p>Urgent &amp; fragile</p>"
    [native] = await adapter.orders_since(START, 10)
    order = native.canonical
    assert native.doc_no == doc_no and native.status is OrderStatus.PENDING
    assert native.key == f"{sim.order_id(doc_no):012d}"
    assert native.modified.tzinfo is dt.UTC
    assert (order.buyer.erp_user, order.buyer.name) == ("u1001", "Li Lei")
    assert (order.supplier.code, order.supplier.name) == ("S001", "Shenzhen Parts Co.")
    assert order.currency == "CNY"
    assert order.total_amount == Decimal("51.98")  # (25 + 21) * 1.13
    assert order.remark == "Urgent & fragile"
    first, second = order.lines
    assert (first.line_no, first.material_code, first.material_name) == (1, "M001", "Steel bolt M8")
    assert first.unit_price == Decimal("2.825") and first.tax_rate == Decimal("0.13")
    assert first.amount == Decimal("28.25")
    assert (second.unit, second.quantity) == ("kg", Decimal(3))
    assert order.expected_date is not None
    untaxed = _adapter(sim, adapter.client._session, unit_price="price_unit")
    fresh = await untaxed.order(doc_no)
    assert fresh is not None
    assert fresh.canonical.lines[0].unit_price == Decimal("2.5")
    assert fresh.canonical.total_amount == Decimal(46)


async def test_same_second_orders_page_in_id_order(
    sim: OdooSimulator, adapter: OdooAdapter
) -> None:
    base = dt.datetime(2026, 11, 25, 8, 0, 0)  # noqa: DTZ001 (the simulator's naive UTC)
    micros = iter([900_000, 100_000, 500_000, 300_000, 700_000])
    sim.set_clock(lambda: base)
    names = [
        sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(i + 1), Decimal(1))])
        for i in range(5)
    ]
    for name in names:  # stored microseconds out of id order, all within one second
        sim.order_record(name)["write_date"] = base.replace(microsecond=next(micros))
    seen: list[str] = []
    cursor = START
    for _ in range(5):
        page = await adapter.orders_since(cursor, 2)
        if not page:
            break
        assert [o.key for o in page] == sorted(o.key for o in page)
        seen += [o.doc_no for o in page]
        cursor = (page[-1].modified, page[-1].key)
    assert seen == names
    assert await adapter.orders_since(cursor, 2) == []


async def test_a_change_while_pending_moves_and_changes(
    sim: OdooSimulator, adapter: OdooAdapter
) -> None:
    ticks = itertools.count()
    base = dt.datetime(2026, 11, 25, 8)  # noqa: DTZ001 (the simulator's naive UTC)
    sim.set_clock(lambda: base + dt.timedelta(seconds=next(ticks)))
    doc_no = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(2), Decimal(5))])
    [before] = await adapter.orders_since(START, 10)
    sim.change_order(doc_no, 0, Decimal(20))
    [after] = await adapter.orders_since((before.modified, before.key), 10)
    assert after.doc_no == doc_no and after.status is OrderStatus.PENDING
    assert after.modified > before.modified
    assert after.fingerprint() != before.fingerprint()
    assert after.canonical.total_amount == Decimal(100)


async def test_status_mapping(sim: OdooSimulator, adapter: OdooAdapter) -> None:
    states = {"draft": OrderStatus.OPEN, "sent": OrderStatus.OPEN}
    states |= {"to approve": OrderStatus.PENDING, "purchase": OrderStatus.APPROVED}
    states |= {"cancel": OrderStatus.REJECTED}
    if sim.version < 19:
        states["done"] = OrderStatus.APPROVED
    for state, expected in states.items():
        doc_no = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(1), Decimal(1))])
        sim.set_state(doc_no, state)
        native = await adapter.order(doc_no)
        assert native is not None and native.status is expected, state
    if sim.version >= 19:
        sim.set_state(doc_no, "purchase", locked=True)
        native = await adapter.order(doc_no)
        assert native is not None and native.status is OrderStatus.APPROVED
    assert await adapter.order("P99999") is None


async def test_approve_and_reject_act_and_note(sim: OdooSimulator, adapter: OdooAdapter) -> None:
    one = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(1), Decimal(1))])
    two = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(1), Decimal(1))])
    first, second = await adapter.order(one), await adapter.order(two)
    assert first is not None and second is not None
    await adapter.approve(first, _write_back(one, Decision.APPROVED))
    await adapter.reject(second, _write_back(two, Decision.REJECTED))
    assert (sim.order_state(one), sim.order_state(two)) == ("purchase", "cancel")
    assert sim.order_record(one)["date_approve"] is not None
    assert "Wang Fang agree: ok" in sim.messages(one)[0]
    assert "rejected" in sim.messages(two)[0]


async def test_reject_as_draft(sim: OdooSimulator, session: aiohttp.ClientSession) -> None:
    adapter = _adapter(sim, session, reject_action="draft")
    doc_no = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(1), Decimal(1))])
    native = await adapter.order(doc_no)
    assert native is not None
    await adapter.reject(native, _write_back(doc_no, Decision.REJECTED))
    assert sim.order_state(doc_no) == "draft"


async def test_ignored_approval_is_permanent(sim: OdooSimulator, adapter: OdooAdapter) -> None:
    doc_no = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(1), Decimal(1))])
    sim.set_groups(sim.login, "base.group_user", "purchase.group_purchase_user")
    native = await adapter.order(doc_no)
    assert native is not None
    with pytest.raises(Permanent, match="not a Purchase Manager"):
        await adapter.approve(native, _write_back(doc_no, Decision.APPROVED))
    assert sim.order_state(doc_no) == "to approve"
    assert sim.messages(doc_no) == []


async def test_cancel_refused_when_locked(sim: OdooSimulator, adapter: OdooAdapter) -> None:
    doc_no = sim.submit_order("S001", "u1001", [SimLine("M001", Decimal(1), Decimal(1))])
    native = await adapter.order(doc_no)
    assert native is not None
    sim.order_record(doc_no)["bills_posted"] = True
    with pytest.raises(Permanent, match="cancel the related vendor bills"):
        await adapter.reject(native, _write_back(doc_no, Decision.REJECTED))


async def test_requisition_is_idempotent(sim: OdooSimulator, adapter: OdooAdapter) -> None:
    sim.add_warehouse("SH", "Shanghai")
    result = _write_back(
        "R1", Decision.APPROVED, material_code="M001", warehouse="SH", quantity=Decimal(40)
    )
    first = await adapter.create_requisition(result)
    again = await adapter.create_requisition(result)
    assert first == again
    [rfq] = sim.requisitions()
    assert rfq["name"] == first and rfq["state"] == "draft"
    assert (rfq["origin"], rfq["supplier"], rfq["warehouse"]) == ("A1:1", "S001", "SH")
    assert rfq["lines"] == [{"material_code": "M001", "quantity": Decimal(40)}]
    other = _write_back(
        "R2", Decision.APPROVED, material_code="M002", warehouse="WH", quantity=Decimal(1)
    )
    other = WriteBack(**{**other.__dict__, "approval_id": "A2"})
    with pytest.raises(Permanent, match="no default_supplier"):
        await _adapter(sim, adapter.client._session, default_supplier=None).create_requisition(
            other
        )
    assert await adapter.create_requisition(other) != first  # default supplier S001


async def test_prices_aggregate_per_order_and_material(
    sim: OdooSimulator, adapter: OdooAdapter
) -> None:
    sim.add_history("M001", "S001", Decimal(2), Decimal(10), dt.date(2026, 3, 1))
    doc_no = sim.submit_order(
        "S001",
        "u1001",
        [
            SimLine("M001", Decimal(10), Decimal(3)),
            SimLine("M001", Decimal(30), Decimal(4)),
            SimLine("M002", Decimal(1), Decimal(9)),
        ],
    )
    assert await adapter.prices_since(START, 10) != []
    pending_only = [p.row.doc_no for p in await adapter.prices_since(START, 10)]
    assert doc_no not in pending_only
    sim.set_state(doc_no, "purchase")
    points: list[PricePoint] = []
    cursor = START
    while page := await adapter.prices_since(cursor, 1):
        points += page
        cursor = page[-1].cursor
    rows = {(p.row.doc_no, p.row.material_code): p.row for p in points}
    assert set(rows) == {(pending_only[0], "M001"), (doc_no, "M001"), (doc_no, "M002")}
    merged = rows[(doc_no, "M001")]
    assert merged.quantity == Decimal(40) and merged.unit_price == Decimal("3.75")
    assert merged.source == "erp" and merged.supplier_code == "S001"
    history = rows[(pending_only[0], "M001")]
    assert history.ordered_at == dt.datetime(2026, 3, 1, 2, tzinfo=dt.UTC)  # 10:00 Shanghai


async def test_stock_levels_and_filters(sim: OdooSimulator, session: aiohttp.ClientSession) -> None:
    sim.set_stock("M001", "WH", Decimal(5), Decimal(20), Decimal(50))
    sim.set_stock("M002", "SH", Decimal(30), Decimal(10), Decimal(5))
    levels = {lvl.alert.warehouse: lvl for lvl in await _adapter(sim, session).stock_levels()}
    low = levels["WH"]
    assert low.low and low.alert.material_code == "M001" and low.alert.reorder_qty == Decimal(50)
    assert low.alert.preferred_supplier is not None
    assert low.alert.preferred_supplier.code == "S001"
    assert low.alert.requester.erp_user == "u1001"
    assert not levels["SH"].low and levels["SH"].alert.unit == "kg"
    only_sh = await _adapter(sim, session, warehouses=["SH"]).stock_levels()
    assert [lvl.alert.warehouse for lvl in only_sh] == ["SH"]
    rule = next(
        p for p in sim.store.table("stock.warehouse.orderpoint").values() if p["warehouse_id"] == 1
    )
    rule["qty_forecast"], rule["qty_multiple"] = Decimal(25), Decimal(12)
    by_hand = await _adapter(
        sim, session, stock_measure="on_hand", warehouses=["WH"]
    ).stock_levels()
    forecast = await _adapter(sim, session, warehouses=["WH"]).stock_levels()
    assert by_hand[0].low and by_hand[0].alert.reorder_qty == Decimal(60)  # 55 -> 5 dozen
    assert not forecast[0].low
    with pytest.raises(Permanent, match="no warehouse with code XX"):
        await _adapter(sim, session, warehouses=["XX"]).stock_levels()


async def test_outage_and_slowness_are_retryable(
    sim: OdooSimulator, session: aiohttp.ClientSession
) -> None:
    adapter = _adapter(sim, session, timeout_s=0.1)
    sim.faults.fail_next = [502]
    with pytest.raises(Retryable, match="502"):
        await adapter.orders_since(START, 10)
    sim.faults.delay_s = 0.3
    with pytest.raises(Retryable, match="timed out"):
        await adapter.orders_since(START, 10)
    sim.faults.delay_s = 0.0
    await sim.stop()
    with pytest.raises(Retryable, match="unreachable"):
        await adapter.orders_since(START, 10)


async def test_credentials_refused_are_permanent(
    sim: OdooSimulator, session: aiohttp.ClientSession
) -> None:
    config = OdooConfig.model_validate(sim.bridge_section() | {"api_key": "wrong"})
    with pytest.raises(Permanent, match="refused"):
        await build(config, session, 5.0).orders_since(START, 10)
    adapter = _adapter(sim, session)
    assert await adapter.orders_since(START, 10) == []
    sim.revoke_api_key()  # revoked after login: the adapter logs in again once, then gives up
    with pytest.raises(Permanent, match="refused"):
        await adapter.orders_since(START, 10)
    sim.restore_api_key()
    assert await adapter.orders_since(START, 10) == []


async def test_check_reports_a_missing_right(sim: OdooSimulator, adapter: OdooAdapter) -> None:
    first = await adapter.check()
    assert all(item.ok for item in first), first
    sim.set_groups(sim.login, "base.group_user", "purchase.group_purchase_user")
    items = {item.what: item for item in await adapter.check()}
    manager = items["Odoo: approve purchase orders"]
    assert not manager.ok and "Purchase to Administrator" in manager.detail
    assert items["Odoo: create requisitions (RFQs)"].ok


async def test_check_reports_refused_login(
    sim: OdooSimulator, session: aiohttp.ClientSession
) -> None:
    config = OdooConfig.model_validate(sim.bridge_section() | {"api_key": "wrong"})
    items = await build(config, session, 5.0).check()
    assert [(i.what, i.ok) for i in items] == [("Odoo reachable", True), ("Odoo login", False)]


def test_parse_hint() -> None:
    body = (
        b'{"_action": "Bridge(#12)", "_id": 42, "_model": "purchase.order", "state": "to approve"}'
    )
    assert parse_hint(body) == "purchase.order"
    assert parse_hint(b'{"_id": 42}') is None
    assert parse_hint(b"not json") is None
    assert parse_hint(b"[1]") is None

"""The Kingdee adapter against the simulator over loopback: every NativeErp method and fault."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from approvals.errors import Permanent, Retryable
from approvals.models import ApproverAction, Decision, DocType
from approvals.ports import WriteBack
from erp_adapter.kingdee import KingdeeAdapter, KingdeeConfig, build
from erp_adapter.native.base import NativeErp, NativeOrder, OrderStatus
from erp_adapter.simulators import SimLine
from erp_adapter.simulators.kingdee import KingdeeSimulator

EPOCH = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "")
Make = Callable[..., KingdeeAdapter]


@pytest.fixture
async def sim() -> AsyncIterator[KingdeeSimulator]:
    """A started simulator with three materials."""
    simulator = KingdeeSimulator()
    for code, name in [("M001", "电阻 10K"), ("M002", "电容 1uF"), ("M003", "螺丝 M3")]:
        simulator.add_material(code, name)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The one shared client session."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make(sim: KingdeeSimulator, http: aiohttp.ClientSession) -> Make:
    """Build an adapter from the simulator's section and secret, with overrides."""

    def _make(timeout_s: float = 5.0, **overrides: Any) -> KingdeeAdapter:
        secret = next(iter(sim.bridge_env().values()))
        section = {**sim.bridge_section(), "app_secret": SecretStr(secret), **overrides}
        return build(KingdeeConfig(**section), http, timeout_s)

    return _make


def _result(order: NativeOrder, decision: Decision = Decision.APPROVED) -> WriteBack:
    action = ApproverAction(user_id="dt01", name="王经理", result="agree", comment="价格合理")
    return WriteBack(
        approval_id="a1",
        doc_type=DocType.PURCHASE_ORDER,
        doc_no=order.doc_no,
        revision=1,
        decision=decision,
        process_instance_id="pi-1",
        decided_at=dt.datetime.now(dt.UTC),
        approvers=(action,),
    )


def _replenish(key: str, qty: str = "50") -> WriteBack:
    return WriteBack(
        approval_id=key,
        doc_type=DocType.REPLENISHMENT,
        doc_no=f"STOCK-M001-CK001-{key}",
        revision=1,
        decision=Decision.APPROVED,
        process_instance_id="pi-2",
        decided_at=dt.datetime.now(dt.UTC),
        approvers=(),
        material_code="M001",
        warehouse="CK001",
        quantity=Decimal(qty),
    )


def _line(code: str = "M001", qty: str = "10", price: str = "1.13") -> SimLine:
    return SimLine(code, Decimal(qty), Decimal(price))


async def test_orders_since_maps_the_canonical_order(sim: KingdeeSimulator, make: Make) -> None:
    """Sorted by (modified, key); every field mapped, decimals exact, times aware UTC."""
    first = sim.submit_order("S001", "u1001", [_line(), _line("M002", "3", "0.5"), _line()])
    second = sim.submit_order("S002", "u1002", [_line("M003", "1", "99.99")])
    adapter: NativeErp = make()
    orders = await adapter.orders_since(EPOCH, 10)
    assert [o.doc_no for o in orders] == [first, second]
    order = orders[0]
    assert order.status is OrderStatus.PENDING and order.modified.tzinfo is dt.UTC
    assert order.key < orders[1].key and order.key.isdigit()
    po = order.canonical
    assert (po.buyer.erp_user, po.buyer.name) == ("u1001", "李雷")
    assert (po.supplier.code, po.supplier.name) == ("S001", "华东电子元件有限公司")
    assert po.department is not None and po.department.code == "D01"
    assert po.currency == "CNY" and po.total_amount == Decimal("24.10")
    line = po.lines[1]
    assert (line.line_no, line.material_code, line.material_name, line.unit) == (
        2,
        "M002",
        "电容 1uF",
        "个",
    )
    assert line.quantity == Decimal(3) and line.unit_price == Decimal("0.5")
    assert line.tax_rate == Decimal("0.13") and line.amount == Decimal("1.5")
    assert po.expected_date is not None
    local = sim.store.by_number("PUR_PurchaseOrder", first).modified
    assert order.modified == local.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))


async def test_same_modified_time_pages_by_fid(sim: KingdeeSimulator, make: Make) -> None:
    """Five orders stamped the same millisecond, read two at a time: each once, in FID order."""
    sim.freeze_clock(dt.datetime(2026, 3, 1, 1, 30, 15, 120000, tzinfo=dt.UTC))
    numbers = [sim.submit_order("S001", "u1001", [_line()]) for _ in range(5)]
    sim.freeze_clock(None)
    adapter = make()
    cursor, seen = EPOCH, []
    for _ in range(4):
        page = await adapter.orders_since(cursor, 2)
        assert len(page) <= 2
        seen += [o.doc_no for o in page]
        if page:
            cursor = (page[-1].modified, page[-1].key)
    assert seen == numbers
    assert cursor[0] == dt.datetime(2026, 3, 1, 1, 30, 15, 120000, tzinfo=dt.UTC)
    queries = [d for op, d in sim.faults.calls if op == "executebillquery" and d]
    heads = [q for q in queries if q["FieldKeys"] == "FID,FModifyDate"]
    assert heads and all("FModifyDate >" in q["FilterString"] for q in heads)
    assert all(q["Limit"] == 2 for q in heads)


async def test_change_while_pending_is_a_new_revision(sim: KingdeeSimulator, make: Make) -> None:
    """A buyer changes a submitted order: it comes back after the cursor, fingerprint moved."""
    number = sim.submit_order("S001", "u1001", [_line()])
    adapter = make()
    (before,) = await adapter.orders_since(EPOCH, 10)
    sim.change_order(number, 0, Decimal(25))
    (after,) = await adapter.orders_since((before.modified, before.key), 10)
    assert after.key == before.key and after.modified > before.modified
    assert after.status is OrderStatus.PENDING
    assert after.fingerprint() != before.fingerprint()
    assert after.canonical.lines[0].quantity == Decimal(25)
    assert await adapter.orders_since((after.modified, after.key), 10) == []


async def test_status_of_every_native_state(sim: KingdeeSimulator, make: Make) -> None:
    """Z/A/D open, B pending, C approved, 作废 rejected."""
    store = sim.store
    adapter = make()
    draft = sim.create_order("S001", "u1001", [_line()])
    store.by_number("PUR_PurchaseOrder", draft).status = "Z"
    created = sim.create_order("S001", "u1001", [_line()])
    pending = sim.submit_order("S001", "u1001", [_line()])
    audited = sim.add_history("M001", "S001", Decimal(1), Decimal(1), dt.date(2026, 1, 5))
    reaudit = sim.add_history("M001", "S001", Decimal(1), Decimal(1), dt.date(2026, 1, 6))
    store.unaudit(store.by_number("PUR_PurchaseOrder", reaudit))
    voided = sim.create_order("S001", "u1001", [_line()])
    store.void(store.by_number("PUR_PurchaseOrder", voided))
    expected = {
        draft: OrderStatus.OPEN,
        created: OrderStatus.OPEN,
        pending: OrderStatus.PENDING,
        audited: OrderStatus.APPROVED,
        reaudit: OrderStatus.OPEN,
        voided: OrderStatus.REJECTED,
    }
    for number, status in expected.items():
        order = await adapter.order(number)
        assert order is not None and order.status is status, number
    assert await adapter.order("CGDD999999") is None
    assert await adapter.order("x' or FID > '0") is None


async def test_approve_and_reject(sim: KingdeeSimulator, make: Make) -> None:
    """Audit moves B to C; 撤销 moves B to A; with void_on_reject the order is 作废."""
    adapter = make()
    a, b, c = (sim.submit_order("S001", "u1001", [_line()]) for _ in range(3))
    orders = {o.doc_no: o for o in await adapter.orders_since(EPOCH, 10)}
    await adapter.approve(orders[a], _result(orders[a]))
    assert sim.order_state(a) == "C"
    await adapter.reject(orders[b], _result(orders[b], Decision.REJECTED))
    assert sim.order_state(b) == "A"
    voiding = make(void_on_reject=True)
    await voiding.reject(orders[c], _result(orders[c], Decision.REJECTED))
    assert sim.order_state(c) == "cancelled"
    fresh = await adapter.order(c)
    assert fresh is not None and fresh.status is OrderStatus.REJECTED


async def test_workflow_mode_writes_the_disposition(sim: KingdeeSimulator, make: Make) -> None:
    """With a running workflow, Audit is refused with advice; WorkflowAudit carries the note."""
    a, b = (sim.submit_order("S001", "u1001", [_line()]) for _ in range(2))
    sim.start_workflow(a)
    sim.start_workflow(b)
    plain = make()
    order_a = await plain.order(a)
    assert order_a is not None
    with pytest.raises(Permanent, match="workflow = true"):
        await plain.approve(order_a, _result(order_a))
    workflow = make(workflow=True)
    await workflow.approve(order_a, _result(order_a))
    bill = sim.store.by_number("PUR_PurchaseOrder", a)
    assert bill.status == "C" and "王经理(agree: 价格合理)" in bill.disposition
    order_b = await workflow.order(b)
    assert order_b is not None
    await workflow.reject(order_b, _result(order_b, Decision.REJECTED))
    assert sim.order_state(b) == "D"
    assert sim.store.by_number("PUR_PurchaseOrder", b).disposition.startswith("钉钉审批驳回")


async def test_silently_ignored_audit_is_permanent(sim: KingdeeSimulator, make: Make) -> None:
    """多级审核: Audit succeeds but the bill stays B; the re-read turns that into Permanent."""
    sim.set_audit_levels(2)
    number = sim.submit_order("S001", "u1001", [_line()])
    adapter = make()
    order = await adapter.order(number)
    assert order is not None
    with pytest.raises(Permanent, match="多级审核"):
        await adapter.approve(order, _result(order))
    assert sim.order_state(number) == "B"


async def test_missing_right_is_permanent(sim: KingdeeSimulator, make: Make) -> None:
    """No 审核 right: the refusal names it."""
    sim.deny("PUR_PurchaseOrder", "audit")
    number = sim.submit_order("S001", "u1001", [_line()])
    adapter = make()
    order = await adapter.order(number)
    assert order is not None
    with pytest.raises(Permanent, match="lacks this right"):
        await adapter.approve(order, _result(order))


async def test_requisition_is_idempotent(sim: KingdeeSimulator, make: Make) -> None:
    """Twice with one key: one audited requisition with FNote = the key, the same number."""
    adapter = make()
    first = await adapter.create_requisition(_replenish("r1"))
    again = await adapter.create_requisition(_replenish("r1"))
    other = await adapter.create_requisition(_replenish("r2", "7.5"))
    assert first == again != other
    reqs = sim.requisitions()
    assert len(reqs) == 2
    assert reqs[0]["FNote"] == "r1:1" and reqs[0]["FDocumentStatus"] == "C"
    assert (reqs[0]["FMaterialId.FNumber"], reqs[0]["FStockId.FNumber"]) == ("M001", "CK001")
    assert reqs[1]["FReqQty"] == 7.5


async def test_requisition_resumes_a_half_done_create(sim: KingdeeSimulator, make: Make) -> None:
    """Saved but not submitted (the audit right was missing): a repeat finishes it, no new one."""
    sim.deny("PUR_Requisition", "submit")
    adapter = make()
    with pytest.raises(Permanent):
        await adapter.create_requisition(_replenish("r9"))
    sim.forms.denied.clear()
    number = await adapter.create_requisition(_replenish("r9"))
    assert [r["FBillNo"] for r in sim.requisitions()] == [number]
    assert sim.requisitions()[0]["FDocumentStatus"] == "C"


async def test_prices_aggregate_per_order_and_material(sim: KingdeeSimulator, make: Make) -> None:
    """Quantity-weighted price per (order, material); only audited, not voided; whole orders."""
    old = sim.add_history("M002", "S002", Decimal("2.5"), Decimal(4), dt.date(2026, 1, 2))
    number = sim.submit_order(
        "S001", "u1001", [_line("M001", "10", "1.00"), _line("M001", "30", "2.00"), _line("M002")]
    )
    sim.submit_order("S001", "u1001", [_line()])  # pending: no price
    adapter = make()
    order = await adapter.order(number)
    assert order is not None
    await adapter.approve(order, _result(order))
    points = await adapter.prices_since(EPOCH, 100)
    assert [(p.row.doc_no, p.row.material_code) for p in points] == [
        (old, "M002"),
        (number, "M001"),
        (number, "M002"),
    ]
    m001 = points[1].row
    assert (m001.quantity, m001.unit_price, m001.supplier_code) == (
        Decimal(40),
        Decimal("1.75"),
        "S001",
    )
    assert m001.source == "erp" and m001.currency == "CNY"
    assert points[0].row.ordered_at == dt.datetime(2026, 1, 1, 16, 0, tzinfo=dt.UTC)
    first_page = await adapter.prices_since(EPOCH, 2)
    assert [p.row.doc_no for p in first_page] == [old]  # the next order has 2 points
    rest = await adapter.prices_since(first_page[-1].cursor, 2)
    assert [p.row.doc_no for p in rest] == [number, number]
    assert await adapter.prices_since(rest[-1].cursor, 2) == []


async def test_stock_levels_and_filters(sim: KingdeeSimulator, make: Make) -> None:
    """Safety-stock materials per warehouse, summed; the warehouse filter applies."""
    sim.set_stock("M001", "CK001", Decimal(5), Decimal(10), Decimal(100))
    sim.set_stock("M001", "CK002", Decimal(20), Decimal(10), Decimal(100))
    levels = await make().stock_levels()
    got = {(s.alert.material_code, s.alert.warehouse): s for s in levels}
    assert set(got) == {("M001", "CK001"), ("M001", "CK002")}
    low = got[("M001", "CK001")]
    assert low.low and low.alert.on_hand == Decimal(5) and low.alert.reorder_qty == Decimal(100)
    assert low.alert.requester.erp_user == "u1001" and low.alert.unit == "个"
    assert not got[("M001", "CK002")].low
    filtered = await make(warehouses=["CK002"], requester="u1002").stock_levels()
    assert [(s.alert.warehouse, s.alert.requester.erp_user) for s in filtered] == [
        ("CK002", "u1002")
    ]
    assert await make(org_number="200").stock_levels() == []


async def test_session_mode_logs_in_again_once(sim: KingdeeSimulator, make: Make) -> None:
    """LoginBySign; an expired session is renewed once; lost again right away is Retryable."""
    sim.submit_order("S001", "u1001", [_line()])
    adapter = make(auth="session")
    assert len(await adapter.orders_since(EPOCH, 10)) == 1
    sim.expire_sessions()
    assert len(await adapter.orders_since(EPOCH, 10)) == 1
    logins = [op for op, _ in sim.faults.calls if op == "loginbysign"]
    assert len(logins) == 2
    sim.expire_sessions()
    sim.forget_sessions()
    with pytest.raises(Retryable, match="again"):
        await adapter.orders_since(EPOCH, 10)


async def test_transport_faults_are_retryable(sim: KingdeeSimulator, make: Make) -> None:
    """HTTP 5xx and a slow server are Retryable; a closed port too."""
    adapter = make(timeout_s=0.3)
    sim.fail_next(1, 503)
    with pytest.raises(Retryable, match="503"):
        await adapter.orders_since(EPOCH, 10)
    sim.set_delay(1.0)
    with pytest.raises(Retryable, match="timed out"):
        await adapter.order("CGDD000001")
    sim.set_delay(0)
    dead = make(server_url="http://127.0.0.1:9/k3cloud")
    with pytest.raises(Retryable, match="unreachable"):
        await dead.order("CGDD000001")


async def test_bad_credentials_are_permanent(sim: KingdeeSimulator, make: Make) -> None:
    """A wrong secret: refused in both modes, Permanent."""
    for auth in ("signature", "session"):
        adapter = make(auth=auth, app_secret=SecretStr("0" * 32))
        with pytest.raises(Permanent) as caught:
            await adapter.orders_since(EPOCH, 10)
        assert not isinstance(caught.value, Retryable)
        assert "签名" in str(caught.value), auth


async def test_check_reports_rights(sim: KingdeeSimulator, make: Make) -> None:
    """All green, then a missing 审核 right is named with what to do."""
    items = await make().check()
    assert items and all(i.ok for i in items), items
    sim.deny("PUR_PurchaseOrder", "audit")
    items = await make().check()
    failed = [i for i in items if not i.ok]
    assert [i.what for i in failed] == ["audit purchase orders (采购订单 审核)"]
    assert "grant" in failed[0].detail
    bad = await make(app_secret=SecretStr("0" * 32)).check()
    assert [i.ok for i in bad] == [True, False] and "APP_SECRET" in bad[1].detail


def test_build_needs_the_secret(sim: KingdeeSimulator, http: aiohttp.ClientSession) -> None:
    """No secret in the environment: a clear ValueError."""
    config = KingdeeConfig(**sim.bridge_section())
    with pytest.raises(ValueError, match="APPROVAL_BRIDGE__ERP__KINGDEE__APP_SECRET"):
        build(config, http, 5.0)
    with pytest.raises(ValueError, match="time zone"):
        KingdeeConfig(**sim.bridge_section(), timezone="Mars/Base")

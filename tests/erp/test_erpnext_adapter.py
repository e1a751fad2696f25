"""The ERPNext adapter against the simulator: polling, mapping, status, approve and reject."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from approvals.errors import Permanent
from erp_adapter.native.base import OrderStatus
from erp_adapter.simulators.erpnext.docflow import Transition
from tests.erp.test_erpnext_support import EPOCH, SHANGHAI, decision, order, running


async def test_orders_map_to_canonical_purchase_orders() -> None:
    async with running() as (sim, adapter):
        sim.freeze_clock(dt.datetime(2026, 11, 25, 10, 0, 0, 250000, tzinfo=SHANGHAI))
        name = order(sim)
        [native] = await adapter.orders_since(EPOCH, 10)
    assert (native.key, native.doc_no, native.status) == (name, name, OrderStatus.PENDING)
    # site-local Asia/Shanghai time, reported without a zone, is 8 hours ahead of UTC
    assert native.modified == dt.datetime(2026, 11, 25, 2, 0, 0, 250000, tzinfo=dt.UTC)
    po = native.canonical
    assert (po.buyer.erp_user, po.buyer.name) == ("u1001", "Li Lei")
    assert (po.supplier.code, po.supplier.name) == ("S001", "Shanghai Steel Co.")
    assert (po.currency, po.total_amount, po.expected_date) == (
        "CNY", Decimal("141.25"), dt.date(2026, 12, 9),
    )  # fmt: skip
    [line] = po.lines
    assert (line.line_no, line.material_code, line.material_name, line.unit) == (
        1, "M-001", "Steel plate", "Kg",
    )  # fmt: skip
    # the line's rate is net; the order's 13 % VAT (On Net Total) makes the inclusive price
    assert (line.quantity, line.unit_price, line.tax_rate, line.amount) == (
        Decimal(10), Decimal("14.125"), Decimal("0.13"), Decimal("141.25"),
    )  # fmt: skip
    assert all(isinstance(v, Decimal) for v in (line.quantity, line.unit_price, po.total_amount))


async def test_net_rate_when_configured_and_remark_from_a_custom_field() -> None:
    async with running(unit_price="rate", remark_field="custom_remark") as (sim, adapter):
        sim.add_custom_field("Purchase Order", "custom_remark")
        name = order(sim)
        sim.edit_order(name, custom_remark="urgent for line 3")
        native = await adapter.order(name)
    assert native is not None
    assert native.canonical.lines[0].unit_price == Decimal("12.5")
    assert native.canonical.remark == "urgent for line 3"


async def test_same_instant_orders_page_by_name_without_loss_or_repeat() -> None:
    async with running() as (sim, adapter):
        sim.freeze_clock(dt.datetime(2026, 11, 25, 9, 0, tzinfo=SHANGHAI))
        first = order(sim)
        sim.freeze_clock(dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI))
        same = [order(sim) for _ in range(11)]  # names 00002..00012: 00010+ sort after 00009
        sim.freeze_clock(dt.datetime(2026, 11, 25, 11, 0, tzinfo=SHANGHAI))
        last = order(sim)
        seen: list[str] = []
        cursor = EPOCH
        calls = 0
        while True:
            page = await adapter.orders_since(cursor, 3)
            calls += 1
            if not page:
                break
            assert len(page) <= 3
            seen += [o.key for o in page]
            cursor = (page[-1].modified, page[-1].key)
    assert seen == [first, *same, last]
    assert calls == 6


async def test_a_change_while_pending_moves_modified_and_the_fingerprint() -> None:
    async with running() as (sim, adapter):
        sim.freeze_clock(dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI))
        name = order(sim)
        [before] = await adapter.orders_since(EPOCH, 10)
        assert await adapter.orders_since((before.modified, before.key), 10) == []
        sim.freeze_clock(dt.datetime(2026, 11, 25, 10, 30, tzinfo=SHANGHAI))
        sim.change_order(name, 0, Decimal(12))
        [after] = await adapter.orders_since((before.modified, before.key), 10)
    assert after.key == name and after.status is OrderStatus.PENDING
    assert after.modified - before.modified == dt.timedelta(minutes=30)
    assert after.fingerprint() != before.fingerprint()
    assert after.canonical.lines[0].quantity == Decimal(12)


async def test_every_workflow_state_maps() -> None:
    async with running() as (sim, adapter):
        names = [order(sim) for _ in range(5)]
        sim.edit_order(names[0], workflow_state="Draft")
        await adapter.approve((await _read(adapter, names[2])), decision(names[2]))
        await adapter.reject((await _read(adapter, names[3])), decision(names[3], False))
        await adapter.approve((await _read(adapter, names[4])), decision(names[4]))
        sim.flow.cancel("Administrator", "Purchase Order", names[4])
        found = {o.key: o.status for o in await adapter.orders_since(EPOCH, 10)}
        states = [sim.order_state(n) for n in names]
    assert [found[n] for n in names] == [
        OrderStatus.OPEN, OrderStatus.PENDING, OrderStatus.APPROVED,
        OrderStatus.REJECTED, OrderStatus.REJECTED,
    ]  # fmt: skip
    assert states == ["Draft", "Pending Approval", "Approved", "Rejected", "Cancelled"]


async def _read(adapter: object, name: str):  # type: ignore[no-untyped-def]
    from erp_adapter.erpnext import ErpnextAdapter

    assert isinstance(adapter, ErpnextAdapter)
    native = await adapter.order(name)
    assert native is not None
    return native


async def test_approve_and_reject_through_the_workflow_leave_comments() -> None:
    async with running() as (sim, adapter):
        yes, no = order(sim), order(sim)
        await adapter.approve(await _read(adapter, yes), decision(yes))
        await adapter.reject(await _read(adapter, no), decision(no, False, key="ap-2"))
        assert (sim.order_state(yes), sim.order_state(no)) == ("Approved", "Rejected")
        assert sim.site.get("Purchase Order", yes)["docstatus"] == 1
        assert (await _read(adapter, yes)).status is OrderStatus.APPROVED
        assert (await _read(adapter, no)).status is OrderStatus.REJECTED
        [approved_note] = sim.comments(yes)
        [rejected_note] = sim.comments(no)
    assert "王经理" in approved_note and "价格合理" in approved_note and "ap-1:1" in approved_note
    assert rejected_note.startswith("Rejected") and "价格偏高" in rejected_note


async def test_without_workflow_drafts_wait_submit_approves_and_a_tag_rejects() -> None:
    async with running(workflow=False) as (sim, adapter):
        yes, no = order(sim), order(sim)
        assert {o.status for o in await adapter.orders_since(EPOCH, 10)} == {OrderStatus.PENDING}
        await adapter.approve(await _read(adapter, yes), decision(yes))
        await adapter.reject(await _read(adapter, no), decision(no, False))
        assert sim.order_state(yes) == "To Receive and Bill"
        assert sim.order_state(no) == "Rejected"
        doc = sim.site.get("Purchase Order", no)
        assert (doc["docstatus"], doc["_user_tags"]) == (0, ",Rejected")  # the draft stays
        assert (await _read(adapter, no)).status is OrderStatus.REJECTED
        assert len(sim.comments(no)) == 1


async def test_an_action_erpnext_accepts_without_moving_the_order_is_permanent() -> None:
    async with running() as (sim, adapter):
        name = order(sim)
        sim.flow.ignore_workflow_actions = True
        with pytest.raises(Permanent, match="left it 'Pending Approval'"):
            await adapter.approve(await _read(adapter, name), decision(name))
        # a second approval level: Approve leads to another waiting state
        sim.flow.ignore_workflow_actions = False
        assert sim.flow.workflow is not None
        sim.flow.workflow.states["Pending Director"] = 0
        sim.flow.workflow.transitions[1] = Transition(
            "Pending Approval", "Approve", "Pending Director", "Purchase Manager"
        )
        with pytest.raises(Permanent, match="another approval level"):
            await adapter.approve(await _read(adapter, name), decision(name))
        assert sim.comments(name) == []


async def test_missing_role_and_self_approval_are_explained() -> None:
    async with running() as (sim, adapter):
        name = order(sim)
        sim.set_roles("bridge", {"Purchase User", "Stock User", "Approval Bridge"})
        with pytest.raises(Permanent, match=r"Not a valid Workflow Action.*Purchase Manager"):
            await adapter.approve(await _read(adapter, name), decision(name))
        sim.set_roles("bridge", {"Purchase Manager", "Purchase User", "Approval Bridge"})
        assert sim.flow.workflow is not None
        sim.flow.workflow.transitions[1].allow_self_approval = False
        sim.site.get("Purchase Order", name)["owner"] = "bridge@example.com"
        with pytest.raises(Permanent, match="Self approval is not allowed"):
            await adapter.approve(await _read(adapter, name), decision(name))
        assert sim.order_state(name) == "Pending Approval"


async def test_unknown_order_is_none() -> None:
    async with running() as (_sim, adapter):
        assert await adapter.order("PUR-ORD-1999-00001") is None

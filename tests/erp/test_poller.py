"""The poller and the native write-back, over real databases, with an in-memory ERP behind them.

The ERP here is the `NativeErp` interface held in memory (each adapter's HTTP side is tested
against its simulator); what is under test is how polled documents become canonical events,
revisions and write-backs, and that a crash or a repeat changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import select

from approvals.config import IntakeConfig
from approvals.db import repo, tables
from approvals.db.engine import Database
from approvals.db.price_repo import PriceRow, load_stats
from approvals.errors import Conflict, Permanent
from approvals.intake import IntakeService
from approvals.models import (
    ApproverAction,
    CodeName,
    Decision,
    DocType,
    OrderLine,
    Person,
    PurchaseOrder,
    StockAlert,
)
from approvals.ports import SystemClock, WriteBack
from approvals.states import State
from erp_adapter.native.base import (
    CheckItem,
    Cursor,
    NativeErp,
    NativeOrder,
    OrderStatus,
    PricePoint,
    StockLevel,
)
from erp_adapter.native.poller import Poller, PollSettings
from erp_adapter.native.writeback import NativeWriteBack

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def _order(doc_no: str, quantity: str = "10") -> PurchaseOrder:
    line = OrderLine(
        line_no=1,
        material_code="M-001",
        quantity=Decimal(quantity),
        unit_price=Decimal("12.00"),
    )
    return PurchaseOrder(
        doc_no=doc_no,
        revision=0,
        buyer=Person(erp_user="u1001", name="张三"),
        supplier=CodeName(code="S001", name="Supplier"),
        total_amount=Decimal("12.00") * Decimal(quantity),
        lines=[line],
    )


class MemoryErp:
    """A `NativeErp` held in memory; `ignore_approvals` plays an ERP that silently does nothing."""

    name = "memerp"

    def __init__(self) -> None:
        self.orders: dict[str, NativeOrder] = {}
        self.levels: list[StockLevel] = []
        self.prices: list[PricePoint] = []
        self.requisitions: dict[str, str] = {}
        self.ignore_approvals = False
        self.calls: list[str] = []
        self._tick = 0

    def tick(self) -> dt.datetime:
        """The ERP's clock, a second later than the last change."""
        self._tick += 1
        return T0 + dt.timedelta(seconds=self._tick)

    def put(self, doc_no: str, status: OrderStatus, quantity: str = "10") -> NativeOrder:
        """Create or change an order, as a user of the ERP would."""
        key = (
            f"{len(self.orders) + 1:08d}" if doc_no not in self.orders else self.orders[doc_no].key
        )
        native = NativeOrder(key, doc_no, self.tick(), status, _order(doc_no, quantity))
        self.orders[doc_no] = native
        return native

    def move(self, doc_no: str, status: OrderStatus) -> None:
        self.orders[doc_no] = replace(self.orders[doc_no], status=status, modified=self.tick())

    async def orders_since(self, after: Cursor, limit: int) -> Sequence[NativeOrder]:
        found = sorted(
            (o for o in self.orders.values() if (o.modified, o.key) > after),
            key=lambda o: (o.modified, o.key),
        )
        return found[:limit]

    async def order(self, doc_no: str) -> NativeOrder | None:
        return self.orders.get(doc_no)

    async def approve(self, order: NativeOrder, result: WriteBack) -> None:
        self.calls.append(f"approve {order.doc_no}")
        if not self.ignore_approvals:
            self.move(order.doc_no, OrderStatus.APPROVED)

    async def reject(self, order: NativeOrder, result: WriteBack) -> None:
        self.calls.append(f"reject {order.doc_no}")
        self.move(order.doc_no, OrderStatus.REJECTED)

    async def stock_levels(self) -> Sequence[StockLevel]:
        return list(self.levels)

    async def create_requisition(self, result: WriteBack) -> str:
        key = result.idempotency_key
        return self.requisitions.setdefault(key, f"REQ-{len(self.requisitions) + 1}")

    async def prices_since(self, after: Cursor, limit: int) -> Sequence[PricePoint]:
        return [p for p in self.prices if p.cursor > after][:limit]

    async def check(self) -> Sequence[CheckItem]:
        return [CheckItem("memory", True)]

    async def close(self) -> None:
        return None


@pytest.fixture
async def world(db: Database) -> AsyncIterator[tuple[MemoryErp, Poller, Database]]:
    erp = MemoryErp()
    _typed: NativeErp = erp
    intake = IntakeService(db, SystemClock(), IntakeConfig())
    async with intake.running():
        yield erp, Poller(erp, db, intake, SystemClock(), PollSettings(page=2)), db


async def _revisions(db: Database, doc_no: str) -> list[tuple[int, State]]:
    async with db.read() as conn:
        rows = await repo.revisions_of(conn, doc_no)
    return sorted((r.revision, r.state) for r in rows)


async def test_pending_orders_become_approvals_once(
    world: tuple[MemoryErp, Poller, Database],
) -> None:
    erp, poller, db = world
    for n in range(5):
        erp.put(f"PO-{n}", OrderStatus.PENDING)
    erp.put("PO-DRAFT", OrderStatus.OPEN)
    first = await poller.poll()
    assert first.events == {"purchase_order.submitted:accepted": 5}
    assert first.orders_read == 6  # read in pages of two
    again = await poller.poll()
    assert again.events == {}
    for n in range(5):
        assert await _revisions(db, f"PO-{n}") == [(1, State.RECEIVED)]
    assert await _revisions(db, "PO-DRAFT") == []


async def test_a_change_while_pending_is_a_new_revision_and_leaving_cancels(
    world: tuple[MemoryErp, Poller, Database],
) -> None:
    erp, poller, db = world
    erp.put("PO-1", OrderStatus.PENDING)
    await poller.poll()
    erp.put("PO-1", OrderStatus.PENDING, quantity="20")
    report = await poller.poll()
    assert report.events == {"purchase_order.changed:accepted": 1}
    assert await _revisions(db, "PO-1") == [(1, State.SUPERSEDED), (2, State.RECEIVED)]
    erp.move("PO-1", OrderStatus.OPEN)  # sent back to draft in the ERP
    report = await poller.poll()
    assert report.events == {"purchase_order.cancelled:accepted": 1}
    assert (await _revisions(db, "PO-1"))[-1] == (2, State.CANCELLED)
    erp.move("PO-1", OrderStatus.PENDING)  # submitted again, unchanged: approvers must see it
    await poller.poll()
    assert (await _revisions(db, "PO-1"))[-1] == (3, State.RECEIVED)


async def test_a_poll_repeated_after_a_crash_sends_the_same_events(
    world: tuple[MemoryErp, Poller, Database],
) -> None:
    erp, poller, db = world
    erp.put("PO-1", OrderStatus.PENDING)
    await poller.poll()
    # The crash: intake committed, the poller's record and cursor did not.
    async with db.write() as conn:
        await conn.execute(tables.erp_document.delete())
        await conn.execute(tables.erp_cursor.delete())
    report = await poller.poll()
    assert report.events == {"purchase_order.submitted:duplicate": 1}
    assert await _revisions(db, "PO-1") == [(1, State.RECEIVED)]


async def test_numbering_resumes_after_intakes_revision(
    world: tuple[MemoryErp, Poller, Database],
) -> None:
    erp, poller, db = world
    erp.put("PO-1", OrderStatus.PENDING)
    await poller.poll()
    erp.put("PO-1", OrderStatus.PENDING, quantity="20")
    await poller.poll()
    async with db.write() as conn:  # the poller's record lost (restored from an old backup)
        await conn.execute(tables.erp_document.delete())
    erp.put("PO-1", OrderStatus.PENDING, quantity="30")
    report = await poller.poll()
    assert report.events == {
        "purchase_order.submitted:stale_revision": 1,
        "purchase_order.changed:accepted": 1,
    }
    assert (await _revisions(db, "PO-1"))[-1] == (3, State.RECEIVED)


async def test_stock_alerts_once_per_fall_below_safety(
    world: tuple[MemoryErp, Poller, Database],
) -> None:
    erp, poller, _ = world

    def level(on_hand: str) -> StockLevel:
        alert = StockAlert(
            material_code="M-001",
            warehouse="WH1",
            on_hand=Decimal(on_hand),
            safety_stock=Decimal("100"),
            reorder_qty=Decimal("500"),
            requester=Person(erp_user="u1001"),
        )
        return StockLevel(alert)

    erp.levels = [level("80")]
    assert (await poller.poll()).events == {"stock.below_safety:accepted": 1}
    erp.levels = [level("70")]
    assert (await poller.poll()).events == {}  # still the same shortage
    erp.levels = [level("150")]
    assert (await poller.poll()).events == {}
    erp.levels = [level("60")]
    assert (await poller.poll()).events == {"stock.below_safety:accepted": 1}


async def test_erp_prices_join_the_history(world: tuple[MemoryErp, Poller, Database]) -> None:
    erp, poller, db = world
    for n, price in enumerate(["10.00", "14.00", "12.00"]):
        at = T0 - dt.timedelta(days=10 - n)
        row = PriceRow("M-001", "S001", Decimal(price), "CNY", Decimal("5"), at, f"OLD-{n}", "erp")
        erp.prices.append(PricePoint((at, f"{n:08d}"), row))
    assert (await poller.poll()).prices == 3
    async with db.read() as conn:
        stats = await load_stats(conn, ["M-001"], T0 - dt.timedelta(days=365))
    assert (stats["M-001"].min, stats["M-001"].max) == (Decimal("10.00"), Decimal("14.00"))
    assert (stats["M-001"].count, stats["M-001"].last_price) == (3, Decimal("12.00"))


def _result(doc_no: str, revision: int, decision: Decision) -> WriteBack:
    return WriteBack(
        approval_id="a1",
        doc_type=DocType.PURCHASE_ORDER,
        doc_no=doc_no,
        revision=revision,
        decision=decision,
        process_instance_id="i1",
        decided_at=T0,
        approvers=(ApproverAction(user_id="dt-1", name="王五", result="agree", at=T0),),
    )


async def test_write_back_acts_once_and_only_on_what_approvers_saw(
    world: tuple[MemoryErp, Poller, Database],
) -> None:
    erp, poller, db = world
    writer = NativeWriteBack(erp, db, SystemClock())
    erp.put("PO-1", OrderStatus.PENDING)
    erp.put("PO-2", OrderStatus.PENDING)
    await poller.poll()
    receipt = await writer.write_back(_result("PO-1", 1, Decision.APPROVED))
    assert receipt.erp_ref == "PO-1"
    await writer.write_back(_result("PO-1", 1, Decision.APPROVED))  # a repeat after a crash
    assert erp.calls == ["approve PO-1"]
    assert (await poller.poll()).events == {}  # our own approval is no cancellation
    with pytest.raises(Conflict):
        await writer.write_back(_result("PO-1", 1, Decision.REJECTED))
    erp.put("PO-2", OrderStatus.PENDING, quantity="99")  # changed, not yet polled
    with pytest.raises(Conflict):
        await writer.write_back(_result("PO-2", 1, Decision.APPROVED))
    await poller.poll()
    with pytest.raises(Conflict):
        await writer.write_back(_result("PO-2", 1, Decision.APPROVED))
    erp.ignore_approvals = True
    with pytest.raises(Permanent, match="left PO-2 pending"):
        await writer.write_back(_result("PO-2", 2, Decision.APPROVED))


async def test_a_replenishment_raises_one_requisition(
    world: tuple[MemoryErp, Poller, Database],
) -> None:
    erp, _, db = world
    writer = NativeWriteBack(erp, db, SystemClock())
    result = replace(
        _result("RPL-1", 1, Decision.APPROVED),
        doc_type=DocType.REPLENISHMENT,
        material_code="M-001",
        warehouse="WH1",
        quantity=Decimal("500"),
    )
    first = await writer.write_back(result)
    second = await writer.write_back(result)
    assert first.erp_ref == second.erp_ref == "REQ-1"
    refused = await writer.write_back(replace(result, decision=Decision.REJECTED))
    assert refused.erp_ref is None
    assert len(erp.requisitions) == 1


async def test_a_change_within_the_same_second_is_a_new_revision(
    world: tuple[MemoryErp, Poller, Database],
) -> None:
    erp, poller, db = world
    first = erp.put("PO-1", OrderStatus.PENDING)
    await poller.poll()
    # Odoo reports write_date in whole seconds: a change in the same second keeps it.
    erp.orders["PO-1"] = replace(first, order=_order("PO-1", quantity="20"))
    assert (await poller.poll()).events == {"purchase_order.changed:accepted": 1}
    assert (await _revisions(db, "PO-1"))[-1] == (2, State.RECEIVED)


async def test_a_read_from_before_our_write_back_raises_nothing(
    world: tuple[MemoryErp, Poller, Database],
) -> None:
    erp, poller, db = world
    before = erp.put("PO-1", OrderStatus.PENDING)
    await poller.poll()
    await NativeWriteBack(erp, db, SystemClock()).write_back(_result("PO-1", 1, Decision.APPROVED))
    # A poll that read the order just before the approval, in the same second as it.
    erp.orders["PO-1"] = replace(before, modified=erp.orders["PO-1"].modified)
    assert (await poller.poll()).events == {}
    assert await _revisions(db, "PO-1") == [(1, State.RECEIVED)]


async def test_an_order_that_cannot_be_mapped_is_reported_and_raised_once_fixed(
    world: tuple[MemoryErp, Poller, Database],
) -> None:
    erp, poller, db = world
    erp.put("PO-1", OrderStatus.PENDING)
    await poller.poll()
    # Changed in the ERP into something the bridge cannot show (say, every line removed).
    erp.orders["PO-1"] = replace(
        erp.orders["PO-1"], order=None, problem="lines: too short", modified=erp.tick()
    )
    erp.put("PO-2", OrderStatus.PENDING)  # polling goes on past it
    report = await poller.poll()
    assert report.events == {
        "purchase_order.cancelled:accepted": 1,
        "purchase_order.submitted:accepted": 1,
    }
    assert (await poller.poll()).events == {}  # told once, not every poll
    async with db.read() as conn:
        rows = await conn.execute(select(tables.job.c.payload).where(tables.job.c.kind == "notify"))
        notices = [r.payload for r in rows]
    assert len(notices) == 1 and "lines: too short" in str(notices[0])
    assert (await _revisions(db, "PO-1"))[-1] == (1, State.CANCELLED)
    erp.put("PO-1", OrderStatus.PENDING, quantity="5")  # fixed in the ERP
    assert (await poller.poll()).events == {"purchase_order.changed:accepted": 1}
    assert (await _revisions(db, "PO-1"))[-1] == (2, State.RECEIVED)

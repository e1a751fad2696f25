"""Write-back to a native ERP: re-read the document, act only on the revision approvers saw."""

from __future__ import annotations

from approvals.db import erp_state
from approvals.db.engine import Database
from approvals.db.erp_state import Tracked
from approvals.errors import Conflict, Permanent
from approvals.models import Decision, DocType
from approvals.ports import Clock, WriteBack, WriteBackReceipt
from erp_adapter.native.base import NativeErp, NativeOrder, OrderStatus

_HOLDS = {
    Decision.APPROVED: frozenset({OrderStatus.APPROVED}),
    # Sent back to its buyer (Kingdee's CancelAssign, Odoo's button_draft) or voided: either way
    # the order is refused, and a buyer may change it and submit it again as a new revision.
    Decision.REJECTED: frozenset({OrderStatus.REJECTED, OrderStatus.OPEN}),
}


class NativeWriteBack:
    """`ErpWriteBack` for a native ERP; a repeat after a crash finds the work done."""

    def __init__(self, erp: NativeErp, db: Database, clock: Clock) -> None:
        self._erp = erp
        self._db = db
        self._clock = clock

    async def write_back(self, result: WriteBack) -> WriteBackReceipt:
        """Deliver one decision. Raises `Conflict`, `Permanent` or `Retryable`."""
        if result.doc_type is DocType.REPLENISHMENT:
            if result.decision is not Decision.APPROVED:
                return WriteBackReceipt()  # nothing to raise in the ERP for a refused need
            return WriteBackReceipt(erp_ref=await self._erp.create_requisition(result))
        order = await self._erp.order(result.doc_no)
        if order is None:
            raise Permanent(f"{self._erp.name} has no purchase order {result.doc_no}")
        async with self._db.read() as conn:
            known = await erp_state.tracked(conn, self._erp.name, [order.key])
        was = known.get(order.key)
        _check_revision(order, was, result)
        holds = _HOLDS[result.decision]
        if order.status not in holds:
            if order.status is not OrderStatus.PENDING:
                raise Conflict(
                    f"{order.doc_no} is {order.status.value} in {self._erp.name}, "
                    f"no longer waiting for approval"
                )
            if result.decision is Decision.APPROVED:
                await self._erp.approve(order, result)
            else:
                await self._erp.reject(order, result)
            after = await self._erp.order(result.doc_no)
            if after is None or after.status not in holds:
                now = "gone" if after is None else after.status.value
                raise Permanent(f"{self._erp.name} left {order.doc_no} {now} after the call")
            order = after
        assert was is not None  # _check_revision refused an untracked order
        await self._remember(order, was)
        return WriteBackReceipt(erp_ref=order.doc_no)

    async def _remember(self, order: NativeOrder, was: Tracked) -> None:
        """Record the decided state, so the poller takes it for ours, not for a cancellation."""
        decided = Tracked(
            order.key,
            order.doc_no,
            was.revision,
            was.fingerprint,
            order.status.value,
            max(order.modified, was.modified),
        )
        async with self._db.write() as conn:
            await erp_state.remember(conn, self._erp.name, [decided], self._clock.now())


def _check_revision(order: NativeOrder, was: Tracked | None, result: WriteBack) -> None:
    """Refuse (409-like) unless the ERP still holds what approvers saw of this revision."""
    if was is None:
        raise Permanent(f"{order.doc_no} was never polled from the ERP by this bridge")
    if was.revision != result.revision:
        raise Conflict(
            f"{order.doc_no} is at revision {was.revision}; the decision was for {result.revision}"
        )
    if order.fingerprint() != was.fingerprint:
        raise Conflict(f"{order.doc_no} changed in the ERP since revision {result.revision}")

"""`KingdeeAdapter`: the NativeErp of K3Cloud (polls FModifyDate; acts with Audit/撤销)."""

from __future__ import annotations

from collections.abc import Sequence

from approvals.errors import Permanent
from approvals.ports import WriteBack
from erp_adapter.kingdee.client import KingdeeClient, KingdeeRefused
from erp_adapter.kingdee.config import KingdeeConfig
from erp_adapter.kingdee.feeds import FeedReader
from erp_adapter.kingdee.orders import (
    PO_FORM,
    OrderReader,
    after_filter,
    key_fid,
    parse_local,
    quote,
)
from erp_adapter.kingdee.probe import run_checks
from erp_adapter.native.base import (
    CheckItem,
    Cursor,
    NativeOrder,
    OrderStatus,
    PricePoint,
    StockLevel,
)

_EXPLAIN = {
    2: "the integration user lacks this right on 采购订单 (grant it in 业务对象功能授权)",
    12: "K3Cloud does not allow it in the order's state",
}


def disposition(result: WriteBack) -> str:
    """The approvers' names, results and comments, for the ERP's 审批意见."""
    verdict = "同意" if result.decision == "approved" else "驳回"
    people = [
        f"{a.name or a.user_id}({a.result}{': ' + a.comment if a.comment else ''})"
        for a in result.approvers
    ]
    return f"钉钉审批{verdict}: " + "; ".join(people) if people else f"钉钉审批{verdict}"


class KingdeeAdapter:
    """Reads and acts on K3Cloud purchase orders, stock and requisitions."""

    name = "kingdee"

    def __init__(self, config: KingdeeConfig, client: KingdeeClient) -> None:
        self.config = config
        self.client = client
        self.reader = OrderReader(config)
        self.feeds = FeedReader(config, client)

    async def orders_since(self, after: Cursor, limit: int) -> Sequence[NativeOrder]:
        """Orders after (FModifyDate, FID): their ids first, then their entries for those ids."""
        tz = self.reader.tz
        where = f"{self.reader.org_filter()} and {after_filter('FModifyDate', after, tz)}"
        heads = await self.client.query(
            PO_FORM, ["FID", "FModifyDate"], where, "FModifyDate ASC, FID ASC", 0, limit
        )
        if not heads:
            return []
        fids = [int(row[0]) for row in heads]
        orders = await self._read(f"FID in ({','.join(map(str, fids))})")
        by_fid = {key_fid(o.key): o for o in orders}
        stamped = {int(row[0]): str(row[1]) for row in heads}
        out: list[NativeOrder] = []
        for fid in fids:
            order = by_fid.get(fid)
            # Changed (or deleted) between the two reads: a later poll sees it at its new time,
            # and keeping it here could move the cursor past orders not read yet.
            if order is None or order.modified != parse_local(stamped[fid], tz):
                continue
            out.append(order)
        return out

    async def _read(self, where: str) -> list[NativeOrder]:
        rows = await self.client.query_all(
            PO_FORM,
            self.reader.fields,
            f"{self.reader.org_filter()} and ({where})",
            "FID ASC, FPOOrderEntry_FSeq ASC",
            self.config.page_size,
        )
        return self.reader.build(rows)

    async def order(self, doc_no: str) -> NativeOrder | None:
        """One order by FBillNo, read fresh."""
        orders = await self._read(f"FBillNo = {quote(doc_no)}")
        return orders[0] if orders else None

    async def approve(self, order: NativeOrder, result: WriteBack) -> None:
        """Audit (or WorkflowAudit approve), then check the bill reached C (已审核)."""
        if self.config.workflow:
            await self._workflow(order, result, approval_type=1)
        else:
            data = {
                "CreateOrgId": 0,
                "Numbers": [order.doc_no],
                "Ids": "",
                "InterationFlags": "",
                "NetworkCtrl": "",
                "IsVerifyProcInst": "true",
                "IgnoreInterationFlag": "",
            }
            await self._operate("Audit", order, data)
        fresh = await self.order(order.doc_no)
        if fresh is None or fresh.status is not OrderStatus.APPROVED:
            state = "gone" if fresh is None else fresh.status.value
            raise Permanent(
                f"Kingdee accepted the approval of {order.doc_no} but the order is {state}, not "
                "audited (C): 多级审核 may need more levels, or an audit plug-in or workflow held "
                "it; finish it in K3Cloud or set workflow = true"
            )

    async def reject(self, order: NativeOrder, result: WriteBack) -> None:
        """撤销 (or WorkflowAudit 驳回), optionally 作废; then check it left B (审核中)."""
        if self.config.workflow:
            await self._workflow(order, result, approval_type=2)
        else:
            data = {"CreateOrgId": 0, "Numbers": [order.doc_no], "Ids": "", "NetworkCtrl": ""}
            await self._operate("CancelAssign", order, data)
        if self.config.void_on_reject:
            void = {"CreateOrgId": 0, "Numbers": [order.doc_no], "Ids": ""}
            await self._operate("ExcuteOperation:Cancel", order, void)
        fresh = await self.order(order.doc_no)
        wanted = OrderStatus.REJECTED if self.config.void_on_reject else OrderStatus.OPEN
        if fresh is None or fresh.status is not wanted:
            state = "gone" if fresh is None else fresh.status.value
            raise Permanent(
                f"Kingdee accepted the rejection of {order.doc_no} but the order is {state}, not "
                f"{wanted.value}: a workflow or plug-in kept it; handle it in K3Cloud"
            )

    async def _workflow(self, order: NativeOrder, result: WriteBack, approval_type: int) -> None:
        data = {
            "FormId": PO_FORM,
            "Ids": [],
            "Numbers": [order.doc_no],
            "UserId": 0,
            "UserName": self.config.workflow_user or self.config.username,
            "ApprovalType": approval_type,
            "ActionResultId": "",
            "PostId": 0,
            "PostNumber": "",
            "Disposition": disposition(result),
        }
        try:
            await self.client.call("WorkflowAudit", {"data": data})
        except KingdeeRefused as exc:
            raise Permanent(
                f"Kingdee WorkflowAudit of {order.doc_no} refused: {'; '.join(exc.messages)} "
                f"(does {data['UserName']} hold the pending assignment?)"
            ) from exc

    async def _operate(self, operation: str, order: NativeOrder, data: dict[str, object]) -> None:
        try:
            await self.client.operate(operation, PO_FORM, data)
        except KingdeeRefused as exc:
            why = _EXPLAIN.get(exc.msg_code, "")
            if any("工作流" in m for m in exc.messages):
                why = "a K3Cloud workflow runs on it: set workflow = true to use WorkflowAudit"
            raise Permanent(
                f"Kingdee refused {operation} of {order.doc_no}: {'; '.join(exc.messages)}"
                + (f" ({why})" if why else "")
            ) from exc

    async def stock_levels(self) -> Sequence[StockLevel]:
        """Materials with safety stock against STK_Inventory per warehouse."""
        return await self.feeds.stock_levels()

    async def create_requisition(self, result: WriteBack) -> str:
        """A PUR_Requisition with FNote = the idempotency key (looked up first)."""
        return await self.feeds.create_requisition(result)

    async def prices_since(self, after: Cursor, limit: int) -> Sequence[PricePoint]:
        """Audited, not voided order lines after the cursor, one point per (order, material)."""
        return await self.feeds.prices_since(after, limit)

    async def check(self) -> Sequence[CheckItem]:
        """Connectivity, login and the rights the bridge needs."""
        return await run_checks(self.config, self.client)

    async def close(self) -> None:
        """Nothing to release: the HTTP session is the caller's, sessions expire on their own."""

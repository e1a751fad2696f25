"""`ErpnextAdapter`: the `NativeErp` for ERPNext, polled through Frappe's REST API."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from approvals.errors import BridgeError, Permanent
from approvals.models import Person
from approvals.ports import WriteBack
from erp_adapter.erpnext import checks, prices, stock
from erp_adapter.erpnext.client import Doc, FrappeClient, FrappeError
from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.erpnext.feed import (
    ITEM_FIELDS,
    PO,
    TAX_FIELDS,
    Users,
    children,
    head_fields,
    heads_after,
)
from erp_adapter.erpnext.mapping import purchase_order, status_of, to_utc
from erp_adapter.native.base import (
    CheckItem,
    Cursor,
    NativeOrder,
    OrderStatus,
    PricePoint,
    StockLevel,
    unusable,
)

log = logging.getLogger(__name__)


def note(verb: str, result: WriteBack) -> str:
    """The Comment the bridge leaves on a document: who decided, what they said."""
    people = "; ".join(
        f"{a.name or a.user_id}: {a.result}" + (f" — {a.comment}" if a.comment else "")
        for a in result.approvers
    )
    who = people or "no approver recorded"
    return f"{verb} in DingTalk ({who}). [approval-bridge {result.idempotency_key}]"


class ErpnextAdapter:
    """Reads orders, stock and prices from ERPNext and acts on its documents."""

    name = "erpnext"

    def __init__(self, config: ErpnextConfig, client: FrappeClient) -> None:
        self.config = config
        self.client = client
        self.zone = ZoneInfo(config.timezone)
        self.users = Users(client, config)

    def _filters(self) -> list[list[object]]:
        return [["company", "=", self.config.company]] if self.config.company else []

    async def _native(
        self, heads: Sequence[Doc], items: dict[str, list[Doc]], taxes: dict[str, list[Doc]]
    ) -> list[NativeOrder]:
        buyers = await self.users.people(str(h.get(self.config.buyer_field) or "") for h in heads)
        orders: list[NativeOrder] = []
        for head in heads:
            name = str(head["name"])
            buyer = buyers.get(str(head.get(self.config.buyer_field) or ""))
            modified = to_utc(head["modified"], self.zone)
            status = status_of(head, self.config)
            try:
                order = purchase_order(
                    head,
                    items.get(name, []),
                    taxes.get(name, []),
                    buyer or Person(erp_user="unknown"),
                    self.config,
                )
            except ValueError as exc:  # e.g. a draft without lines yet: admins hear of it
                orders.append(unusable(name, name, modified, status, exc))
                continue
            orders.append(NativeOrder(name, name, modified, status, order))
        return orders

    async def orders_since(self, after: Cursor, limit: int) -> Sequence[NativeOrder]:
        """Orders with (modified, name) after the cursor; names compare as Frappe sorts them."""
        heads = await heads_after(
            self.client, head_fields(self.config), self._filters(), after, limit, self.zone
        )
        names = [str(h["name"]) for h in heads]
        items = await children(self.client, "Purchase Order Item", self._item_fields(), names)
        taxes = await children(self.client, "Purchase Taxes and Charges", TAX_FIELDS, names)
        return await self._native(heads, items, taxes)

    def _item_fields(self) -> list[str]:
        fields = [*ITEM_FIELDS, "item_tax_rate"]
        if self.config.spec_field and self.config.spec_field not in fields:
            fields.append(self.config.spec_field)
        return fields

    async def order(self, doc_no: str) -> NativeOrder | None:
        """One order read fresh with its lines; None when ERPNext has no such order."""
        doc = await self.client.get_doc(PO, doc_no)
        if doc is None:
            return None
        found = await self._native(
            [doc], {doc_no: doc.get("items") or []}, {doc_no: doc.get("taxes") or []}
        )
        return found[0] if found else None

    async def _fresh(self, doc_no: str) -> Doc:
        doc = await self.client.get_doc(PO, doc_no)
        if doc is None:
            raise Permanent(f"ERPNext has no {PO} {doc_no} any more (deleted or renamed)")
        return doc

    async def approve(self, order: NativeOrder, result: WriteBack) -> None:
        """Apply the workflow's approve action (or submit the draft), then check it took."""
        await self._act(order, result, OrderStatus.APPROVED)

    async def reject(self, order: NativeOrder, result: WriteBack) -> None:
        """Apply the workflow's reject action (or tag the draft), then check it took."""
        await self._act(order, result, OrderStatus.REJECTED)

    async def _act(self, order: NativeOrder, result: WriteBack, goal: OrderStatus) -> None:
        config = self.config
        doc = await self._fresh(order.doc_no)
        approve = goal is OrderStatus.APPROVED
        try:
            if config.workflow:
                action = config.approve_action if approve else config.reject_action
                what = f"workflow action {action!r}"
                await self.client.call(
                    "frappe.model.workflow.apply_workflow", doc=doc, action=action
                )
            elif approve:
                what = "submit"
                await self.client.call("frappe.client.submit", doc=doc)
            else:
                what = f"tag {config.reject_tag!r}"
                await self.client.call(
                    "frappe.desk.doctype.tag.tag.add_tag",
                    tag=config.reject_tag,
                    dt=PO,
                    dn=order.doc_no,
                    color="",
                )
        except FrappeError as exc:
            raise Permanent(
                f"ERPNext refused {what} on {order.doc_no}: {exc}. {self._hint()}"
            ) from exc
        after = await self._fresh(order.doc_no)
        if status_of(after, config) is not goal:
            state = after.get("workflow_state") if config.workflow else after.get("status")
            raise Permanent(
                f"ERPNext accepted {what} on {order.doc_no} but left it {state!r} "
                f"(docstatus {after.get('docstatus')}), not {goal.value}: "
                + (
                    "the Workflow leads this action elsewhere (another approval level?) "
                    "or was changed; "
                    f"{config.approve_action!r} must lead to {config.approved_state!r} and "
                    f"{config.reject_action!r} to {config.rejected_state!r}"
                    if config.workflow
                    else "a server script or hook undid it"
                )
            )
        await self._comment(order.doc_no, note("Approved" if approve else "Rejected", result))

    def _hint(self) -> str:
        if self.config.workflow:
            return (
                f"The API user needs the role {self.config.approver_role!r} allowed on the "
                f"transition, the order must be in {self.config.pending_state!r}, and "
                "'Allow Self Approval' must be on if it created the order"
            )
        return f"The API user needs submit rights on {PO} (role {self.config.approver_role!r})"

    async def _comment(self, doc_no: str, text: str) -> None:
        """A Comment on the order's timeline; the decision stands even if this fails."""
        comment = {
            "comment_type": "Comment",
            "reference_doctype": PO,
            "reference_name": doc_no,
            "content": text,
        }
        try:
            await self.client.insert("Comment", comment)
        except BridgeError as exc:
            log.warning("ERPNext: decision on %s applied, comment refused: %s", doc_no, exc)

    async def stock_levels(self) -> Sequence[StockLevel]:
        """Every item and warehouse with a Purchase reorder level, against its Bin."""
        return await stock.levels(self.client, self.config)

    async def create_requisition(self, result: WriteBack) -> str:
        """A submitted Material Request (Purchase) carrying the idempotency key."""
        return await stock.requisition(self.client, self.config, result, self.zone)

    async def prices_since(self, after: Cursor, limit: int) -> Sequence[PricePoint]:
        """Lines of submitted orders after the cursor, one point per (order, item)."""
        return await prices.since(self.client, self.config, after, limit, self.zone)

    async def check(self) -> Sequence[CheckItem]:
        """Connectivity, the API key, and the rights the bridge uses."""
        return await checks.run(self.client, self.config)

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the caller."""

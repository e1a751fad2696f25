"""The simulated K3Cloud's data: master data, bills and the FDocumentStatus state machine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo


class OpError(Exception):
    """An operation the server refuses: one `Errors[]` item and its MsgCode."""

    def __init__(self, message: str, msg_code: int = 0, field_name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.msg_code = msg_code
        self.field_name = field_name


@dataclass
class Material:
    """BD_MATERIAL with its stock sub-entity (SubHeadEntity1)."""

    fid: int
    number: str
    name: str
    unit: str
    spec: str = ""
    org: str = "100"
    safe_stock_enabled: bool = False
    safe_stock: Decimal = Decimal(0)
    reorder_qty: Decimal = Decimal(0)
    default_stock: str | None = None


@dataclass
class PoEntry:
    """A FPOOrderEntry row; prices tax-inclusive (FTaxPrice) with FEntryTaxRate in percent."""

    entry_id: int
    seq: int
    material: str
    qty: Decimal
    tax_price: Decimal
    tax_rate: Decimal
    delivery: dt.datetime


@dataclass
class ReqEntry:
    """A PUR_Requisition FEntity row."""

    entry_id: int
    seq: int
    material: str
    qty: Decimal
    stock: str | None


@dataclass
class Bill:
    """A bill of PUR_PurchaseOrder or PUR_Requisition, with the status fields every bill has."""

    form: str
    fid: int
    number: str
    date: dt.datetime
    created: dt.datetime
    modified: dt.datetime
    status: str = "A"
    cancel_status: str = "A"
    approved: dt.datetime | None = None
    audited_once: bool = False
    workflow: bool = False
    audit_levels_done: int = 0
    disposition: str = ""
    supplier: str = ""
    purchaser: str = ""
    dept: str = ""
    org: str = "100"
    currency: str = "PRE001"
    note: str = ""
    po_entries: list[PoEntry] = field(default_factory=list)
    req_entries: list[ReqEntry] = field(default_factory=list)


_CURRENCIES = {"PRE001": ("CNY", "人民币"), "PRE007": ("USD", "美元")}


@dataclass
class Store:
    """Everything the simulated server holds."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    clock: Callable[[], dt.datetime] | None = None
    audit_levels: int = 1
    suppliers: dict[str, str] = field(default_factory=dict)
    buyers: dict[str, str] = field(default_factory=dict)
    depts: dict[str, str] = field(default_factory=dict)
    stocks: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    materials: dict[str, Material] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    inventory: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    bills: dict[int, Bill] = field(default_factory=dict)
    _next_id: int = 100000
    _next_no: dict[str, int] = field(default_factory=dict)

    currencies = _CURRENCIES

    def now(self) -> dt.datetime:
        """Server local time without a zone, to the millisecond (as FModifyDate is stored)."""
        now = self.clock() if self.clock else dt.datetime.now(self.tz).replace(tzinfo=None)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def new_id(self) -> int:
        """The next internal id (FID, FEntryID, FMATERIALID)."""
        self._next_id += 1
        return self._next_id

    def new_number(self, form: str) -> str:
        """The next bill number of a form (CGDD000001, CGSQ000001)."""
        prefix = "CGDD" if form == "PUR_PurchaseOrder" else "CGSQ"
        n = self._next_no.get(prefix, 0) + 1
        self._next_no[prefix] = n
        return f"{prefix}{n:06d}"

    def by_number(self, form: str, number: str) -> Bill:
        """A bill by its number; OpError when there is none."""
        for bill in self.bills.values():
            if bill.form == form and bill.number == number:
                return bill
        raise OpError(f"单据编号为“{number}”的单据不存在", 10)

    def touch(self, bill: Bill) -> None:
        """Every operation stamps FModifyDate."""
        bill.modified = self.now()

    # The state machine: Z 暂存, A 创建, B 审核中, C 已审核, D 重新审核; FCancelStatus B 已作废.

    def submit(self, bill: Bill) -> None:
        """提交: A/D/Z -> B."""
        if bill.cancel_status == "B":
            raise OpError(f"单据编号为“{bill.number}”的单据已作废，不能提交", 12)
        if bill.status not in ("Z", "A", "D"):
            raise OpError(f"单据编号为“{bill.number}”的单据，当前状态不允许提交", 12)
        bill.status = "B"
        bill.audit_levels_done = 0
        self.touch(bill)

    def audit(self, bill: Bill, verify_proc_inst: bool) -> None:
        """审核: B -> C, one level at a time when 多级审核 asks for several."""
        if bill.status != "B":
            raise OpError(f"单据编号为“{bill.number}”的单据，单据状态不是审核中，不能审核", 12)
        if bill.workflow and verify_proc_inst:
            raise OpError(
                f"单据编号为“{bill.number}”的单据存在未完成的工作流实例，请通过工作流审批", 12
            )
        bill.audit_levels_done += 1
        if bill.audit_levels_done >= self.audit_levels:
            self._audited(bill)
        else:
            self.touch(bill)  # 多级审核: this level passed, the bill stays 审核中

    def _audited(self, bill: Bill) -> None:
        bill.status = "C"
        bill.workflow = False
        bill.audited_once = True
        bill.approved = self.now()
        self.touch(bill)

    def unaudit(self, bill: Bill) -> None:
        """反审核: C -> D."""
        if bill.status != "C":
            raise OpError(f"单据编号为“{bill.number}”的单据，未审核，不能反审核", 12)
        bill.status = "D"
        bill.approved = None
        self.touch(bill)

    def cancel_assign(self, bill: Bill) -> None:
        """撤销: B -> A (D when it was audited before)."""
        if bill.status != "B":
            raise OpError(f"单据编号为“{bill.number}”的单据，不是审核中状态，不能撤销", 12)
        if bill.workflow:
            raise OpError(f"单据编号为“{bill.number}”的单据已进入工作流，请在工作流中处理", 12)
        bill.status = "D" if bill.audited_once else "A"
        self.touch(bill)

    def workflow_audit(self, bill: Bill, approval_type: int, disposition: str) -> None:
        """工作流审批: 1 approve (-> C), 2 驳回 (-> D), 3 终止 (-> A)."""
        if not bill.workflow or bill.status != "B":
            raise OpError(f"单据编号为“{bill.number}”的单据没有待处理的工作流任务", 10)
        bill.disposition = disposition
        if approval_type == 1:
            self._audited(bill)
            return
        if approval_type not in (2, 3):
            raise OpError(f"ApprovalType {approval_type} 不正确", 8)
        bill.workflow = False
        bill.status = "D" if approval_type == 2 else "A"
        self.touch(bill)

    def void(self, bill: Bill) -> None:
        """作废 (ExcuteOperation Cancel): only bills not submitted or audited."""
        if bill.status in ("B", "C"):
            raise OpError(f"单据编号为“{bill.number}”的单据已提交或已审核，不能作废", 12)
        if bill.cancel_status == "B":
            raise OpError(f"单据编号为“{bill.number}”的单据已作废", 12)
        bill.cancel_status = "B"
        self.touch(bill)

    def delete(self, bill: Bill) -> None:
        """删除: only bills not submitted or audited."""
        if bill.status in ("B", "C"):
            raise OpError(f"单据编号为“{bill.number}”的单据已提交或已审核，不能删除", 12)
        del self.bills[bill.fid]

"""`[erp.kingdee]`: how to reach Kingdee K3Cloud (金蝶云星空) and what to read from it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr

from approvals.config import CoreModel
from erp_adapter.config_types import HttpUrlStr, PollInterval, TimeZoneName


def _field_key(value: str | None) -> str | None:
    if value is not None and not value.replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"{value!r} is not a K3Cloud field key such as FRemarks")
    return value


FieldKey = Annotated[str, AfterValidator(_field_key)]


class KingdeeConfig(CoreModel):
    """`[erp.kingdee]`: K/3 Cloud WebAPI (secret: APPROVAL_BRIDGE__ERP__KINGDEE__APP_SECRET)."""

    server_url: HttpUrlStr
    """The K3Cloud site, e.g. `https://erp.example.com/k3cloud` (services live under it)."""
    acct_id: str
    """The data centre (账套) id."""
    username: str
    """The integration user (集成用户) every call acts as."""
    app_id: str
    """The third-party system registration's app id (`<clientId>_<32 characters>`)."""
    lcid: int = 2052
    """Language of names the ERP returns (2052 简体中文)."""
    org_number: str
    """The purchasing / stock organisation (组织编码) whose orders and stock the bridge reads."""
    poll_interval_s: PollInterval = 60
    app_secret: SecretStr | None = None
    """The app secret (from the environment only)."""

    auth: Literal["signature", "session"] = "signature"
    """`signature`: SDK-8.x signed headers on every call; `session`: LoginBySign and a cookie."""
    timezone: TimeZoneName = "Asia/Shanghai"
    """The server's local time zone: K3Cloud reports FModifyDate and FDate without one."""
    workflow: bool = False
    """A K3Cloud workflow runs on purchase orders: decide with WorkflowAudit, not Audit."""
    workflow_user: str | None = None
    """WorkflowAudit's UserName (the user holding the assignment); default `username`."""
    void_on_reject: bool = False
    """After sending a rejected order back (撤销), also void it (作废, FCancelStatus B)."""
    warehouses: list[str] = Field(default_factory=list)
    """Stock: only these warehouses (BD_STOCK numbers); empty = every warehouse."""
    requester: str = "u1001"
    """The ERP user replenishment approvals are raised on behalf of."""
    price_field: Literal["FTaxPrice", "FPrice"] = "FTaxPrice"
    """The unit price approvers see and the price history keeps (含税单价 or 单价)."""
    price_cursor: Literal["FApproveDate", "FModifyDate"] = "FApproveDate"
    """What orders the price feed: audit time (default) or last modification."""
    buyer_field: FieldKey = "FPurchaserId"
    """The purchase-order field holding the buyer (采购员); its FNumber must be the ERP user."""
    remark_field: FieldKey | None = None
    """A head text field shown to approvers as the order's remark (e.g. FRemarks), if any."""
    requisition_bill_type: str = "CGSQD01_SYS"
    """FBillTypeID of the requisitions the bridge raises (标准采购申请)."""
    audit_requisitions: bool = True
    """Submit and audit raised requisitions (the approval already happened in DingTalk)."""
    page_size: Annotated[int, Field(ge=1, le=10000)] = 2000
    """Rows per ExecuteBillQuery call when a read has to page (K3Cloud caps it at 10000)."""

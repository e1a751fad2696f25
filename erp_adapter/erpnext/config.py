"""`[erp.erpnext]`: how to reach ERPNext and what to read from it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from approvals.config import CoreModel
from erp_adapter.config_types import HttpUrlStr, PollInterval, TimeZoneName

FieldName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=140)]
"""A Frappe fieldname (lower case, digits, underscores), e.g. `custom_remark`."""


class ErpnextConfig(CoreModel):
    """`[erp.erpnext]`: ERPNext REST API (secret: APPROVAL_BRIDGE__ERP__ERPNEXT__API_SECRET)."""

    url: HttpUrlStr
    """The site's base URL, e.g. https://erp.example.com."""
    api_key: str
    """The integration user's API key (User > Settings > API Access)."""
    poll_interval_s: PollInterval = 60
    api_secret: SecretStr | None = None
    """Its API secret; from APPROVAL_BRIDGE__ERP__ERPNEXT__API_SECRET only."""
    webhook_secret: SecretStr | None = None
    """The Webhook's secret for `X-Frappe-Webhook-Signature`; env WEBHOOK_SECRET only."""
    timezone: TimeZoneName = "Asia/Shanghai"
    """The site's time zone (System Settings): ERPNext reports local times without a zone."""

    workflow: bool = True
    """A Workflow on Purchase Order decides approval; false: draft = waiting, submit = approve."""
    pending_state: str = "Pending Approval"
    """The workflow state in which an order waits for the bridge's approval."""
    approved_state: str = "Approved"
    rejected_state: str = "Rejected"
    approve_action: str = "Approve"
    """The workflow action that approves (as the Workflow's transition names it)."""
    reject_action: str = "Reject"
    approver_role: str = "Purchase Manager"
    """The role the Approve/Reject transitions (or submitting, without a workflow) require."""
    reject_tag: str = "Rejected"
    """Without a workflow: the tag that marks a draft as refused (a draft cannot be cancelled)."""

    company: str | None = None
    """Only this company's orders, warehouses and requisitions (None: every company)."""
    warehouses: list[str] = Field(default_factory=list)
    """Only these warehouses for stock alerts (empty: every warehouse with a reorder level)."""
    stock_measure: Literal["actual", "projected"] = "actual"
    """Bin quantity compared with the reorder level: `actual_qty` or `projected_qty`."""
    requester: str = "u1001"
    """The ERP user (as `user_id` gives it) named as requester of stock alerts."""

    user_id: Literal["username", "name"] = "username"
    """How a buyer's ERP user id is given: the User's `username`, or its `name` (the e-mail)."""
    buyer_field: FieldName = "owner"
    """The order field naming the buyer's User (`owner`, or a custom Link to User)."""
    department_field: FieldName | None = None
    """An order field holding the department (ERPNext has none by default)."""
    remark_field: FieldName | None = None
    """An order field carried as the remark (e.g. a custom `remarks` field)."""
    spec_field: FieldName | None = None
    """An order-line field carried as the specification (e.g. `description`)."""
    unit_price: Literal["tax_inclusive", "rate"] = "tax_inclusive"
    """Line price: `rate` plus the order's or item's tax, or ERPNext's net `rate` as is."""

    requisition_ref_field: FieldName = "title"
    """The Material Request field that carries the bridge's idempotency key."""
    requisition_lead_days: Annotated[int, Field(ge=0, le=365)] = 7
    """Required By (schedule_date) of a new Material Request: today plus this many days."""

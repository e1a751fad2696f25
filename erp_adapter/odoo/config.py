"""`[erp.odoo]`: how to reach Odoo 16 to 19 and what to read from it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from approvals.config import CoreModel
from erp_adapter.config_types import HttpUrlStr, PollInterval, TimeZoneName

FieldName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=64)]


class OdooConfig(CoreModel):
    """`[erp.odoo]`: Odoo external API (secret: APPROVAL_BRIDGE__ERP__ODOO__API_KEY)."""

    url: HttpUrlStr
    """Base URL of the Odoo server, e.g. https://erp.example.com."""
    db: str
    """Database name."""
    username: str
    """Login of the integration user (a Purchase Administrator)."""
    poll_interval_s: PollInterval = 60
    api_key: SecretStr | None = None
    """The integration user's API key (Preferences -> Account Security); from the environment."""
    api: Literal["auto", "jsonrpc", "json2"] = "auto"
    """`auto`: JSON-2 on Odoo 19 and later, JSON-RPC (`/jsonrpc`) before."""
    company_ids: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)
    """Only orders, rules and prices of these companies (`res.company` ids); empty: all."""
    warehouses: list[str] = Field(default_factory=list)
    """Only reordering rules of these warehouses (`stock.warehouse.code`); empty: all."""
    timezone: TimeZoneName = "Asia/Shanghai"
    """Odoo sends UTC; dates people read (expected arrival) are taken in this zone."""
    requester: str = "u1001"
    """ERP user named as the requester of stock alerts."""
    reject_action: Literal["cancel", "draft"] = "cancel"
    """On rejection: `button_cancel` (cancelled) or `button_draft` (back to RFQ, editable)."""
    stock_measure: Literal["forecast", "on_hand"] = "forecast"
    """Compare the reordering rule's minimum with `qty_forecast` (as Odoo does) or `qty_on_hand`."""
    unit_price: Literal["tax_included", "price_unit"] = "tax_included"
    """Line unit price shown: `price_total / product_qty`, or the untaxed `price_unit`."""
    remark_field: FieldName = "notes"
    """`purchase.order` field read as the order's remark (HTML is reduced to text)."""
    supplier_code_field: FieldName = "ref"
    """`res.partner` field holding the supplier code (the partner id when it is empty)."""
    default_supplier: str | None = None
    """Supplier code for requisitions of products without a vendor (`product.supplierinfo`)."""

"""Configuration owned by the ERP adapters: `[erp]` and one sub-section per native adapter."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from approvals.config import CoreModel
from erp_adapter.config_types import HttpUrlStr
from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.kingdee.config import KingdeeConfig
from erp_adapter.odoo.config import OdooConfig


class ErpConfig(CoreModel):
    """`[erp]`: which adapter talks to the ERP, and how webhooks from it are authenticated."""

    adapter: Literal["generic", "kingdee", "odoo", "erpnext"] = "generic"
    base_url: HttpUrlStr = "http://127.0.0.1:9000"
    webhook_secret: SecretStr | None = None
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    timestamp_tolerance_s: Annotated[int, Field(ge=1, le=86400)] = 300
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    kingdee: KingdeeConfig | None = None
    odoo: OdooConfig | None = None
    erpnext: ErpnextConfig | None = None

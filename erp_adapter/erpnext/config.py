"""`[erp.erpnext]`: how to reach ERPNext and what to read from it."""

from __future__ import annotations

from pydantic import SecretStr

from approvals.config import CoreModel
from erp_adapter.config_types import HttpUrlStr, PollInterval


class ErpnextConfig(CoreModel):
    """`[erp.erpnext]`: ERPNext REST API (secret: APPROVAL_BRIDGE__ERP__ERPNEXT__API_SECRET)."""

    url: HttpUrlStr
    api_key: str
    poll_interval_s: PollInterval = 60
    api_secret: SecretStr | None = None

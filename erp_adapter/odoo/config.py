"""`[erp.odoo]`: how to reach Odoo 16 to 19 and what to read from it."""

from __future__ import annotations

from pydantic import SecretStr

from approvals.config import CoreModel
from erp_adapter.config_types import HttpUrlStr, PollInterval


class OdooConfig(CoreModel):
    """`[erp.odoo]`: Odoo external API (secret: APPROVAL_BRIDGE__ERP__ODOO__API_KEY)."""

    url: HttpUrlStr
    db: str
    username: str
    poll_interval_s: PollInterval = 60
    api_key: SecretStr | None = None

"""`[erp.kingdee]`: how to reach Kingdee K3Cloud (金蝶云星空) and what to read from it."""

from __future__ import annotations

from pydantic import SecretStr

from approvals.config import CoreModel
from erp_adapter.config_types import HttpUrlStr, PollInterval


class KingdeeConfig(CoreModel):
    """`[erp.kingdee]`: K/3 Cloud WebAPI (secret: APPROVAL_BRIDGE__ERP__KINGDEE__APP_SECRET)."""

    server_url: HttpUrlStr
    acct_id: str
    username: str
    app_id: str
    lcid: int = 2052
    org_number: str
    poll_interval_s: PollInterval = 60
    app_secret: SecretStr | None = None

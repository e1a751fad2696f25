"""The Kingdee K3Cloud (金蝶云星空) adapter: polling intake, write-back, prices, stock."""

from __future__ import annotations

import aiohttp

from erp_adapter.kingdee.adapter import KingdeeAdapter
from erp_adapter.kingdee.auth import Credentials
from erp_adapter.kingdee.client import KingdeeClient
from erp_adapter.kingdee.config import KingdeeConfig

__all__ = ["KingdeeAdapter", "KingdeeConfig", "build"]


def build(
    config: KingdeeConfig, session: aiohttp.ClientSession, timeout_s: float
) -> KingdeeAdapter:
    """The adapter for `[erp.kingdee]`, calling K3Cloud over the shared session."""
    if config.app_secret is None or not config.app_secret.get_secret_value():
        raise ValueError(
            "erp.kingdee needs its app secret: set APPROVAL_BRIDGE__ERP__KINGDEE__APP_SECRET "
            "(the secret of the 第三方系统登录授权 registration of app_id)"
        )
    creds = Credentials(
        acct_id=config.acct_id,
        username=config.username,
        app_id=config.app_id,
        app_secret=config.app_secret.get_secret_value(),
        lcid=config.lcid,
        org_number=config.org_number,
    )
    client = KingdeeClient(session, config.server_url, creds, config.auth, timeout_s)
    return KingdeeAdapter(config, client)

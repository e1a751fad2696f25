"""The Odoo 16 to 19 adapter: polling intake, write-back, prices, stock."""

from __future__ import annotations

import aiohttp

from erp_adapter.odoo.adapter import OdooAdapter
from erp_adapter.odoo.client import OdooClient
from erp_adapter.odoo.config import OdooConfig
from erp_adapter.odoo.hint import parse_hint


def build(config: OdooConfig, session: aiohttp.ClientSession, timeout_s: float) -> OdooAdapter:
    """The adapter for `[erp.odoo]`; the API key comes from APPROVAL_BRIDGE__ERP__ODOO__API_KEY."""
    key = config.api_key.get_secret_value() if config.api_key is not None else ""
    if not key.strip():
        raise ValueError(
            "[erp.odoo] needs the integration user's API key: set "
            "APPROVAL_BRIDGE__ERP__ODOO__API_KEY (Odoo: Preferences > Account Security)"
        )
    client = OdooClient(
        session, config.url, config.db, config.username, key, timeout_s, api=config.api
    )
    return OdooAdapter(config, client)


__all__ = ["OdooAdapter", "OdooClient", "OdooConfig", "build", "parse_hint"]

"""The ERPNext adapter: polling intake, write-back, prices, stock."""

from __future__ import annotations

import aiohttp

from erp_adapter.erpnext.adapter import ErpnextAdapter
from erp_adapter.erpnext.client import FrappeClient
from erp_adapter.erpnext.config import ErpnextConfig
from erp_adapter.erpnext.webhook import SIGNATURE_HEADER, parse_hint, verify_hint

__all__ = ["SIGNATURE_HEADER", "ErpnextAdapter", "build", "parse_hint", "verify_hint"]


def build(
    config: ErpnextConfig, session: aiohttp.ClientSession, timeout_s: float
) -> ErpnextAdapter:
    """The adapter for `[erp.erpnext]`; ValueError when the API secret is not set."""
    secret = config.api_secret
    if secret is None or not secret.get_secret_value():
        raise ValueError(
            "[erp.erpnext] needs the API secret: set APPROVAL_BRIDGE__ERP__ERPNEXT__API_SECRET "
            "(User > Settings > API Access > Generate Keys in ERPNext)"
        )
    client = FrappeClient(config.url, config.api_key, secret, session, timeout_s)
    return ErpnextAdapter(config, client)

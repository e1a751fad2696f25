"""Builds the configured native ERP adapter (`erp.adapter` = kingdee, odoo or erpnext)."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from erp_adapter import erpnext, kingdee, odoo
from erp_adapter.config import ErpConfig
from erp_adapter.native.base import NativeErp
from erp_adapter.native.hints import HintFormat

NATIVE = ("kingdee", "odoo", "erpnext")
"""The adapters that poll their ERP (the generic one is fed by webhooks)."""


class AdapterMissing(ValueError):
    """The configured native adapter cannot be built (its section or secret is missing)."""


def build(config: ErpConfig, session: aiohttp.ClientSession) -> NativeErp:
    """The adapter for `config.adapter`; raises `AdapterMissing` for a missing section."""
    name = config.adapter
    section = getattr(config, name, None) if name in NATIVE else None
    if section is None:
        raise AdapterMissing(f"erp.adapter is {name!r} but the [erp.{name}] section is missing")
    try:
        if name == "kingdee":
            return kingdee.build(section, session, config.timeout_s)
        if name == "odoo":
            return odoo.build(section, session, config.timeout_s)
        return erpnext.build(section, session, config.timeout_s)
    except ValueError as exc:
        raise AdapterMissing(str(exc)) from exc


def hint_format(config: ErpConfig) -> HintFormat | None:
    """How the configured ERP's own webhooks look; None for an ERP that sends none (Kingdee)."""
    if config.adapter == "odoo":
        return HintFormat(odoo.parse_hint)  # unsigned: it can only make the bridge poll sooner
    if config.adapter != "erpnext" or config.erpnext is None:
        return None
    secret = config.erpnext.webhook_secret
    key = b"" if secret is None else secret.get_secret_value().encode()

    def authentic(body: bytes, headers: Mapping[str, str]) -> bool:
        # No secret configured: no hint can be authentic, and `verify_hint` refuses them all.
        return erpnext.verify_hint(body, headers.get(erpnext.SIGNATURE_HEADER), key)

    return HintFormat(erpnext.parse_hint, authentic)

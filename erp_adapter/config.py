"""Configuration owned by the ERP adapters: `[erp]` and one sub-section per native adapter."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr

from approvals.config import CoreModel


def _http_url(value: str) -> str:
    """Accept an absolute http(s) URL; kept a `str` so callers join paths without a URL type."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or value != value.strip():
        raise ValueError(
            "must be an absolute http:// or https:// URL, e.g. https://erp.example.com"
        )
    return value


HttpUrlStr = Annotated[str, AfterValidator(_http_url)]
"""An absolute http:// or https:// URL, kept as given."""

PollInterval = Annotated[float, Field(gt=0, le=86400)]
"""Seconds between polls of a native ERP for documents and results."""


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


class OdooConfig(CoreModel):
    """`[erp.odoo]`: Odoo external API (secret: APPROVAL_BRIDGE__ERP__ODOO__API_KEY)."""

    url: HttpUrlStr
    db: str
    username: str
    poll_interval_s: PollInterval = 60
    api_key: SecretStr | None = None


class ErpnextConfig(CoreModel):
    """`[erp.erpnext]`: ERPNext REST API (secret: APPROVAL_BRIDGE__ERP__ERPNEXT__API_SECRET)."""

    url: HttpUrlStr
    api_key: str
    poll_interval_s: PollInterval = 60
    api_secret: SecretStr | None = None


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

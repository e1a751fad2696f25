"""Value types shared by the ERP adapters' configuration sections."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field


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


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai"
        ) from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_zone)]
"""An IANA time zone name, e.g. Asia/Shanghai (for ERPs that report local times)."""

"""The one place that turns ERP HTTP outcomes into the core's typed errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import math
from dataclasses import dataclass
from typing import Any

import aiohttp

from approvals.errors import Conflict, Permanent, Retryable


@dataclass(frozen=True)
class ErpResponse:
    """A 2xx answer from the ERP."""

    status: int
    body: dict[str, Any]


_MAX_RETRY_AFTER_S = 86_400.0


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), capped at a day."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), _MAX_RETRY_AFTER_S)


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
) -> ErpResponse:
    """One request: 2xx returns, 409 raises `Conflict`, other 4xx `Permanent`, else `Retryable`."""
    try:
        async with session.request(
            method, url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            text = await response.text(errors="replace")
            status = response.status
            retry_after = _retry_after(response.headers.get("Retry-After"))
    except TimeoutError as exc:
        raise Retryable(f"ERP timed out after {timeout_s} s") from exc
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
        raise Retryable(f"ERP unreachable: {type(exc).__name__}: {exc}") from exc
    snippet = text[:300]
    if 200 <= status < 300:
        return ErpResponse(status, _json_object(text))
    if status == 409:
        raise Conflict(f"ERP answered 409: {snippet}")
    if status in (408, 425, 429) or status >= 500:
        raise Retryable(f"ERP answered {status}: {snippet}", retry_after)
    raise Permanent(f"ERP answered {status}: {snippet}")


def _json_object(text: str) -> dict[str, Any]:
    """The body as a JSON object; an empty or non-object 2xx body is still an acknowledgement."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

"""An async Frappe REST/RPC client: one place that turns ERPNext's answers into typed errors."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr
from yarl import URL

from approvals.errors import Conflict, Permanent, Retryable

Doc = dict[str, Any]
ALL = 0
"""`limit_page_length=0`: Frappe returns every matching row."""


class FrappeError(Permanent):
    """ERPNext refused a request (4xx): `exc_type` is Frappe's exception class name."""

    def __init__(self, message: str, status: int, exc_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.exc_type = exc_type


def _encode(value: Any) -> Any:
    """Decimals go back as the JSON numbers ERPNext sent them as."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot send {type(value).__name__} to ERPNext")


def dumps(value: Any) -> str:
    """JSON for ERPNext (Decimal as number)."""
    return json.dumps(value, default=_encode)


def _message(body: Any) -> tuple[str, str]:
    """(exc_type, the human message) from a Frappe error body (`_server_messages` first)."""
    if not isinstance(body, dict):
        return "", ""
    exc_type = str(body.get("exc_type") or "")
    try:
        notes = [json.loads(n) for n in json.loads(body.get("_server_messages") or "[]")]
        text = "; ".join(str(n.get("message", "")) for n in notes if isinstance(n, dict))
    except (ValueError, TypeError, AttributeError):
        text = ""
    text = text or str(body.get("exception") or body.get("message") or "")
    return exc_type, html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


def _error(status: int, text: str, retry_after: float | None) -> Exception:
    try:
        body = json.loads(text) if text.strip() else {}
    except ValueError:
        body = {}
    exc_type, message = _message(body)
    detail = f"{exc_type}: {message}" if exc_type else (message or text[:200].strip())
    if status == 401:
        return FrappeError(
            f"ERPNext refused the API key/secret (401 {detail or 'AuthenticationError'}); "
            "generate new keys under User > Settings > API Access",
            status,
            exc_type or "AuthenticationError",
        )
    if status == 409 or exc_type == "TimestampMismatchError":
        return Conflict(f"ERPNext: the document changed meanwhile ({detail})")
    if status in (408, 425, 429) or (status >= 500 and "Unknown column" not in message):
        return Retryable(f"ERPNext answered {status}: {detail or 'no details'}", retry_after)
    if status >= 500:
        return FrappeError(
            f"ERPNext has no such field ({detail}); check the field names in [erp.erpnext]",
            status,
            exc_type,
        )
    return FrappeError(f"ERPNext answered {status} {detail}", status, exc_type)


class FrappeClient:
    """Calls one ERPNext site as one API user (`Authorization: token key:secret`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: SecretStr,
        session: aiohttp.ClientSession,
        timeout_s: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {
            "Authorization": f"token {api_key}:{api_secret.get_secret_value()}",
            "Accept": "application/json",
        }

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None
    ) -> Doc:
        """One call; 2xx returns the JSON object (floats as Decimal), else a typed error."""
        url = URL(self.base_url + path, encoded=True)
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = dumps(body)
        try:
            async with self._session.request(
                method, url, params=params, data=data, headers=headers, timeout=self._timeout
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError as exc:
            raise Retryable(f"ERPNext timed out after {self._timeout.total} s") from exc
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise Retryable(f"ERPNext unreachable: {type(exc).__name__}: {exc}") from exc
        if not 200 <= status < 300:
            wait = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise _error(status, text, wait)
        try:
            value = json.loads(text, parse_float=Decimal) if text.strip() else {}
        except ValueError as exc:
            raise Retryable(f"ERPNext answered {status} with no JSON: {text[:120]!r}") from exc
        return value if isinstance(value, dict) else {}

    async def get_list(
        self,
        doctype: str,
        fields: Sequence[str],
        filters: list[list[Any]] | None = None,
        *,
        order_by: str = "modified asc, name asc",
        limit: int = ALL,
        parent: str | None = None,
    ) -> list[Doc]:
        """`GET /api/resource/<doctype>`: rows with the named fields."""
        params = {
            "fields": dumps(list(fields)),
            "filters": dumps(filters or []),
            "order_by": order_by,
            "limit_start": "0",
            "limit_page_length": str(limit),
        }
        if parent:
            params["parent"] = parent  # child doctypes are read through their parent
        body = await self.request("GET", f"/api/resource/{quote(doctype)}", params=params)
        rows = body.get("data")
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    async def get_doc(self, doctype: str, name: str) -> Doc | None:
        """`GET /api/resource/<doctype>/<name>` with its child tables; None if there is none."""
        path = f"/api/resource/{quote(doctype)}/{quote(name, safe='')}"
        try:
            body = await self.request("GET", path)
        except FrappeError as exc:
            if exc.status == 404:
                return None
            raise
        doc = body.get("data")
        return doc if isinstance(doc, dict) else None

    async def insert(self, doctype: str, doc: Doc) -> Doc:
        """`POST /api/resource/<doctype>`: the created document."""
        body = await self.request("POST", f"/api/resource/{quote(doctype)}", body=doc)
        data = body.get("data")
        if not isinstance(data, dict) or not data.get("name"):
            raise Retryable(f"ERPNext created a {doctype} but did not say which")
        return data

    async def call(self, method: str, **args: Any) -> Any:
        """`POST /api/method/<dotted.path>` with JSON arguments: its `message`."""
        body = await self.request("POST", f"/api/method/{method}", body=args)
        return body.get("message")

    async def get(self, method: str) -> Any:
        """`GET /api/method/<dotted.path>`: its `message`."""
        return (await self.request("GET", f"/api/method/{method}")).get("message")

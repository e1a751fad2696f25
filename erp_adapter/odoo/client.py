"""An async Odoo external-API client: JSON-RPC (`/jsonrpc`, 16-18) or JSON-2 (`/json/2`, 19+)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any, Literal

import aiohttp

from approvals.errors import Permanent, Retryable

log = logging.getLogger(__name__)

Api = Literal["jsonrpc", "json2"]

# Odoo errors worth retrying: the database was busy, not the request wrong.
_TRANSIENT = ("psycopg2", "OperationalError", "SerializationFailure", "LockNotAvailable")


class OdooDenied(Permanent):
    """Odoo refused the credentials (AccessDenied, or JSON-2's 401)."""


class OdooClient:
    """Calls model methods as one integration user; maps every outcome to the bridge's errors."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        db: str,
        login: str,
        api_key: str,
        timeout_s: float,
        api: Literal["auto", "jsonrpc", "json2"] = "auto",
    ) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self.db = db
        self.login = login
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s
        self._wanted = api
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.api: Api | None = None
        self.major: int | None = None
        self.uid: int | None = None

    async def _post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """POST JSON; returns status and decoded body. Network trouble and 5xx are Retryable."""
        try:
            async with self._session.post(
                self._url + path, json=body, headers=headers, timeout=self._timeout
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
        except TimeoutError as exc:
            raise Retryable(f"Odoo timed out after {self._timeout_s} s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise Retryable(f"Odoo unreachable: {type(exc).__name__}: {exc}") from exc
        if status >= 500 or status in (408, 429):
            raise Retryable(f"Odoo answered HTTP {status}: {text[:200]}")
        try:
            return status, json.loads(text)
        except ValueError:
            if status == 200:  # a proxy's page instead of Odoo's JSON
                raise Retryable(f"Odoo answered non-JSON: {text[:200]}") from None
            return status, {"message": text[:200]}

    async def rpc(self, service: str, method: str, *args: Any) -> Any:
        """One `/jsonrpc` call; Odoo's error envelope (HTTP 200) becomes a typed error."""
        body = {
            "jsonrpc": "2.0",
            "method": "call",
            "id": next(self._ids),
            "params": {"service": service, "method": method, "args": list(args)},
        }
        status, payload = await self._post("/jsonrpc", body)
        if status != 200 or not isinstance(payload, dict):
            raise Permanent(f"Odoo /jsonrpc answered HTTP {status}: {str(payload)[:200]}")
        error = payload.get("error")
        if error:
            raise _rpc_error(error, f"{service}.{method}")
        return payload.get("result")

    async def version(self) -> dict[str, Any]:
        """`common.version()`: `server_version_info[0]` is the major version."""
        info = await self.rpc("common", "version")
        if not isinstance(info, dict) or not info.get("server_version_info"):
            raise Permanent(f"{self._url} does not look like Odoo: version() gave {info!r}")
        return info

    async def connect(self, *, force: bool = False) -> None:
        """Find the version, choose the API, and resolve the integration user's uid."""
        async with self._lock:
            if self.uid is not None and not force:
                return
            info = await self.version()
            self.major = int(info["server_version_info"][0])
            self.api = (
                self._wanted
                if self._wanted != "auto"
                else ("json2" if self.major >= 19 else "jsonrpc")
            )
            if self.api == "jsonrpc":
                uid = await self.rpc("common", "authenticate", self.db, self.login, self._key, {})
            else:
                rows = await self._json2(
                    "res.users",
                    "search_read",
                    None,
                    {
                        "domain": [["login", "=", self.login]],
                        "fields": ["id"],
                        "limit": 1,
                    },
                )
                uid = rows[0]["id"] if rows else False
            if not isinstance(uid, int) or uid is False or isinstance(uid, bool):
                raise OdooDenied(
                    f"Odoo refused user {self.login!r} on database {self.db!r}: check the login, "
                    "the database name and the API key (revoked or expired keys are refused)"
                )
            self.uid = uid

    async def call(
        self, model: str, method: str, ids: list[int] | None = None, **params: Any
    ) -> Any:
        """A model method with named parameters (`ids` for record methods).

        A refused key is retried once after logging in again (the uid or key may have changed).
        """
        await self.connect()
        try:
            return await self._call(model, method, ids, params)
        except OdooDenied:
            log.info("odoo: %s.%s was denied; logging in again", model, method)
            await self.connect(force=True)
            return await self._call(model, method, ids, params)

    async def _call(
        self, model: str, method: str, ids: list[int] | None, params: dict[str, Any]
    ) -> Any:
        if self.api == "json2":
            return await self._json2(model, method, ids, params)
        args: list[Any] = [ids] if ids is not None else []
        return await self.rpc(
            "object", "execute_kw", self.db, self.uid, self._key, model, method, args, params
        )

    async def _json2(
        self, model: str, method: str, ids: list[int] | None, params: dict[str, Any]
    ) -> Any:
        headers = {"Authorization": f"bearer {self._key}", "X-Odoo-Database": self.db}
        body = ({"ids": ids} if ids is not None else {}) | params
        status, payload = await self._post(f"/json/2/{model}/{method}", body, headers)
        if status == 200:
            return payload
        detail = payload if isinstance(payload, dict) else {}
        what = f"Odoo {model}.{method} answered HTTP {status}: {detail.get('message', payload)}"
        if status == 401:
            raise OdooDenied(f"Odoo refused the API key (wrong, revoked or expired): {what}")
        if status == 404:
            raise Permanent(f'{what} (no JSON-2 API here: set api = "jsonrpc")')
        raise Permanent(what)


def _rpc_error(error: dict[str, Any], what: str) -> Exception:
    data = error.get("data") or {}
    name, message = str(data.get("name", "")), str(data.get("message", error.get("message")))
    text = f"Odoo {what} failed: {name}: {message}"
    if name.endswith("AccessDenied"):
        return OdooDenied(f"{text} (wrong login, database or API key)")
    if any(marker in name or marker in message for marker in _TRANSIENT):
        return Retryable(text)
    return Permanent(text)

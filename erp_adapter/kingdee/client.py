"""An async K3Cloud WebAPI client: one `_post` that turns every outcome into a typed error."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from approvals.errors import Permanent, Retryable
from erp_adapter.kingdee.auth import Credentials, login_sign, signed_headers

_FORM_SERVICE = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService."
_AUTH_SERVICE = "Kingdee.BOS.WebApi.ServicesStub.AuthService."
SESSION_LOST = 1
# MsgCodes worth retrying: 6 数据库操作失败, 13 网控冲突 (someone holds the bill), 14 调用限制.
_TRANSIENT = {6, 13, 14}


class KingdeeRefused(Permanent):
    """K3Cloud answered IsSuccess false: the MsgCode and the Errors[] messages."""

    def __init__(self, operation: str, msg_code: int, messages: Sequence[str]) -> None:
        super().__init__(f"Kingdee {operation} refused (MsgCode {msg_code}): {'; '.join(messages)}")
        self.msg_code = msg_code
        self.messages = tuple(messages)


class _SessionLost(Exception):
    """会话信息已丢失: log in again."""


def _int(value: Any, default: int = 0) -> int:
    """Kingdee's templates print numbers and booleans as strings; read them leniently."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _status_of(body: Any) -> dict[str, Any] | None:
    """The ResponseStatus of any envelope (write ops, View, a failed ExecuteBillQuery)."""
    while isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, dict):
        result = body.get("Result")
        if isinstance(result, dict):
            status = result.get("ResponseStatus")
            return status if isinstance(status, dict) else None
    return None


class KingdeeClient:
    """Calls K3Cloud services for one integration user over the injected session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        server_url: str,
        creds: Credentials,
        auth: Literal["signature", "session"],
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._base = server_url.rstrip("/")
        self._path = urlsplit(self._base).path
        self._creds = creds
        self._auth = auth
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s
        self._clock = clock
        self._sid: str | None = None
        self._login_lock = asyncio.Lock()

    async def query(
        self, form: str, fields: Sequence[str], where: str, order: str, start: int, limit: int
    ) -> list[list[Any]]:
        """ExecuteBillQuery: rows in `fields` order."""
        data = {
            "FormId": form,
            "FieldKeys": ",".join(fields),
            "FilterString": where,
            "OrderString": order,
            "TopRowCount": 0,
            "StartRow": start,
            "Limit": limit,
            "SubSystemId": "",
        }
        body = await self.call("ExecuteBillQuery", {"data": data})
        if not isinstance(body, list) or not all(isinstance(row, list) for row in body):
            raise Permanent(f"Kingdee ExecuteBillQuery on {form} answered {str(body)[:200]}")
        if any(len(row) != len(fields) for row in body):
            raise Permanent(f"Kingdee ExecuteBillQuery on {form}: rows do not match FieldKeys")
        return body

    async def query_all(
        self, form: str, fields: Sequence[str], where: str, order: str, page: int
    ) -> list[list[Any]]:
        """Every row, paging with StartRow (a stable OrderString is the caller's to give)."""
        rows: list[list[Any]] = []
        while True:
            batch = await self.query(form, fields, where, order, len(rows), page)
            rows.extend(batch)
            if len(batch) < page:
                return rows

    async def operate(self, operation: str, form: str, data: dict[str, Any]) -> dict[str, Any]:
        """A write operation (Save, Submit, Audit, …): its `Result`, or KingdeeRefused."""
        body: dict[str, Any] = {"formid": form, "data": data}
        if operation.startswith("ExcuteOperation:"):
            operation, body["opNumber"] = operation.split(":", 1)
        answer = await self.call(operation, body)
        result = answer.get("Result") if isinstance(answer, dict) else None
        if not isinstance(result, dict):
            raise Permanent(f"Kingdee {operation} answered {str(answer)[:200]}")
        return result

    async def call(self, operation: str, body: dict[str, Any]) -> Any:
        """One DynamicFormService call; a lost session (session mode) gets one new login."""
        try:
            return await self._call_once(operation, body)
        except _SessionLost:
            if self._auth == "signature":
                raise Retryable("Kingdee answered 会话信息已丢失 to a signed call") from None
            self._sid = None
        try:
            return await self._call_once(operation, body)
        except _SessionLost:
            raise Retryable("Kingdee lost the session again right after a new login") from None

    async def _call_once(self, operation: str, body: dict[str, Any]) -> Any:
        url = f"{self._base}/{_FORM_SERVICE}{operation}.common.kdsvc"
        if self._auth == "signature":
            path = f"{self._path}/{_FORM_SERVICE}{operation}.common.kdsvc"
            headers = signed_headers(self._creds, path, int(self._clock()))
        else:
            headers = {"kdservice-sessionid": await self.login()}
        answer = await self._post(url, body, headers)
        status = _status_of(answer)
        if status is not None and not _truthy(status.get("IsSuccess")):
            code = _int(status.get("MsgCode"))
            errors = status.get("Errors") or []
            messages = [str(e.get("Message", "")) for e in errors if isinstance(e, dict)]
            if code == SESSION_LOST:
                raise _SessionLost()
            if code in _TRANSIENT:
                raise Retryable(f"Kingdee {operation} (MsgCode {code}): {'; '.join(messages)}")
            raise KingdeeRefused(operation, code, messages or [str(status)[:200]])
        return answer

    async def login(self) -> str:
        """The session id, logging in with LoginBySign when there is none."""
        async with self._login_lock:
            if self._sid is not None:
                return self._sid
            now = int(self._clock())
            c = self._creds
            params = [c.acct_id, c.username, c.app_id, str(now), login_sign(c, now), c.lcid]
            url = f"{self._base}/{_AUTH_SERVICE}LoginBySign.common.kdsvc"
            answer = await self._post(url, {"parameters": params}, {})
            if not isinstance(answer, dict):
                raise Permanent(f"Kingdee LoginBySign answered {str(answer)[:200]}")
            ok = (
                _int(answer.get("LoginResultType"), -1) == 1 or answer.get("IsSuccessByAPI") is True
            )
            sid = answer.get("KDSVCSessionId") or (answer.get("Context") or {}).get("SessionId")
            if not ok or not sid:
                raise Permanent(
                    f"Kingdee refused the login of {c.username!r} to data centre {c.acct_id!r}: "
                    f"{answer.get('Message') or answer.get('LoginResultType')}"
                )
            self._sid = str(sid)
            return self._sid

    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        """POST JSON; 5xx, timeouts and lost connections are Retryable, other non-2xx Permanent."""
        payload = json.dumps(body, ensure_ascii=False, default=str).encode()
        headers = {**headers, "Content-Type": "application/json; charset=utf-8"}
        try:
            async with self._session.post(
                url, data=payload, headers=headers, timeout=self._timeout
            ) as response:
                text = await response.text(encoding="utf-8", errors="replace")
                status = response.status
        except TimeoutError as exc:
            raise Retryable(f"Kingdee timed out after {self._timeout_s} s") from exc
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise Retryable(f"Kingdee unreachable: {type(exc).__name__}: {exc}") from exc
        if status in (408, 429) or status >= 500:
            raise Retryable(f"Kingdee answered HTTP {status}: {text[:200]}")
        if not 200 <= status < 300:
            raise Permanent(f"Kingdee answered HTTP {status} for {url}: {text[:200]}")
        if text.startswith("response_error:"):
            raise Retryable(f"Kingdee gateway error: {text[:200]}")
        try:
            return json.loads(text, parse_float=Decimal)
        except ValueError:
            raise Retryable(f"Kingdee answered something that is not JSON: {text[:200]}") from None

"""The simulated site's HTTP side: `/api/resource`, `/api/method`, auth, faults."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from erp_adapter.simulators.erpnext.docflow import DocFlow
from erp_adapter.simulators.erpnext.errors import AuthenticationError, FrappeError
from erp_adapter.simulators.erpnext.methods import Methods
from erp_adapter.simulators.erpnext.site import Site, to_json

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Failures to inject, consumed request by request."""

    fail_statuses: list[int] = field(default_factory=list)
    """The next requests answer these statuses (500 as Frappe, 502-504 as nginx) in turn."""
    delay_s: float = 0.0
    """Every reply waits this long first (a slow site)."""
    requests: int = 0
    """How many API requests arrived (for tests that count round trips)."""


_NGINX = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>"


class Api:
    """Routes requests to the site as the user their credentials name."""

    def __init__(self, site: Site, flow: DocFlow) -> None:
        self.site = site
        self.methods = Methods(flow)
        self.flow = flow
        self.sessions: dict[str, str] = {}
        self.faults = Faults()

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("GET", "/api/resource/{doctype}", self._list)
        app.router.add_route("POST", "/api/resource/{doctype}", self._insert)
        app.router.add_route("GET", "/api/resource/{doctype}/{name}", self._read)
        app.router.add_route("PUT", "/api/resource/{doctype}/{name}", self._update)
        app.router.add_route("*", "/api/method/{method:.+}", self._method)
        app.router.add_route("*", "/", self._cmd)
        return app

    # -- cross-cutting -----------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.faults.requests += 1
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        if self.faults.fail_statuses:
            status = self.faults.fail_statuses.pop(0)
            if status == 500:
                body = {
                    "exception": "frappe.exceptions.QueryDeadlockError",
                    "exc_type": "QueryDeadlockError",
                }
                return web.json_response(body, status=500)
            return web.Response(status=status, text=_NGINX.format(status), content_type="text/html")
        try:
            return await handler(request)
        except FrappeError as exc:
            return web.json_response(exc.body(), status=exc.http_status)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("ERPNext simulator: %s %s failed", request.method, request.path)
            return web.json_response({"exc_type": "Exception", "exception": "Internal"}, status=500)

    def _user(self, request: web.Request) -> str:
        """`frappe.auth.validate_auth`: token or basic API keys, else the session cookie."""
        header = request.headers.get("Authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() in ("token", "basic") and token:
            if kind.lower() == "basic":
                try:
                    token = base64.b64decode(token, validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    raise AuthenticationError(
                        "Failed to decode token, please provide a valid base64-encoded token."
                    ) from None
            key, _, secret = token.partition(":")
            return self._by_key(key, secret)
        sid = request.cookies.get("sid")
        return self.sessions.get(sid, "Guest") if sid else "Guest"

    def _by_key(self, key: str, secret: str) -> str:
        for name, doc in self.site.table("User").items():
            if key and doc.get("api_key") == key:
                expected = self.site.secrets.get(name, {}).get("api_secret", "")
                if expected and hmac.compare_digest(expected, secret) and doc.get("enabled"):
                    return name
                break
        raise AuthenticationError()

    async def _params(self, request: web.Request) -> dict[str, Any]:
        """Frappe's `form_dict`: query string, then a form or JSON body on top."""
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                raw = await request.read()
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    raise FrappeError("Request body is not valid JSON") from None
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update({k: str(v) for k, v in (await request.post()).items()})
        return params

    @staticmethod
    def _data(params: dict[str, Any]) -> dict[str, Any]:
        """A document from the body: `data=<json>` (form) or the JSON body itself."""
        data = params.get("data", params)
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, dict):
            raise FrappeError("data must be a JSON object")
        return data

    # -- REST --------------------------------------------------------------------------------
    async def _list(self, request: web.Request) -> web.Response:
        user = self._user(request)
        params = await self._params(request)
        rows = self.site.get_list(user, request.match_info["doctype"], params)
        return web.json_response({"data": to_json(rows)})

    async def _read(self, request: web.Request) -> web.Response:
        user = self._user(request)
        doc = self.site.read(user, request.match_info["doctype"], request.match_info["name"])
        return web.json_response({"data": to_json(doc)})

    async def _insert(self, request: web.Request) -> web.Response:
        user = self._user(request)
        data = self._data(await self._params(request))
        doc = self.flow.insert(user, request.match_info["doctype"], data)
        return web.json_response({"data": to_json(doc)})

    async def _update(self, request: web.Request) -> web.Response:
        user = self._user(request)
        data = self._data(await self._params(request))
        info = request.match_info
        doc = self.flow.update(user, info["doctype"], info["name"], data)
        return web.json_response({"data": to_json(doc)})

    # -- RPC ---------------------------------------------------------------------------------
    async def _method(self, request: web.Request) -> web.StreamResponse:
        params = await self._params(request)
        return self._run(request, request.match_info["method"].rstrip("/"), params)

    async def _cmd(self, request: web.Request) -> web.StreamResponse:
        """The old `POST / cmd=<method>` form that frappe-client still uses."""
        params = await self._params(request)
        command = str(params.pop("cmd", ""))
        if not command:
            return web.Response(text="<html>ERPNext</html>", content_type="text/html")
        return self._run(request, command, params)

    def _run(self, request: web.Request, method: str, params: dict[str, Any]) -> web.Response:
        if method == "login":
            return self._login(params)
        if method == "logout":
            self.sessions.pop(request.cookies.get("sid", ""), None)
            return web.json_response({})
        result = self.methods.call(self._user(request), method, params, request.method)
        return web.json_response({} if result is None else {"message": to_json(result)})

    def _login(self, params: dict[str, Any]) -> web.Response:
        """`POST /api/method/login {usr, pwd}`: a `sid` cookie for the session."""
        usr, pwd = str(params.get("usr", "")), str(params.get("pwd", ""))
        user = next(
            (n for n, d in self.site.table("User").items() if usr in (n, d.get("username"))), None
        )
        stored = self.site.secrets.get(user or "", {}).get("password", "")
        if user is None or not stored or not hmac.compare_digest(stored, pwd):
            exc = AuthenticationError("Invalid Login. Try again.")
            return web.json_response({**exc.body(), "message": exc.message}, status=401)
        sid = secrets.token_hex(28)
        self.sessions[sid] = user
        full_name = self.site.table("User")[user]["full_name"]
        response = web.json_response(
            {"message": "Logged In", "home_page": "/app", "full_name": full_name}
        )
        response.set_cookie("sid", sid, httponly=True)
        return response

"""The simulated Odoo's HTTP side: `/jsonrpc`, `/xmlrpc/2/*`, `/xmlrpc/*`, `/json/2/*`, `/web/*`."""

from __future__ import annotations

import asyncio
import inspect
import secrets
import traceback
import xmlrpc.client
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from erp_adapter.simulators.odoo.errors import AccessDenied, BadCall, OdooError
from erp_adapter.simulators.odoo.orm import Env
from erp_adapter.simulators.odoo.service import OdooService


@dataclass
class Faults:
    """What the next requests meet: HTTP failures, a delay, dropped web sessions."""

    fail_next: list[int] = field(default_factory=list)
    """HTTP statuses to answer, one per request, before serving normally again."""
    delay_s: float = 0.0
    """Seconds every request waits before it is served (a slow server)."""


def _debug(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    name = exc.name if isinstance(exc, OdooError) else f"builtins.{type(exc).__name__}"
    return f'Traceback (most recent call last):\n  File "odoo/http.py", line 1\n{name}: {text}\n'


def serialize(exc: BaseException) -> dict[str, Any]:
    """Odoo's `serialize_exception`: name, message, arguments, context, debug."""
    if isinstance(exc, OdooError):
        name, message = exc.name, exc.message
    else:
        name, message = f"builtins.{type(exc).__name__}", str(exc)
    return {
        "name": name,
        "message": message,
        "arguments": [message],
        "context": {},
        "debug": _debug(exc),
    }


def _rpc_error(request_id: Any, exc: BaseException, code: int = 200) -> web.Response:
    message = "Odoo Session Expired" if code == 100 else "Odoo Server Error"
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": code, "message": message, "data": serialize(exc)},
    }
    return web.json_response(body)


class SessionExpired(OdooError):
    """The web session cookie is unknown or was dropped."""

    name = "odoo.http.SessionExpiredException"


class OdooHttp:
    """The routes, bound to one service; web sessions live here."""

    def __init__(self, service: OdooService, faults: Faults) -> None:
        self.service = service
        self.faults = faults
        self.sessions: dict[str, int] = {}
        self.calls: list[str] = []
        """`model.method` of every call served, in order (for tests)."""

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._faults_middleware])
        app.router.add_post("/jsonrpc", self.jsonrpc)
        app.router.add_post("/xmlrpc/2/{service}", self.xmlrpc2)
        app.router.add_post("/xmlrpc/{service}", self.xmlrpc_legacy)
        app.router.add_post("/json/2/{model}/{method}", self.json2)
        app.router.add_get("/doc-bearer/{model}.json", self.doc)
        app.router.add_post("/web/webclient/version_info", self.version_info)
        app.router.add_post("/web/session/authenticate", self.web_authenticate)
        app.router.add_post("/web/session/get_session_info", self.web_session_info)
        app.router.add_post("/web/dataset/call_kw", self.web_call_kw)
        app.router.add_post("/web/dataset/call_kw/{path:.*}", self.web_call_kw)
        return app

    @web.middleware
    async def _faults_middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        if self.faults.fail_next:
            status = self.faults.fail_next.pop(0)
            return web.Response(
                status=status,
                text=f"<html><body><h1>{status}</h1>injected</body></html>",
                content_type="text/html",
            )
        return await handler(request)

    def _now(self) -> Any:
        return self.service.store.clock()

    def _object(self, method: str, args: list[Any]) -> Any:
        if len(args) >= 5:
            self.calls.append(f"{args[3]}.{args[4]}")
        return self.service.object(method, args, self._now())

    def _dispatch(self, service: str, method: str, args: list[Any]) -> Any:
        if service == "common":
            return self.service.common(method, args)
        if service == "object":
            return self._object(method, args)
        if service == "db" and method == "list":
            return [self.service.db]
        raise BadCall("Exception", f"No such RPC service: {service!r}")

    async def jsonrpc(self, request: web.Request) -> web.Response:
        """`/jsonrpc`: HTTP 200 always; errors in `error.data`."""
        payload = await request.json()
        params = payload.get("params") or {}
        try:
            result = self._dispatch(
                str(params.get("service")), str(params.get("method")), list(params.get("args", []))
            )
        except Exception as exc:  # every failure is Odoo's error envelope
            return _rpc_error(payload.get("id"), exc)
        return web.json_response({"jsonrpc": "2.0", "id": payload.get("id"), "result": result})

    def _xmlrpc_call(self, body: bytes, service: str) -> tuple[Any, BaseException | None]:
        params, method = xmlrpc.client.loads(body.decode())
        try:
            result = self._dispatch(service, str(method), list(params))
        except Exception as exc:
            return None, exc
        try:
            # marshalled after the call ran: a None result faults though its effect is kept
            return xmlrpc.client.dumps((result,), methodresponse=True, allow_none=False), None
        except TypeError as exc:
            return None, exc

    async def xmlrpc2(self, request: web.Request) -> web.Response:
        """`/xmlrpc/2/<service>`: integer fault codes 1-4."""
        text, exc = self._xmlrpc_call(await request.read(), request.match_info["service"])
        if exc is not None:
            if isinstance(exc, OdooError) and exc.fault_code != 1:
                fault = xmlrpc.client.Fault(exc.fault_code, exc.message)
            else:
                fault = xmlrpc.client.Fault(1, _debug(exc))
            text = xmlrpc.client.dumps(fault, methodresponse=True)
        return web.Response(text=text, content_type="text/xml")

    async def xmlrpc_legacy(self, request: web.Request) -> web.Response:
        """`/xmlrpc/<service>`: string fault codes, as odoo-client-lib sees them."""
        text, exc = self._xmlrpc_call(await request.read(), request.match_info["service"])
        if exc is not None:
            if isinstance(exc, AccessDenied):
                fault = xmlrpc.client.Fault("AccessDenied", exc.message)  # type: ignore[arg-type]
            elif isinstance(exc, OdooError) and exc.fault_code != 1:
                kind = exc.name.rsplit(".", 1)[-1]
                fault = xmlrpc.client.Fault(f"warning -- {kind}\n\n{exc.message}", "")  # type: ignore[arg-type]
            else:
                fault = xmlrpc.client.Fault(str(exc), _debug(exc))  # type: ignore[arg-type]
            text = xmlrpc.client.dumps(fault, methodresponse=True)
        return web.Response(text=text, content_type="text/xml")

    def _json2_error(self, status: int, exc: BaseException) -> web.Response:
        return web.json_response(serialize(exc), status=status)

    async def json2(self, request: web.Request) -> web.Response:
        """`/json/2/<model>/<method>` (19 only): bearer API key, named arguments."""
        if self.service.store.version < 19:
            raise web.HTTPNotFound()
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        uid = self.service.key_user(key.strip()) if scheme.lower() == "bearer" else None
        if uid is None:
            return self._json2_error(401, _Unauthorized("Invalid apikey"))
        database = request.headers.get("X-Odoo-Database")
        if database is not None and database != self.service.db:
            return self._json2_error(401, _Unauthorized("Invalid apikey"))
        model, method = request.match_info["model"], request.match_info["method"]
        try:
            body = await request.json()
        except ValueError:
            return self._json2_error(400, BadCall("ValueError", "Invalid JSON body"))
        if not isinstance(body, dict):
            return self._json2_error(422, BadCall("ValueError", "The body must be an object"))
        self.calls.append(f"{model}.{method}")
        args: list[Any] = []
        if self.service.record_method(model, method):
            args = [list(body.pop("ids", []))]
        try:
            result = self.service.call(
                Env(self.service.store, uid, self._now()), model, method, args, body
            )
        except BadCall as exc:
            status = 422 if exc.name in ("builtins.TypeError", "builtins.ValueError") else 500
            return self._json2_error(status, exc)
        except AccessDenied as exc:
            return self._json2_error(401, exc)
        except OdooError as exc:
            status = 403 if exc.fault_code == 4 else 422 if exc.fault_code == 2 else 500
            return self._json2_error(status, exc)
        return web.json_response(result)

    async def doc(self, request: web.Request) -> web.Response:
        """`/doc-bearer/<model>.json`: method parameters, for clients that call positionally."""
        model = request.match_info["model"]
        env = Env(self.service.store, 0, self._now())
        methods: dict[str, Any] = {}
        for name in (
            "search",
            "search_read",
            "search_count",
            "read",
            "fields_get",
            "create",
            "write",
            "button_approve",
            "button_cancel",
            "button_draft",
            "message_post",
        ):
            try:
                function, needs_model = self.service._method(env, model, name)
            except BadCall:
                continue
            params = list(inspect.signature(function).parameters)[2 if needs_model else 1 :]
            record = bool(params) and params[0] == "ids"
            params = [p for p in params[1 if record else 0 :] if not p.startswith("_")]
            methods[name] = {
                "parameters": {p: {} for p in params},
                "api": [] if record else ["model"],
            }
        return web.json_response({"model": model, "methods": methods})

    def _jsonrpc_envelope(self, payload: dict[str, Any], result: Any) -> web.Response:
        return web.json_response({"jsonrpc": "2.0", "id": payload.get("id"), "result": result})

    async def version_info(self, request: web.Request) -> web.Response:
        """`/web/webclient/version_info` (odoorpc reads it on connect)."""
        payload = await request.json()
        return self._jsonrpc_envelope(payload, self.service.version())

    def _session_info(self, uid: int, session_id: str) -> dict[str, Any]:
        user = self.service.store.get("res.users", uid)
        return {
            "uid": uid,
            "db": self.service.db,
            "username": user["login"],
            "name": user["name"],
            "session_id": session_id,
            "user_context": {"lang": "en_US", "tz": "Asia/Shanghai", "uid": uid},
            "company_id": user["company_id"],
            **self.service.version(),
        }

    async def web_authenticate(self, request: web.Request) -> web.Response:
        """`/web/session/authenticate`: a password (never an API key) opens a cookie session."""
        payload = await request.json()
        params = payload.get("params") or {}
        uid = self.service.login(
            str(params.get("db")),
            str(params.get("login")),
            str(params.get("password")),
            interactive=True,
        )
        if not uid:
            return _rpc_error(payload.get("id"), AccessDenied())
        session_id = secrets.token_hex(20)
        self.sessions[session_id] = int(uid)
        response = self._jsonrpc_envelope(payload, self._session_info(int(uid), session_id))
        response.set_cookie("session_id", session_id, httponly=True)
        return response

    def _session_uid(self, request: web.Request) -> tuple[int | None, str]:
        session_id = request.cookies.get("session_id", "")
        return self.sessions.get(session_id), session_id

    async def web_session_info(self, request: web.Request) -> web.Response:
        """`/web/session/get_session_info`."""
        payload = await request.json()
        uid, session_id = self._session_uid(request)
        if uid is None:
            return _rpc_error(payload.get("id"), SessionExpired("Session expired"), code=100)
        return self._jsonrpc_envelope(payload, self._session_info(uid, session_id))

    async def web_call_kw(self, request: web.Request) -> web.Response:
        """`/web/dataset/call_kw`: a model method in the cookie session's user."""
        payload = await request.json()
        params = payload.get("params") or {}
        uid, _ = self._session_uid(request)
        if uid is None:
            return _rpc_error(payload.get("id"), SessionExpired("Session expired"), code=100)
        model, method = str(params.get("model")), str(params.get("method"))
        self.calls.append(f"{model}.{method}")
        env = Env(self.service.store, uid, self._now())
        try:
            result = self.service.call(
                env, model, method, list(params.get("args", [])), dict(params.get("kwargs", {}))
            )
        except Exception as exc:
            return _rpc_error(payload.get("id"), exc)
        return self._jsonrpc_envelope(payload, result)


class _Unauthorized(OdooError):
    name = "werkzeug.exceptions.Unauthorized"

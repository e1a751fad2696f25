"""Helpers for the sandbox tests (no tests here): raw HTTP and stream clients, a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote_plus

import aiohttp

from bot.sandbox import SandboxOptions

APP_KEY = "dingtestappkey"
APP_SECRET = "test-app-secret"
TOKEN_HEADER = "x-acs-dingtalk-access-token"
FORM: list[dict[str, Any]] = [
    {"name": "单号", "value": "PO-2026-000123", "details": []},
    {"name": "金额（元）", "value": "13560.00", "details": []},
    {"name": "价格参考", "value": "M-001: 12.00 (历史 10.50–11.80, 均价 11.20) ⚠ 高于历史最高价"},
]

FAST = SandboxOptions(
    qps=None,
    terminate_grace=0.3,
    ack_timeout=1.0,
    redelivery_delay=0.05,
    ping_interval=0.5,
    disconnect_close_delay=0.5,
    chat_reply_wait=3.0,
    chat_quiet=0.1,
    shutdown_timeout=0.5,
)
"""DingTalk's rules with short timings, and no throttling unless a test turns it on."""


def fast(**changes: Any) -> SandboxOptions:
    """FAST with some options changed."""
    return dataclasses.replace(FAST, **changes)


class Api:
    """A plain HTTP client for the sandbox's DingTalk paths."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.token = ""

    async def login(self, app_key: str = APP_KEY, app_secret: str = APP_SECRET) -> str:
        """Fetch an access token and keep it for later calls."""
        status, body = await self.call(
            "POST",
            "/v1.0/oauth2/accessToken",
            {"appKey": app_key, "appSecret": app_secret},
            auth=False,
        )
        assert status == 200, body
        self.token = body["accessToken"]
        return self.token

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        auth: bool = True,
        token: str | None = None,
    ) -> tuple[int, Any]:
        """One request; the HTTP status and the decoded JSON answer."""
        headers = {TOKEN_HEADER: token if token is not None else self.token} if auth else {}
        async with self.session.request(
            method, self.base + path, json=body, params=params, headers=headers
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def create(
        self, process_code: str = "PROC-PO", originator: str = "u1001", **extra: Any
    ) -> str:
        """Create an instance with the default form; its id."""
        body = {
            "processCode": process_code,
            "originatorUserId": originator,
            "deptId": -1,
            "formComponentValues": FORM,
            **extra,
        }
        status, answer = await self.call("POST", "/v1.0/workflow/processInstances", body)
        assert status == 200, answer
        return str(answer["instanceId"])

    async def get(self, instance_id: str) -> dict[str, Any]:
        """The get-instance answer's `result`."""
        status, body = await self.call(
            "GET",
            "/v1.0/workflow/processInstances",
            params={"processInstanceId": instance_id},
        )
        assert status == 200, body
        assert body["success"] == "true"
        result: dict[str, Any] = body["result"]
        return result


class RawStream:
    """A stream client written against the wire protocol, to look at frames as they are."""

    def __init__(self, session: aiohttp.ClientSession, base: str, topics: list[dict[str, str]]):
        self.session = session
        self.base = base
        self.topics = topics
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> Self:
        body = {"clientId": APP_KEY, "clientSecret": APP_SECRET, "subscriptions": self.topics}
        async with self.session.post(self.base + "/v1.0/gateway/connections/open", json=body) as r:
            assert r.status == 200, await r.text()
            opened = await r.json()
        url = f"{opened['endpoint']}?ticket={quote_plus(opened['ticket'])}"
        self.ws = await self.session.ws_connect(url, autoping=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def frame(self, type_: str | None = None, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The next frame (of this type, skipping others)."""
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                frame: dict[str, Any] = json.loads(msg.data)
                if type_ is None or frame["type"] == type_:
                    return frame

    async def ack(self, frame: dict[str, Any], code: int = 200, status: str = "SUCCESS") -> None:
        """ACK a frame as the Go SDK does (code + status)."""
        assert self.ws is not None
        ack = {
            "code": code,
            "headers": {
                "messageId": frame["headers"]["messageId"],
                "contentType": "application/json",
            },
            "message": "OK",
            "data": json.dumps({"status": status, "message": ""}),
        }
        await self.ws.send_str(json.dumps(ack))


@asynccontextmanager
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for one test."""
    async with aiohttp.ClientSession() as session:
        yield session


class FakeClock:
    """A wall clock that only moves when told to."""

    def __init__(self, now: float = 1_795_600_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds

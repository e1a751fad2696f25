"""Chat commands end to end: the sandbox pushes robot messages over the real stream to the service
built by `create_app`, and receives its answers through the sessionWebhook or one to one."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from approvals.config import ApprovalsConfig, DatabaseConfig, JobConfig, ProcessConfig
from approvals.db import repo
from approvals.ports import SystemClock
from approvals.states import State
from bot.app import create_app
from bot.chat import AppChat
from bot.keys import DATABASE, STREAM
from bot.sandbox import Sandbox, SandboxOptions
from bot.settings import DingTalkConfig, Settings
from erp_adapter.config import ErpConfig
from tests import dbutil
from tests.harness import SECRET, event, order, signed
from tests.test_stream import until

APP_KEY = "dingchattestapp"
ADMIN = "dt-admin"
SESSION_API = "POST /robot/sendBySession"


class ShiftedClock(SystemClock):
    """The real clock, moved by `offset`: what the responder believes the time is."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        return super().now() + self.offset


def settings_for(db_url: str, sandbox_url: str) -> Settings:
    """The service pointed at the sandbox for everything DingTalk."""
    return Settings(
        database=DatabaseConfig(url=db_url),
        erp=ErpConfig(base_url="http://127.0.0.1:9", webhook_secret=SecretStr(SECRET)),
        dingtalk=DingTalkConfig(
            api_base=sandbox_url,
            oapi_base=sandbox_url,
            app_key=APP_KEY,
            app_secret=SecretStr("chat-test-secret"),
            robot_code=APP_KEY,
            admins=[ADMIN],
        ),
        approvals=ApprovalsConfig(
            purchase_order=ProcessConfig(process_code="PROC-CHAT-PO"),
            replenishment=ProcessConfig(process_code="PROC-CHAT-RPL"),
        ),
        users={"u1001": "dt-buyer"},
        jobs=JobConfig(poll_interval_s=0.05),
    )


@dataclass
class Service:
    """The running service, its URL, and the clock its chat responder reads."""

    app: web.Application
    url: str
    clock: ShiftedClock
    sandbox: Sandbox
    http: aiohttp.ClientSession

    async def submit(self, doc_no: str) -> str:
        """The ERP submits an order; its instance id once the bridge holds it as pending."""
        body = event(f"e-{doc_no}", "purchase_order.submitted", order(doc_no))
        raw = json.dumps(body, ensure_ascii=False).encode()
        async with self.http.post(self.url + "/erp/events", data=raw, headers=signed(raw)) as r:
            assert r.status == 202, await r.text()
        deadline = time.monotonic() + 10
        while True:
            async with self.app[DATABASE].read() as conn:
                [row] = await repo.revisions_of(conn, doc_no)
            if row.state is State.PENDING and row.instance_id is not None:
                return row.instance_id
            assert time.monotonic() < deadline, f"{doc_no} is {row.state}"
            await asyncio.sleep(0.05)


@asynccontextmanager
async def service(tmp_path: Path, template: Path, **options: Any) -> AsyncIterator[Service]:
    """The sandbox in its own thread and the whole service, chat wired as `bot/app.py` would."""
    sandbox = Sandbox(SandboxOptions(ping_interval=0.5, chat_quiet=0.2, **options))
    await asyncio.to_thread(sandbox.start_in_thread)
    try:
        settings = settings_for(dbutil.copy_sqlite(template, tmp_path / "b.db"), sandbox.url)
        clock = ShiftedClock()
        # create_app needs the handler before the services exist: bind it to the app after.
        chat = AppChat(settings, clock=clock)
        app = create_app(settings, chat=chat)
        chat.bind(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            await until(lambda: app[STREAM].connected)
            async with aiohttp.ClientSession() as http:
                yield Service(app, f"http://{host}:{port}", clock, sandbox, http)
        finally:
            await runner.cleanup()
    finally:
        await sandbox.stop_async()


async def test_commands_are_answered_in_the_conversation(
    tmp_path: Path, sqlite_template: Path
) -> None:
    async with service(tmp_path, sqlite_template) as svc:
        instance_id = await svc.submit("PO-1")
        [instance] = await svc.sandbox.instances()
        assert (instance["instanceId"], instance["status"]) == (instance_id, "RUNNING")
        answer = await svc.sandbox.deliver_chat(ADMIN, "status PO-1")
        [reply] = answer["replies"]
        assert (reply["kind"], reply["msgType"]) == ("session", "markdown")
        assert reply["title"] == "审批状态 / status"
        assert "PO-1：审批中 (pending)" in reply["text"]
        assert instance_id in reply["text"]
        # The control API over HTTP, in a group with @: the text arrives after a space.
        body = {"senderStaffId": ADMIN, "text": "帮助", "conversationType": "2"}
        async with svc.http.post(svc.sandbox.url + "/sandbox/chat", json=body) as r:
            assert r.status == 200, await r.text()
            [reply] = (await r.json())["replies"]
        assert reply["kind"] == "session" and reply["raw"]["atUserIds"] == [ADMIN]
        assert "**状态** / `status <" in reply["text"] and "撤销" in reply["text"]
        [listed] = (await svc.sandbox.deliver_chat(ADMIN, "待审批"))["replies"]
        assert "待审批 / pending：1" in listed["text"] and "**PO-1** r1" in listed["text"]
        # Someone who is not an admin gets a short refusal.
        [refusal] = (await svc.sandbox.deliver_chat("dt-someone", "pending"))["replies"]
        assert "只有管理员" in refusal["text"]


async def test_an_expired_session_is_answered_one_to_one(
    tmp_path: Path, sqlite_template: Path
) -> None:
    # Every session expires at once: its expiry time has passed when the bot answers.
    async with service(tmp_path, sqlite_template, session_webhook_ttl=0.0) as svc:
        [reply] = (await svc.sandbox.deliver_chat(ADMIN, "health"))["replies"]
        assert (reply["kind"], reply["msgType"], reply["userIds"]) == (
            "oto",
            "sampleMarkdown",
            [ADMIN],
        )
        assert "钉钉连接 / stream：✅ 已连接" in reply["text"]
        assert SESSION_API not in (await svc.sandbox.stats())["calls"]["apis"]
        # A clock behind DingTalk's believes the session alive: DingTalk says 300001.
        svc.clock.offset = -dt.timedelta(hours=1)
        [reply] = (await svc.sandbox.deliver_chat(ADMIN, "状态 PO-404"))["replies"]
        assert reply["kind"] == "oto" and "未找到 `PO-404`" in reply["text"]
        assert (await svc.sandbox.stats())["calls"]["apis"][SESSION_API]["calls"] == 1
        async with svc.http.get(svc.sandbox.url + "/sandbox/messages") as r:
            sent = await r.json()
        assert [m["kind"] for m in sent] == ["oto", "oto"]

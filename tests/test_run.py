"""`approval-bridge run` as a process against the DingTalk sandbox and the reference ERP.

Includes the crash test of DESIGN.md section 3: the process is killed after DingTalk created an
instance but before the bridge recorded it; the restarted process must not raise a second one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.sandbox.options import SandboxOptions
from bot.sandbox.server import Sandbox
from erp_adapter.reference.erp import ReferenceErp
from tests import dbutil
from tests.harness import order

SCRIPT = Path(sys.executable).with_name("approval-bridge")
SECRET = "run-test-webhook-secret"
APP_KEY, APP_SECRET = "dingruntestapp", "run-test-app-secret"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A strict sandbox (only our app's credentials) on its own loop in a thread."""
    box = Sandbox(SandboxOptions(app_key=APP_KEY, app_secret=APP_SECRET)).start_in_thread()
    yield box
    box.stop()


@pytest.fixture
async def erp() -> AsyncIterator[ReferenceErp]:
    async with ReferenceErp(secret=SECRET) as reference:
        yield reference


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(folder: Path, db_url: str, port: int, sandbox: Sandbox, erp: ReferenceErp) -> Path:
    path = folder / "bridge.toml"
    path.write_text(
        f"""
[database]
url = "{db_url}"
[http]
port = {port}
[dingtalk]
api_base = "{sandbox.url}"
oapi_base = "{sandbox.url}"
app_key = "{APP_KEY}"
robot_code = "{APP_KEY}"
admins = ["dt-admin"]
[erp]
base_url = "{erp.url}"
[approvals.purchase_order]
process_code = "PROC-RUN-PO"
[approvals.replenishment]
process_code = "PROC-RUN-RPL"
[jobs]
poll_interval_s = 0.1
backoff_initial_s = 0.2
lease_s = 5
[users]
"u1001" = "dt-buyer"
""",
        encoding="utf-8",
    )
    return path


def start(config: Path, app_secret: str = APP_SECRET) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPROVAL_BRIDGE")}
    env |= {
        "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET": SECRET,
        "APPROVAL_BRIDGE__DINGTALK__APP_SECRET": app_secret,
    }
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]
    return subprocess.Popen(
        [*command, "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def until_ready(
    port: int, process: subprocess.Popen[str], wait_s: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    body: dict[str, Any] = await response.json()
                    if response.status == 200:
                        return body
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the bridge never became ready")


async def until(predicate: Any, wait_s: float = 20) -> None:
    deadline = time.monotonic() + wait_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> tuple[int, float, str]:
    """SIGTERM, then wait: the exit code, how long it took, and what it printed on stderr."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    return process.returncode, time.monotonic() - started, err


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    return dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")


async def test_run_refuses_wrong_dingtalk_credentials_at_once(
    tmp_path: Path, db_url: str, sandbox: Sandbox, erp: ReferenceErp
) -> None:
    config = write_config(tmp_path, db_url, free_port(), sandbox, erp)
    process = start(config, app_secret="not-the-secret")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2, err
    assert "DingTalk refused the app credentials" in err
    assert "APPROVAL_BRIDGE__DINGTALK__APP_SECRET" in err
    assert "Traceback" not in err


async def test_run_serves_the_whole_loop_and_stops_cleanly(
    tmp_path: Path, db_url: str, sandbox: Sandbox, erp: ReferenceErp
) -> None:
    port = free_port()
    process = start(write_config(tmp_path, db_url, port, sandbox, erp))
    try:
        ready = await until_ready(port, process)
        assert ready["checks"] == {"database": "ok", "dingtalk_stream": "ok"}
        erp.bridge_url = f"http://127.0.0.1:{port}"
        erp.submit_order(order("PO-RUN-1") | {"revision": 1})
        await erp.wait_delivered()

        async def raised() -> bool:
            return len(await sandbox.instances()) == 1

        await until(raised)
        [instance] = await sandbox.instances()
        await sandbox.approve(instance["instanceId"], remark="同意")

        async def written_back() -> bool:
            return erp.order("PO-RUN-1").status == "approved"

        await until(written_back)
    finally:
        code, took, err = stop(process)
    assert code == 0, err
    assert took < 10
    [write_back] = [w for w in erp.write_backs if w.status == 200]
    assert write_back.body["decision"] == "approved"
    assert write_back.body["approvers"][0]["user_id"] == "manager1"


async def test_a_crash_between_create_and_commit_raises_no_second_instance(
    tmp_path: Path, db_url: str, sandbox: Sandbox, erp: ReferenceErp
) -> None:
    port = free_port()
    config = write_config(tmp_path, db_url, port, sandbox, erp)
    # DingTalk creates the instance, but its reply is held: the bridge has not recorded it yet.
    await sandbox.set_faults(hold_create_reply=60.0)
    first = start(config)
    try:
        await until_ready(port, first)
        erp.bridge_url = f"http://127.0.0.1:{port}"
        erp.submit_order(order("PO-CRASH-1") | {"revision": 1})
        await erp.wait_delivered()

        async def created() -> bool:
            return len(await sandbox.instances()) == 1

        await until(created)
    finally:
        first.send_signal(signal.SIGKILL)  # the crash point: created in DingTalk, not committed
        first.communicate(timeout=10)
    await sandbox.set_faults(hold_create_reply=0.0)
    second = start(config)
    try:
        await until_ready(port, second)

        # The restarted bridge looks the instance up by its reference instead of creating one.
        await asyncio.sleep(2.0)  # time for a wrong second create to show up, if there were one
        [instance] = await sandbox.instances()
        await sandbox.approve(instance["instanceId"])

        async def written_back() -> bool:
            return erp.order("PO-CRASH-1").status == "approved"

        await until(written_back)
        assert len(await sandbox.instances()) == 1
    finally:
        code, _, err = stop(second)
    assert code == 0, err

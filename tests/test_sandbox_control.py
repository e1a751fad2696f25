"""The control API and the page: instances, approving and refusing, events per transition."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.sandbox import Sandbox, serve
from tests.test_sandbox_support import FORM, Api, FakeClock, fast


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sandbox(clock: FakeClock) -> AsyncIterator[Sandbox]:
    async with Sandbox(fast(terminate_grace=15.0), clock=clock) as sandbox:
        yield sandbox


@pytest.fixture
async def api(sandbox: Sandbox) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        client = Api(session, sandbox.url)
        await client.login()
        yield client


async def post(api: Api, path: str, body: Any = None) -> tuple[int, Any]:
    async with api.session.post(api.base + path, json=body) as resp:
        return resp.status, await resp.json()


def flow(events: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    """(event type, type, staffId, result) of each event, in emission order."""
    return [
        (e["eventType"], e["data"]["type"], e["data"]["staffId"], e["data"].get("result"))
        for e in events
    ]


async def test_instances_lists_the_documented_fields(api: Api) -> None:
    instance_id = await api.create()
    async with api.session.get(api.base + "/sandbox/instances") as resp:
        [listed] = await resp.json()
    documented = "instanceId processCode status result formComponentValues tasks originatorUserId"
    assert {*documented.split(), "createTime"} <= set(listed)
    assert (listed["instanceId"], listed["status"], listed["result"]) == (
        instance_id,
        "RUNNING",
        None,
    )
    assert [v["value"] for v in listed["formComponentValues"]] == [v["value"] for v in FORM]
    assert listed["tasks"][0]["userId"] == "manager1"


async def test_approve_emits_task_then_instance_finish(api: Api, sandbox: Sandbox) -> None:
    instance_id = await api.create(originator="u1001")
    status, body = await post(api, f"/sandbox/instances/{instance_id}/approve")
    assert status == 200 and (body["status"], body["result"]) == ("COMPLETED", "agree")
    events = await sandbox.events()
    assert flow(events) == [
        ("bpms_instance_change", "start", "u1001", None),
        ("bpms_task_change", "start", "manager1", None),
        ("bpms_task_change", "finish", "manager1", "agree"),
        ("bpms_instance_change", "finish", "u1001", "agree"),
    ]
    assert len({e["eventId"] for e in events}) == 4
    task_finish, instance_finish = events[2]["data"], events[3]["data"]
    assert task_finish["taskId"] == body["tasks"][0]["taskId"] and "remark" in task_finish
    assert isinstance(instance_finish["finishTime"], int) and instance_finish["url"]


async def test_refuse_with_user_and_remark(api: Api, sandbox: Sandbox) -> None:
    instance_id = await api.create()
    body = {"userId": "manager1", "remark": "价格高于历史最高价"}
    status, answer = await post(api, f"/sandbox/instances/{instance_id}/refuse", body)
    assert status == 200 and answer["result"] == "refuse"
    events = await sandbox.events()
    assert flow(events)[2:] == [
        ("bpms_task_change", "finish", "manager1", "refuse"),
        ("bpms_instance_change", "finish", "u1001", "refuse"),
    ]
    assert events[2]["data"]["remark"] == "价格高于历史最高价"
    assert (await api.get(instance_id))["tasks"][0]["result"] == "REFUSE"


async def test_control_errors(api: Api) -> None:
    assert (await post(api, "/sandbox/instances/nope/approve"))[0] == 404
    instance_id = await api.create()
    status, body = await post(api, f"/sandbox/instances/{instance_id}/approve", {"userId": "x"})
    assert (status, body["error"]) == (400, "not_an_approver")
    await post(api, f"/sandbox/instances/{instance_id}/approve")
    status, body = await post(api, f"/sandbox/instances/{instance_id}/refuse")
    assert (status, body["error"]) == (409, "not_running")


async def test_countersign_then_a_final_approver(api: Api, sandbox: Sandbox) -> None:
    approvers = [
        {"actionType": "AND", "userIds": ["a1", "a2"]},
        {"actionType": "NONE", "userIds": ["boss"]},
    ]
    instance_id = await api.create(approvers=approvers)
    await sandbox.approve(instance_id, "a2")
    assert (await api.get(instance_id))["status"] == "RUNNING"
    await sandbox.approve(instance_id, "a1")
    await sandbox.refuse(instance_id, "boss", "预算不足")
    assert flow(await sandbox.events()) == [
        ("bpms_instance_change", "start", "u1001", None),
        ("bpms_task_change", "start", "a1", None),
        ("bpms_task_change", "start", "a2", None),
        ("bpms_task_change", "finish", "a2", "agree"),
        ("bpms_task_change", "finish", "a1", "agree"),
        ("bpms_task_change", "start", "boss", None),
        ("bpms_task_change", "finish", "boss", "refuse"),
        ("bpms_instance_change", "finish", "u1001", "refuse"),
    ]


async def test_or_sign_cancels_the_other_approvers(api: Api, sandbox: Sandbox) -> None:
    instance_id = await api.create(approvers=[{"actionType": "OR", "userIds": ["x", "y"]}])
    await sandbox.approve(instance_id, "y")
    assert flow(await sandbox.events())[3:] == [
        ("bpms_task_change", "finish", "y", "agree"),
        ("bpms_task_change", "cancel", "x", None),
        ("bpms_instance_change", "finish", "u1001", "agree"),
    ]
    tasks = {t["userId"]: t["status"] for t in (await api.get(instance_id))["tasks"]}
    assert tasks == {"x": "CANCELED", "y": "COMPLETED"}


async def test_terminate_emits_terminate_without_result(
    api: Api, sandbox: Sandbox, clock: FakeClock
) -> None:
    instance_id = await api.create()
    clock.advance(20)
    body = {"processInstanceId": instance_id, "isSystem": True}
    assert (await api.call("POST", "/v1.0/workflow/processInstances/terminate", body))[0] == 200
    last = (await sandbox.events())[-1]
    assert (last["eventType"], last["data"]["type"], last["data"]["staffId"]) == (
        "bpms_instance_change",
        "terminate",
        "u1001",
    )
    assert "result" not in last["data"]


async def test_page_lists_pending_instances_and_its_form_approves(
    api: Api, sandbox: Sandbox
) -> None:
    hostile = {"name": "备注", "value": "<script>alert(1)</script>"}
    instance_id = await api.create(formComponentValues=[*FORM, hostile])
    async with api.session.get(sandbox.url + "/sandbox/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    assert instance_id in page
    assert "价格参考" in page and "高于历史最高价" in page  # the price context in the form
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)=["']https?://""", page)  # no external assets
    action = f'action="/sandbox/instances/{instance_id}/approve"'
    assert action in page and f'action="/sandbox/instances/{instance_id}/refuse"' in page
    async with api.session.post(
        f"{sandbox.url}/sandbox/instances/{instance_id}/approve",
        data={"remark": "同意（页面）"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/sandbox/"
    result = await api.get(instance_id)
    assert (result["status"], result["result"]) == ("COMPLETED", "agree")
    assert result["operationRecords"][1]["remark"] == "同意（页面）"
    async with api.session.get(sandbox.url + "/sandbox/") as resp:
        assert "Nothing is waiting for approval" in await resp.text()


async def test_page_form_errors_come_back_on_the_page(api: Api, sandbox: Sandbox) -> None:
    async with api.session.post(
        sandbox.url + "/sandbox/chat", data={"senderStaffId": "u1", "text": "help"}
    ) as resp:
        assert resp.status == 200 and resp.url.path == "/sandbox/"
        assert "no stream connection takes robot messages" in await resp.text()


async def test_messages_and_stats_endpoints(api: Api, sandbox: Sandbox) -> None:
    async with api.session.get(sandbox.url + "/sandbox/messages") as resp:
        assert await resp.json() == []
    await api.create()
    async with api.session.get(sandbox.url + "/sandbox/stats") as resp:
        stats = await resp.json()
    assert {"calls", "events", "stream", "callback", "tokens", "limits"} <= set(stats)
    assert stats["calls"]["apis"]["POST /v1.0/workflow/processInstances"]["ok"] == 1
    assert stats["events"]["emitted"] == 2 and stats["events"]["pending"] == 2
    assert stats["stream"]["open"] == 0


async def test_facade_in_a_thread_from_this_loop() -> None:
    sandbox = Sandbox(fast()).start_in_thread()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, sandbox.url)
            await api.login()
            instance_id = await api.create()
        [listed] = await sandbox.instances()
        assert listed["instanceId"] == instance_id
        assert (await sandbox.refuse(instance_id, remark="no"))["result"] == "refuse"
        assert (await sandbox.set_faults(latency=0.01)).latency == 0.01
        assert (await sandbox.stats())["instances"] == {"total": 1, "running": 0}
        with pytest.raises(RuntimeError):
            await sandbox.close()  # its loop is the thread's, not this one
    finally:
        await sandbox.stop_async()
    with pytest.raises(RuntimeError):
        await sandbox.instances()


async def test_serve_prints_its_url_and_stops_when_cancelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = asyncio.create_task(serve("127.0.0.1", 0, fast()))
    output = ""
    async with asyncio.timeout(5):
        while "/sandbox/" not in output:
            await asyncio.sleep(0.02)
            output += capsys.readouterr().out
    url = re.search(r"DingTalk sandbox on (http://\S+)", output)
    assert url is not None
    async with aiohttp.ClientSession() as session, session.get(url[1] + "/sandbox/") as resp:
        assert resp.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

"""The official alibabacloud-dingtalk (Tea) SDK against the sandbox: shapes, types and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alibabacloud_dingtalk.oauth2_1_0 import models as oauth_models
from alibabacloud_dingtalk.oauth2_1_0.client import Client as OAuthClient
from alibabacloud_dingtalk.workflow_1_0 import models as wf
from alibabacloud_dingtalk.workflow_1_0.client import Client as WorkflowClient
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_util.models import RuntimeOptions

from bot.sandbox import Sandbox
from tests.test_sandbox_support import APP_KEY, APP_SECRET, FORM, FakeClock, fast


class Tea:
    """The Tea SDK's workflow client with a token, pointed at the sandbox (spec §1)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.config = Config(
            protocol="http", region_id="central", endpoint=sandbox.url.removeprefix("http://")
        )
        self.workflow = WorkflowClient(self.config)
        self.token = ""
        self.runtime = RuntimeOptions()

    async def login(self, app_key: str = APP_KEY, app_secret: str = APP_SECRET) -> str:
        request = oauth_models.GetAccessTokenRequest(app_key=app_key, app_secret=app_secret)
        answer = await OAuthClient(self.config).get_access_token_async(request)
        assert answer.body.expire_in == 7200
        self.token = str(answer.body.access_token)
        return self.token

    async def create(self, **extra: Any) -> str:
        values = [
            wf.StartProcessInstanceRequestFormComponentValues(name=v["name"], value=v["value"])
            for v in FORM
        ]
        request = wf.StartProcessInstanceRequest(
            process_code="PROC-PO",
            originator_user_id="u1001",
            dept_id=-1,
            form_component_values=values,
            **extra,
        )
        headers = wf.StartProcessInstanceHeaders(x_acs_dingtalk_access_token=self.token)
        answer = await self.workflow.start_process_instance_with_options_async(
            request, headers, self.runtime
        )
        return str(answer.body.instance_id)

    async def get(self, instance_id: str) -> Any:
        request = wf.GetProcessInstanceRequest(process_instance_id=instance_id)
        headers = wf.GetProcessInstanceHeaders(x_acs_dingtalk_access_token=self.token)
        answer = await self.workflow.get_process_instance_with_options_async(
            request, headers, self.runtime
        )
        return answer.body

    async def terminate(self, instance_id: str) -> Any:
        request = wf.TerminateProcessInstanceRequest(
            process_instance_id=instance_id, is_system=True, remark="ERP 撤回"
        )
        headers = wf.TerminateProcessInstanceHeaders(x_acs_dingtalk_access_token=self.token)
        answer = await self.workflow.terminate_process_instance_with_options_async(
            request, headers, self.runtime
        )
        return answer.body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def tea(clock: FakeClock) -> AsyncIterator[Tea]:
    async with Sandbox(fast(terminate_grace=15.0, qps=2), clock=clock) as sandbox:
        client = Tea(sandbox)
        await client.login()
        yield client


async def test_create_get_terminate_with_the_tea_sdk(tea: Tea, clock: FakeClock) -> None:
    instance_id = await tea.create()
    body = await tea.get(instance_id)
    assert body.success == "true"
    result = body.result
    assert (result.status, result.result, result.originator_user_id) == ("RUNNING", None, "u1001")
    assert [(v.name, v.value) for v in result.form_component_values] == [
        (v["name"], v["value"]) for v in FORM
    ]
    [task] = result.tasks
    assert isinstance(task.task_id, int)
    assert (task.user_id, task.status, task.result) == ("manager1", "RUNNING", "NONE")
    clock.advance(16)
    answer = await tea.terminate(instance_id)
    assert (answer.result, answer.success) == (True, True)
    after = (await tea.get(instance_id)).result
    assert (after.status, after.result) == ("TERMINATED", None)


async def test_terminate_too_early_raises_the_documented_code(tea: Tea) -> None:
    instance_id = await tea.create()
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the Tea SDK's own exception types
        await tea.terminate(instance_id)
    assert getattr(caught.value, "code", None) == "aflowProcessInstStatusException"
    data = getattr(caught.value, "data", {})
    assert data["statusCode"] == 400 and data["requestid"]


async def test_execute_and_list_ids_with_the_tea_sdk(tea: Tea, clock: FakeClock) -> None:
    start = int(clock() * 1000)
    instance_id = await tea.create()
    task_id = (await tea.get(instance_id)).result.tasks[0].task_id
    request = wf.ExecuteProcessInstanceRequest(
        process_instance_id=instance_id,
        task_id=task_id,
        actioner_user_id="manager1",
        result="refuse",
        remark="价格过高",
    )
    headers = wf.ExecuteProcessInstanceHeaders(x_acs_dingtalk_access_token=tea.token)
    answer = await tea.workflow.execute_process_instance_with_options_async(
        request, headers, tea.runtime
    )
    assert (answer.body.result, answer.body.success) == (True, True)
    result = (await tea.get(instance_id)).result
    assert (result.status, result.result, result.tasks[0].result) == (
        "COMPLETED",
        "refuse",
        "REFUSE",
    )
    query = wf.ListProcessInstanceIdsRequest(
        process_code="PROC-PO", start_time=start, max_results=20, next_token=0
    )
    listed = await tea.workflow.list_process_instance_ids_with_options_async(
        query, wf.ListProcessInstanceIdsHeaders(x_acs_dingtalk_access_token=tea.token), tea.runtime
    )
    assert listed.body.success is True
    assert (listed.body.result.list, listed.body.result.next_token) == ([instance_id], None)


async def test_tea_sees_throttling_and_bad_tokens_as_dingtalk_errors(tea: Tea) -> None:
    instance_id = await tea.create()
    await tea.get(instance_id)
    await tea.get(instance_id)
    with pytest.raises(Exception) as throttled:  # noqa: PT011
        await tea.get(instance_id)  # the third call this second, with qps=2
    assert (
        getattr(throttled.value, "code", None) == "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
    )
    assert getattr(throttled.value, "data", {})["statusCode"] == 403
    tea.token = "stale"
    with pytest.raises(Exception) as refused:  # noqa: PT011
        await tea.create()
    assert getattr(refused.value, "code", None) == "InvalidAuthentication"

"""The sandbox's OpenAPI subset over real HTTP: tokens, the workflow state machine, listing ids."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.sandbox import Sandbox
from tests.test_sandbox_support import APP_KEY, APP_SECRET, FORM, Api, FakeClock, fast

API_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\dZ$")
CREATE = "/v1.0/workflow/processInstances"
TERMINATE = "/v1.0/workflow/processInstances/terminate"
EXECUTE = "/v1.0/workflow/processInstances/execute"
LIST = "/v1.0/workflow/processes/instanceIds/query"


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


def assert_error(status: int, body: dict[str, object], code: str, http: int = 400) -> None:
    """A new-API error: the status and `{"code","message","requestid"}`."""
    assert (status, body["code"]) == (http, code), body
    assert set(body) == {"code", "message", "requestid"}
    assert isinstance(body["requestid"], str) and body["requestid"]


# -- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "not-a-token"])
async def test_every_call_needs_a_valid_token(api: Api, token: str) -> None:
    status, body = await api.call("POST", CREATE, {"processCode": "P"}, token=token)
    assert_error(status, body, "InvalidAuthentication")
    status, body = await api.call("GET", CREATE, params={"processInstanceId": "x"}, auth=False)
    assert_error(status, body, "InvalidAuthentication")


async def test_same_token_while_valid_then_a_new_one(api: Api, clock: FakeClock) -> None:
    first = api.token
    status, body = await api.call(
        "POST", "/v1.0/oauth2/accessToken", {"appKey": APP_KEY, "appSecret": APP_SECRET}
    )
    assert (status, body) == (200, {"accessToken": first, "expireIn": 7200})
    clock.advance(7000)
    assert await api.login() == first  # fetching again extends its life
    clock.advance(7000)
    assert (await api.create()) != ""  # still valid: 7000 s after the extension
    clock.advance(201)
    status, body = await api.call("POST", CREATE, {"processCode": "P"})
    assert_error(status, body, "InvalidAuthentication")
    assert await api.login() != first


async def test_invalidated_token_stops_working(api: Api, sandbox: Sandbox) -> None:
    old = api.token
    async with api.session.post(sandbox.url + "/sandbox/token/invalidate") as resp:
        assert await resp.json() == {"invalidated": 1}
    status, body = await api.call("GET", CREATE, params={"processInstanceId": "x"})
    assert_error(status, body, "InvalidAuthentication")
    assert await api.login() != old
    assert await api.create()


async def test_any_app_is_accepted_by_default(api: Api) -> None:
    assert await api.login("some-other-app", "whatever")
    status, body = await api.call(
        "POST", "/v1.0/oauth2/accessToken", {"appKey": "", "appSecret": "x"}, auth=False
    )
    assert_error(status, body, "invalidClientIdOrSecret")


async def test_strict_app_credentials() -> None:
    options = fast(app_key=APP_KEY, app_secret=APP_SECRET)
    async with Sandbox(options) as sandbox, aiohttp.ClientSession() as session:
        api = Api(session, sandbox.url)
        assert await api.login()
        status, body = await api.call(
            "POST", "/v1.0/oauth2/accessToken", {"appKey": APP_KEY, "appSecret": "nope"}
        )
        assert_error(status, body, "invalidClientIdOrSecret")
        open_body = {"clientId": APP_KEY, "clientSecret": "nope", "subscriptions": []}
        status, body = await api.call(
            "POST", "/v1.0/gateway/connections/open", open_body, auth=False
        )
        assert_error(status, body, "authFailed", 401)
        status, body = await api.call(
            "GET", "/gettoken", params={"appkey": "other", "appsecret": APP_SECRET}, auth=False
        )
        assert status == 200 and body["errcode"] == 40001


# -- create and get -------------------------------------------------------------------------


async def test_create_then_get_has_the_documented_shape(api: Api) -> None:
    instance_id = await api.create()
    result = await api.get(instance_id)
    assert result["status"] == "RUNNING"
    assert "result" not in result and "finishTime" not in result
    assert API_TIME.match(result["createTime"])
    assert result["originatorUserId"] == "u1001"
    assert result["formComponentValues"] == [{"name": v["name"], "value": v["value"]} for v in FORM]
    [task] = result["tasks"]
    assert isinstance(task["taskId"], int) and not isinstance(task["taskId"], bool)
    assert (task["userId"], task["status"], task["result"]) == ("manager1", "RUNNING", "NONE")
    assert task["processInstanceId"] == instance_id
    assert [r["type"] for r in result["operationRecords"]] == ["START_PROCESS_INSTANCE"]
    assert "approverUserIds" not in result  # only for instances created with approvers


async def test_explicit_approvers_replace_the_default_flow(api: Api) -> None:
    instance_id = await api.create(approvers=[{"actionType": "AND", "userIds": ["a1", "a2"]}])
    result = await api.get(instance_id)
    assert [t["userId"] for t in result["tasks"]] == ["a1", "a2"]
    assert result["approverUserIds"] == ["a1", "a2"]


async def test_create_rejects_what_dingtalk_rejects(api: Api) -> None:
    no_dept = {"processCode": "P", "originatorUserId": "u1", "formComponentValues": FORM}
    status, body = await api.call("POST", CREATE, no_dept)
    assert_error(status, body, "invalidParameter")
    not_string = {**no_dept, "deptId": 1, "formComponentValues": [{"name": "金额", "value": 1}]}
    status, body = await api.call("POST", CREATE, not_string)
    assert_error(status, body, "formConverterError")
    status, body = await api.call("POST", CREATE, {**no_dept, "deptId": 1, "processCode": ""})
    assert_error(status, body, "invalidParameter")


async def test_strict_templates_check_process_codes_and_labels() -> None:
    options = fast(process_codes={"PROC-PO": [v["name"] for v in FORM]})
    async with Sandbox(options) as sandbox, aiohttp.ClientSession() as session:
        api = Api(session, sandbox.url)
        await api.login()
        assert await api.create("PROC-PO")
        body = {
            "processCode": "PROC-PO",
            "originatorUserId": "u1",
            "deptId": -1,
            "formComponentValues": [*FORM, {"name": "不存在的字段", "value": "x"}],
        }
        status, answer = await api.call("POST", CREATE, body)
        assert_error(status, answer, "formConverterError")
        assert "不存在的字段" in answer["message"]
        status, answer = await api.call("POST", CREATE, {**body, "processCode": "PROC-X"})
        assert_error(status, answer, "processCodeError")


async def test_get_unknown_instance(api: Api) -> None:
    status, body = await api.call("GET", CREATE, params={"processInstanceId": "nope"})
    assert_error(status, body, "processInstanceNotExist")


async def test_unknown_api_path_is_dingtalks_404(api: Api) -> None:
    status, body = await api.call("GET", "/v1.0/workflow/nothing")
    assert_error(status, body, "InvalidAction.NotFound", 404)


# -- execute and terminate ------------------------------------------------------------------


async def test_execute_agree_completes_with_agree(api: Api) -> None:
    instance_id = await api.create()
    task_id = (await api.get(instance_id))["tasks"][0]["taskId"]
    body = {
        "processInstanceId": instance_id,
        "taskId": task_id,
        "actionerUserId": "manager1",
        "result": "agree",
        "remark": "同意",
    }
    assert await api.call("POST", EXECUTE, body) == (200, {"result": True, "success": True})
    result = await api.get(instance_id)
    assert (result["status"], result["result"]) == ("COMPLETED", "agree")
    assert API_TIME.match(result["finishTime"])
    task = result["tasks"][0]
    assert (task["status"], task["result"]) == ("COMPLETED", "AGREE")
    execute = [r for r in result["operationRecords"] if r["type"] == "EXECUTE_TASK_NORMAL"]
    assert [(r["userId"], r["result"], r["remark"]) for r in execute] == [
        ("manager1", "AGREE", "同意")
    ]
    status, answer = await api.call("POST", EXECUTE, body)
    assert_error(status, answer, "aflowProcessInstStatusException")


async def test_execute_refuse_completes_with_refuse(api: Api) -> None:
    instance_id = await api.create()
    task_id = (await api.get(instance_id))["tasks"][0]["taskId"]
    body = {"processInstanceId": instance_id, "taskId": task_id, "result": "refuse"}
    status, answer = await api.call("POST", EXECUTE, {**body, "actionerUserId": "intruder"})
    assert_error(status, answer, "invalidParameter")
    assert (await api.call("POST", EXECUTE, {**body, "actionerUserId": "manager1"}))[0] == 200
    result = await api.get(instance_id)
    assert (result["status"], result["result"]) == ("COMPLETED", "refuse")
    assert result["tasks"][0]["result"] == "REFUSE"


async def test_terminate_is_refused_within_15_seconds(api: Api, clock: FakeClock) -> None:
    instance_id = await api.create()
    body = {"processInstanceId": instance_id, "isSystem": True, "remark": "撤回"}
    clock.advance(14.9)
    status, answer = await api.call("POST", TERMINATE, body)
    assert_error(status, answer, "aflowProcessInstStatusException")
    clock.advance(0.2)
    assert await api.call("POST", TERMINATE, body) == (200, {"result": True, "success": True})
    result = await api.get(instance_id)
    assert result["status"] == "TERMINATED"
    assert "result" not in result
    assert result["operationRecords"][-1]["type"] == "TERMINATE_PROCESS_INSTANCE"
    status, answer = await api.call("POST", TERMINATE, body)
    assert_error(status, answer, "aflowProcessInstStatusException")


async def test_terminate_refused_once_finished(
    api: Api, sandbox: Sandbox, clock: FakeClock
) -> None:
    instance_id = await api.create()
    clock.advance(60)
    await sandbox.approve(instance_id)
    status, answer = await api.call("POST", TERMINATE, {"processInstanceId": instance_id})
    assert_error(status, answer, "aflowProcessInstStatusException")
    assert (await api.get(instance_id))["result"] == "agree"


async def test_terminate_checks_instance_and_operator(api: Api, clock: FakeClock) -> None:
    status, answer = await api.call("POST", TERMINATE, {"processInstanceId": "nope"})
    assert_error(status, answer, "aflowProcessInstNotExist")
    instance_id = await api.create(originator="u1001")
    clock.advance(20)
    body = {"processInstanceId": instance_id, "isSystem": False, "operatingUserId": "u9"}
    status, answer = await api.call("POST", TERMINATE, body)
    assert_error(status, answer, "invalidInstanceTerminateOperatingUserId")
    body["operatingUserId"] = "u1001"
    assert (await api.call("POST", TERMINATE, body))[0] == 200


async def test_comment_adds_a_remark_record(api: Api) -> None:
    instance_id = await api.create()
    body = {"processInstanceId": instance_id, "text": "请尽快", "commentUserId": "u1001"}
    answer = await api.call("POST", "/v1.0/workflow/processInstances/comments", body)
    assert answer == (200, {"result": True, "success": True})
    record = (await api.get(instance_id))["operationRecords"][-1]
    assert (record["type"], record["remark"]) == ("ADD_REMARK", "请尽快")


# -- listing ids ----------------------------------------------------------------------------


async def test_list_ids_pages_by_20_with_next_token(api: Api, clock: FakeClock) -> None:
    start_ms = int(clock() * 1000)
    ids = []
    for _ in range(25):
        ids.append(await api.create("PROC-A"))
        clock.advance(1)
    await api.create("PROC-B")
    query = {"processCode": "PROC-A", "startTime": start_ms, "maxResults": 20}
    status, page1 = await api.call("POST", LIST, query)
    assert status == 200 and page1["success"] is True
    assert page1["result"]["list"] == ids[:20]
    assert page1["result"]["nextToken"] == "20"
    status, page2 = await api.call("POST", LIST, {**query, "nextToken": "20"})
    assert page2["result"] == {"list": ids[20:]}
    window = {**query, "startTime": start_ms + 5000, "endTime": start_ms + 9000}
    assert (await api.call("POST", LIST, window))[1]["result"]["list"] == ids[5:10]


async def test_list_ids_filters_statuses_and_originators(
    api: Api, sandbox: Sandbox, clock: FakeClock
) -> None:
    start_ms = int(clock() * 1000)
    mine = [await api.create("PROC-A", originator="u1") for _ in range(3)]
    theirs = await api.create("PROC-A", originator="u2")
    await sandbox.refuse(mine[0])
    query = {"processCode": "PROC-A", "startTime": start_ms, "maxResults": 10}
    running = await api.call("POST", LIST, {**query, "statuses": ["RUNNING"]})
    assert running[1]["result"]["list"] == [mine[1], mine[2], theirs]
    done = await api.call("POST", LIST, {**query, "statuses": ["COMPLETED"]})
    assert done[1]["result"]["list"] == [mine[0]]
    by_user = await api.call("POST", LIST, {**query, "userIds": ["u2"]})
    assert by_user[1]["result"]["list"] == [theirs]


@pytest.mark.parametrize(
    "query",
    [
        {"processCode": "PROC-A", "startTime": 0, "maxResults": 21},
        {"processCode": "PROC-A", "maxResults": 10},
        {"startTime": 0, "maxResults": 10},
        {"processCode": "PROC-A", "startTime": 0, "statuses": ["DONE"]},
    ],
)
async def test_list_ids_rejects_bad_queries(api: Api, query: dict[str, object]) -> None:
    status, body = await api.call("POST", LIST, query)
    assert_error(status, body, "invalidParameter")


# -- the old API ----------------------------------------------------------------------------


async def test_old_api_token_and_work_notification(api: Api, sandbox: Sandbox) -> None:
    status, body = await api.call(
        "GET", "/gettoken", params={"appkey": APP_KEY, "appsecret": APP_SECRET}, auth=False
    )
    assert status == 200
    assert (body["errcode"], body["errmsg"], body["expires_in"]) == (0, "ok", 7200)
    assert body["access_token"] == api.token  # one token per app, whichever API handed it out
    path = "/topapi/message/corpconversation/asyncsend_v2"
    message = {
        "agent_id": 123,
        "userid_list": "u1,u2",
        "msg": {"msgtype": "markdown", "markdown": {"title": "审批通过", "text": "#### 已通过"}},
    }
    assert (await api.call("POST", path, message, auth=False))[1]["errcode"] == 41001
    bad = await api.call("POST", path, message, params={"access_token": "bad"}, auth=False)
    assert bad == (200, bad[1]) and bad[1]["errcode"] == 40014
    status, body = await api.call(
        "POST", path, message, params={"access_token": api.token}, auth=False
    )
    assert status == 200 and body["errcode"] == 0 and isinstance(body["task_id"], int)
    [sent] = await sandbox.messages()
    assert sent["kind"] == "work_notification"
    assert (sent["userIds"], sent["title"]) == (["u1", "u2"], "审批通过")

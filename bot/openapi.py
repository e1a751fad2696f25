"""The DingTalk OpenAPI client: one injected session, timeouts, a cached token, one error funnel."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from bot.errors import (
    DingTalkAuthError,
    DingTalkBadRequest,
    DingTalkError,
    DingTalkThrottled,
    DingTalkUnavailable,
    Outcome,
    QuotaExhausted,
    classify,
)
from bot.meter import CallMeter
from bot.quota import QuotaGate
from bot.ratelimit import RateLimiter
from bot.settings import DingTalkConfig

log = logging.getLogger(__name__)

# API names: the rate limiter's keys and the meter's rows.
OAUTH = "oauth2.accessToken"
CREATE = "workflow.processInstances.create"
GET = "workflow.processInstances.get"
TERMINATE = "workflow.processInstances.terminate"
EXECUTE = "workflow.processInstances.execute"
LIST_IDS = "workflow.processes.instanceIds.query"
OTO = "robot.oToMessages.batchSend"
GROUP = "robot.groupMessages.send"
WORK_NOTICE = "topapi.message.corpconversation.asyncsend_v2"
SESSION = "robot.sessionWebhook"

OTO_BATCH = 20
"""batchSend takes at most 20 userIds (spec section 7.1)."""
NOTICE_BATCH = 100
"""A work notification's userid_list takes at most 100 ids (spec section 7.5)."""
REFRESH_EARLY_S = 600.0
"""Refresh the token 10 minutes before it expires (spec section 2.1)."""

Auth = Literal["header", "query", "none"]


@dataclass(frozen=True)
class OtoResult:
    """What batchSend reported, across every batch of 20 (spec section 7.1)."""

    process_query_keys: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    flow_controlled: tuple[str, ...] = ()
    filtered: tuple[str, ...] = ()


class DingTalkClient:
    """Calls DingTalk's OpenAPI; every failure leaves as one of the typed errors in `bot.errors`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: DingTalkConfig,
        *,
        limiter: RateLimiter | None = None,
        meter: CallMeter | None = None,
        throttle_waits: Sequence[float] = (1.0, 2.0, 4.0),
        read_waits: Sequence[float] = (0.5, 1.0, 2.0),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        quota: QuotaGate | None = None,
    ) -> None:
        self._session = session
        self._config = config
        self._api = config.api_base.rstrip("/")
        self._oapi = config.oapi_base.rstrip("/")
        # Paced at the limit; `slot` keeps jittered arrivals under it (spec section 8.2).
        self._limiter = limiter or RateLimiter(config.rate_limit_qps)
        self._meter = meter
        # Waits before each in-client retry of a throttled call: 1 s, then exponential (spec 8.2).
        self._waits = tuple(throttle_waits)
        # Waits before each in-client retry of a read (get, list) that failed on DingTalk's side:
        # it changes nothing, and a lookup or a sweep of many reads would otherwise lose all its
        # progress to one 5xx or timeout.
        self._read_waits = tuple(read_waits)
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()
        self.quota = quota or QuotaGate(config.quota_probe_s, monotonic=clock)
        """Holds metered calls while DingTalk's monthly quota is spent (see `bot.quota`)."""
        self.token_fetches = 0
        self._clock_error: float | None = None
        """How many times a token was fetched (for health and tests)."""

    async def probe(self) -> None:
        """Fetch a token now: a wrong app key or secret fails here, at start-up."""
        await self.access_token()

    async def access_token(self) -> str:
        """The cached token, fetched once for any number of concurrent callers (spec section 2)."""
        token = self._token
        if token is not None and self._clock() < self._token_until:
            return token
        async with self._token_lock:
            token = self._token
            if token is not None and self._clock() < self._token_until:
                return token
            return await self._fetch_token()

    def drop_token(self, stale: str) -> None:
        """Forget a refused token, unless a concurrent caller already replaced it."""
        if self._token == stale:
            self._token = None

    async def _fetch_token(self) -> str:
        secret = self._config.app_secret
        if not self._config.app_key or secret is None:
            raise DingTalkAuthError(
                "dingtalk.app_key or the secret APPROVAL_BRIDGE__DINGTALK__APP_SECRET is not set",
                api=OAUTH,
            )
        body = {"appKey": self._config.app_key, "appSecret": secret.get_secret_value()}
        url = f"{self._api}/v1.0/oauth2/accessToken"
        # Token calls are exempt from the monthly quota (spec section 8.2): not metered.
        data = await self._request(OAUTH, "POST", url, body=body, auth="none", metered=False)
        token, expire_in = data.get("accessToken"), data.get("expireIn", 7200)
        if not isinstance(token, str) or not token or not isinstance(expire_in, int | float):
            raise DingTalkUnavailable(f"DingTalk {OAUTH} answered without a token", api=OAUTH)
        lifetime = max(float(expire_in) - REFRESH_EARLY_S, float(expire_in) / 2)
        self._token, self._token_until = token, self._clock() + lifetime
        self.token_fetches += 1
        return token

    async def _request(
        self,
        api: str,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        auth: Auth = "header",
        metered: bool = True,
        read: bool = False,
    ) -> dict[str, Any]:
        """One call, the single place that classifies outcomes; throttling is waited out here,
        and so is a failure on DingTalk's side of a `read` (a call that changes nothing).

        A metered call first passes the quota gate: once DingTalk refused one for its monthly
        quota, the others are held here (`QuotaExhausted`) but for one probe now and then.
        """
        probe = self.quota.admit(api) if metered else False
        try:
            data = await self._exchange(api, method, url, body, params, auth, metered, read)
        except QuotaExhausted as exc:
            exc.retry_after = self.quota.refused_call(probe)
            raise
        except DingTalkBadRequest:
            self.quota.succeeded(probe)  # DingTalk looked at the request itself: calls are allowed
            raise
        except BaseException:
            self.quota.release(probe)
            raise
        self.quota.succeeded(probe)
        return data

    async def _exchange(
        self,
        api: str,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        auth: Auth,
        metered: bool,
        read: bool,
    ) -> dict[str, Any]:
        """`_request` past the quota gate: the call with its in-client retries."""
        refetched = False
        throttled = 0
        reread = 0
        while True:
            try:
                token, (status, data, text) = await self._paced(
                    api, method, url, body, params, auth
                )
            except DingTalkUnavailable as exc:
                exc.api = api
                self._record(api, metered, failed=True)
                if read and reread < len(self._read_waits):
                    await self._reread(api, exc, self._read_waits[reread])
                    reread += 1
                    continue
                raise
            outcome, error = classify(api, status, data, text)
            if outcome is Outcome.OK:
                self._record(api, metered)
                return data or {}
            assert error is not None
            if outcome is Outcome.REAUTH and auth != "none" and not refetched:
                # One refetch and retry; a second refusal is an auth failure (spec section 2.3).
                self._record(api, metered, failed=True)
                self.drop_token(token)
                refetched = True
                continue
            if outcome is Outcome.THROTTLE:
                self._record(api, metered, throttled=True)
                if throttled < len(self._waits):
                    wait = self._waits[throttled] * self._rng.uniform(0.8, 1.2)
                    log.debug("dingtalk: %s throttled, retrying in %.2f s", api, wait)
                    throttled += 1
                    await self._sleep(wait)
                    continue
                assert isinstance(error, DingTalkThrottled)
                error.retry_after = 2 * max(self._waits, default=1.0)
                raise error
            # A quota or ban refusal did not run the call: kept with the throttled, not the failed.
            refused = isinstance(error, QuotaExhausted | DingTalkThrottled)
            self._record(api, metered, throttled=refused, failed=not refused)
            if read and isinstance(error, DingTalkUnavailable) and reread < len(self._read_waits):
                await self._reread(api, error, self._read_waits[reread])
                reread += 1
                continue
            raise error

    async def _reread(self, api: str, error: DingTalkError, wait: float) -> None:
        wait *= self._rng.uniform(0.8, 1.2)
        log.debug("dingtalk: %s failed (%s), reading again in %.2f s", api, error, wait)
        await self._sleep(wait)

    # -- workflow (spec section 3) --------------------------------------------------------------

    async def create_instance(self, body: Mapping[str, Any]) -> str:
        """Start an approval instance (spec 3.1); returns its instanceId."""
        url = self.api_url("/v1.0/workflow/processInstances")
        data = await self._request(CREATE, "POST", url, body=body)
        instance_id = data.get("instanceId")
        if not isinstance(instance_id, str) or not instance_id:
            # It may exist all the same: a retry looks for it by reference before creating.
            raise DingTalkUnavailable(f"DingTalk {CREATE} answered with no instanceId", api=CREATE)
        return instance_id

    async def get_instance(self, instance_id: str) -> dict[str, Any]:
        """One instance's details, the `result` object of spec 3.2 (`success` may be "true")."""
        url = self.api_url("/v1.0/workflow/processInstances")
        data = await self._request(
            GET, "GET", url, params={"processInstanceId": instance_id}, read=True
        )
        result = data.get("result")
        if not isinstance(result, dict):
            raise DingTalkUnavailable(f"DingTalk {GET} answered without a result", api=GET)
        return result

    async def terminate_instance(self, instance_id: str, remark: str) -> None:
        """Revoke an instance as the system (spec 3.3: isSystem true needs no operating user)."""
        url = self.api_url("/v1.0/workflow/processInstances/terminate")
        body = {"processInstanceId": instance_id, "isSystem": True, "remark": remark[:1000]}
        await self._request(TERMINATE, "POST", url, body=body)

    async def execute_task(
        self, instance_id: str, task_id: int, actioner_user_id: str, result: str, remark: str = ""
    ) -> None:
        """Agree or refuse one task (spec 3.5); `result` is `agree` or `refuse`."""
        url = self.api_url("/v1.0/workflow/processInstances/execute")
        body = {
            "processInstanceId": instance_id,
            "taskId": task_id,
            "actionerUserId": actioner_user_id,
            "result": result,
            "remark": remark,
        }
        await self._request(EXECUTE, "POST", url, body=body)

    async def list_instance_ids(
        self,
        process_code: str,
        start_ms: int,
        statuses: Sequence[str] | None = None,
        next_token: str | None = None,
        max_results: int = 20,
        *,
        user_ids: Sequence[str] | None = None,
        end_ms: int | None = None,
    ) -> tuple[list[str], str | None]:
        """One page of instance ids (spec 3.6); the next token, or None on the last page."""
        body: dict[str, Any] = {
            "processCode": process_code,
            "startTime": start_ms,
            "maxResults": min(max(max_results, 1), 20),
            # The request's nextToken is a Long, the answer's a string ([TEA] models).
            "nextToken": int(next_token) if next_token and next_token.isdigit() else 0,
        }
        if statuses:
            body["statuses"] = list(statuses)
        if user_ids:
            body["userIds"] = list(user_ids)
        if end_ms is not None:
            body["endTime"] = end_ms
        url = self.api_url("/v1.0/workflow/processes/instanceIds/query")
        answer = await self._request(LIST_IDS, "POST", url, body=body, read=True)
        result = answer.get("result") or {}
        ids = [str(i) for i in result.get("list") or []]
        token = result.get("nextToken")
        return ids, str(token) if token not in (None, "") and ids else None

    # -- messages (spec section 7) --------------------------------------------------------------

    async def send_robot_oto(
        self, user_ids: Sequence[str], msg_key: str, msg_param: Mapping[str, Any]
    ) -> OtoResult:
        """Send a robot message to users one to one, 20 per call (spec 7.1)."""
        keys: list[str] = []
        invalid: list[str] = []
        flow: list[str] = []
        filtered: list[str] = []
        url = self.api_url("/v1.0/robot/oToMessages/batchSend")
        for start in range(0, len(user_ids), OTO_BATCH):
            body = {
                "robotCode": self._config.robot_code,
                "userIds": list(user_ids[start : start + OTO_BATCH]),
                "msgKey": msg_key,
                "msgParam": json.dumps(msg_param, ensure_ascii=False),  # a JSON *string*
            }
            data = await self._request(OTO, "POST", url, body=body)
            if data.get("processQueryKey"):
                keys.append(str(data["processQueryKey"]))
            invalid += data.get("invalidStaffIdList") or []
            flow += data.get("flowControlledStaffIdList") or []
            filtered += data.get("filteredStaffIdList") or []
        return OtoResult(tuple(keys), tuple(invalid), tuple(flow), tuple(filtered))

    async def send_group(
        self, open_conversation_id: str, msg_key: str, msg_param: Mapping[str, Any]
    ) -> str:
        """Send a robot message to a group (spec 7.2); returns the processQueryKey."""
        body = {
            "robotCode": self._config.robot_code,
            "openConversationId": open_conversation_id,
            "msgKey": msg_key,
            "msgParam": json.dumps(msg_param, ensure_ascii=False),
        }
        url = self.api_url("/v1.0/robot/groupMessages/send")
        return str((await self._request(GROUP, "POST", url, body=body)).get("processQueryKey", ""))

    async def send_work_notification(
        self, agent_id: int | None, user_ids: Sequence[str], msg: Mapping[str, Any]
    ) -> list[int]:
        """A work notification through the old API, 100 users a call (spec 7.5); the task ids."""
        agent = agent_id if agent_id is not None else self._config.agent_id
        if agent is None:
            raise DingTalkBadRequest("work notifications need dingtalk.agent_id", api=WORK_NOTICE)
        url = self.oapi_url("/topapi/message/corpconversation/asyncsend_v2")
        tasks: list[int] = []
        for start in range(0, len(user_ids), NOTICE_BATCH):
            body = {
                "agent_id": agent,
                "userid_list": ",".join(user_ids[start : start + NOTICE_BATCH]),
                "msg": dict(msg),
            }
            data = await self._request(WORK_NOTICE, "POST", url, body=body, auth="query")
            tasks.append(int(data.get("task_id", 0)))
        return tasks

    async def reply_session(
        self, session_webhook: str, title: str, text: str, at_user_ids: Sequence[str] = ()
    ) -> None:
        """Answer a chat message as Markdown through its sessionWebhook (spec 5.6).

        The webhook answers HTTP 200 even on failure: `errcode` decides, and 300001 (the
        session has expired) raises `SessionExpired`.
        """
        body = {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": text},
            "at": {"atUserIds": list(at_user_ids)},
        }
        await self._request(SESSION, "POST", session_webhook, body=body, auth="none", metered=False)

    async def _paced(
        self,
        api: str,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        auth: Auth,
    ) -> tuple[str, tuple[int, dict[str, Any] | None, str]]:
        """One exchange in its rate-limiter slot; the token it carried, and what `_send` returns."""
        async with self._limiter.slot(api):
            token = await self.access_token() if auth != "none" else ""
            headers = {"Accept": "application/json"}
            query = dict(params or {})
            if auth == "header":
                headers["x-acs-dingtalk-access-token"] = token
            elif auth == "query":
                query["access_token"] = token
            return token, await self._send(method, url, body, query, headers)

    async def _send(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> tuple[int, dict[str, Any] | None, str]:
        """The HTTP exchange under the configured timeout; transport failures are `Unavailable`."""
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        where = url.split("?", 1)[0]  # a sessionWebhook's query is a credential: keep it out
        sent = time.time()
        try:
            async with self._session.request(
                method,
                url,
                json=None if body is None else dict(body),
                params=params or None,
                headers=headers,
                timeout=timeout,
            ) as response:
                text = await response.text(encoding="utf-8", errors="replace")
                status = response.status
                self._note_clock(response.headers.get("Date"), sent, time.time())
        except TimeoutError as exc:
            raise DingTalkUnavailable(
                f"DingTalk did not answer {where} within {self._config.timeout_s} s"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise DingTalkUnavailable(f"DingTalk unreachable ({where}): {exc!r}") from exc
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
        return status, data if isinstance(data, dict) else None, text

    def _note_clock(self, date: str | None, sent: float, received: float) -> None:
        """DingTalk's clock against ours, from an answer's `Date` header (whole seconds)."""
        if not date:
            return
        try:
            theirs = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        # Their second began between `sent - 1` and `received`: the offset, give or take that.
        offset = theirs + 0.5 - (sent + received) / 2
        self._clock_error = abs(offset) + 0.5 + (received - sent) / 2

    def clock_error(self) -> float | None:
        """How far DingTalk's clock may be from ours, in seconds, as last seen; None if unseen.

        Instance times (`createTime`, the listing's window) are DingTalk's; a lookup by time
        widens its window by this much.
        """
        return self._clock_error

    def _record(
        self, api: str, metered: bool, *, throttled: bool = False, failed: bool = False
    ) -> None:
        if metered and self._meter is not None:
            self._meter.record(api, throttled=throttled, failed=failed)

    def api_url(self, path: str) -> str:
        """A new-API URL (api_base)."""
        return f"{self._api}{path}"

    def oapi_url(self, path: str) -> str:
        """An old-API URL (oapi_base)."""
        return f"{self._oapi}{path}"

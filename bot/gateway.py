"""The core's `ApprovalGateway` and `InstanceDirectory` on DingTalk's workflow API."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from approvals.config import ApprovalsConfig, ProcessConfig
from approvals.errors import Permanent, Retryable
from approvals.models import ApproverAction, DocType
from approvals.ports import Clock, InstanceRequest, InstanceSnapshot, SystemClock, Window
from bot.errors import DingTalkBadRequest
from bot.openapi import DingTalkClient
from cards.forms import REFERENCE, form_values, labels
from cards.renderer import Renderer

log = logging.getLogger(__name__)

TERMINATE_GRACE_S = 15.0
"""DingTalk refuses to terminate an instance younger than 15 s (spec section 3.3)."""
FIND_MARGIN = dt.timedelta(minutes=10)
"""How far before `received_at` to look for a lost instance (clock skew, queueing)."""
CLOCK_MARGIN = dt.timedelta(minutes=2)
"""How far DingTalk's clock may be from ours before an answer's `Date` header has said."""
REFERENCES_KEPT = 20_000
"""Instances whose bridge reference this process remembers (a few MB), so a lookup after a
crash fetches each listed instance once, not once per lost create."""
_STATUS_REFUSED = "aflowProcessInstStatusException"
_NOT_FOUND = frozenset({"aflowProcessInstNotExist", "processInstanceNotExist"})
_FINISHED = ("COMPLETED", "TERMINATED")
_DECIDING = frozenset({"EXECUTE_TASK_NORMAL", "EXECUTE_TASK_AGENT"})
_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2})?(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?$"
)


class DingTalkGateway:
    """Raises, finds, terminates and looks up DingTalk approval instances for the core."""

    def __init__(
        self,
        client: DingTalkClient,
        approvals: ApprovalsConfig,
        users: Mapping[str, str],
        *,
        timezone: str = "Asia/Shanghai",
        agent_id: int | None = None,
        renderer: Renderer | None = None,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._approvals = approvals
        self._users = dict(users)
        self._tz = timezone
        self._agent_id = agent_id
        self._renderer = renderer or Renderer()
        self._clock = clock or SystemClock()
        self._monotonic = monotonic
        # When this process created an instance: the 15-s rule needs seconds, and DingTalk's
        # createTime has minutes only (spec section 3.2).
        self._born: OrderedDict[str, float] = OrderedDict()
        # The reference in each instance's form ("" for none): it never changes once raised.
        self._references: OrderedDict[str, str] = OrderedDict()
        self._fetching: dict[str, asyncio.Future[str]] = {}

    def process(self, doc_type: DocType) -> ProcessConfig:
        """The configured template for a document type; `Permanent` when it has no code."""
        process = getattr(self._approvals, doc_type.value)
        assert isinstance(process, ProcessConfig)
        if not process.process_code:
            raise Permanent(
                f"no DingTalk approval template for {doc_type.value}: set process_code "
                f"under [approvals.{doc_type.value}] in the configuration"
            )
        return process

    def originator(self, erp_user: str) -> str:
        """The DingTalk user id of an ERP user; `Permanent` when `[users]` does not map them."""
        user_id = self._users.get(erp_user)
        if not user_id:
            raise Permanent(
                f"ERP user {erp_user!r} has no DingTalk user id: add "
                f'"{erp_user}" = "<DingTalk userId>" to the [users] section of the configuration'
            )
        return user_id

    def body(self, request: InstanceRequest) -> dict[str, Any]:
        """The create request (spec section 3.1); the template's own flow picks the approvers."""
        process = self.process(request.doc_type)
        body: dict[str, Any] = {
            "processCode": process.process_code,
            "originatorUserId": self.originator(request.originator),
            "deptId": process.dept_id,
            "formComponentValues": form_values(request, process, self._tz, self._renderer),
        }
        if self._agent_id is not None:
            body["microappAgentId"] = self._agent_id
        return body

    async def create_instance(self, request: InstanceRequest) -> str:
        """Raise the instance; its id."""
        instance_id = await self._client.create_instance(self.body(request))
        now = self._monotonic()
        # Only young instances matter for the 15-s rule; forget the rest so this stays small.
        # Kept in creation order, so the old ones are at the front: no scan of the young ones.
        while self._born:
            oldest, born = next(iter(self._born.items()))
            if now - born <= 4 * TERMINATE_GRACE_S:
                break
            del self._born[oldest]
        self._born[instance_id] = now
        self._remember(instance_id, request.reference)
        return instance_id

    async def find_instance(
        self, request: InstanceRequest, windows: Sequence[Window] | None = None
    ) -> str | None:
        """The instance carrying this request's reference, if one was created (costs calls).

        With `windows` (the create calls that may have raised it) only instances started then
        are listed, give or take the clocks' difference; else every one since the request came.
        """
        process = self.process(request.doc_type)
        label = labels(request.doc_type, process)[REFERENCE]
        user_ids = [self.originator(request.originator)]
        for start, end in self._ranges(request, windows):
            token: str | None = None
            while True:
                ids, token = await self._client.list_instance_ids(
                    process.process_code, start, None, token, user_ids=user_ids, end_ms=end
                )
                for instance_id in ids:
                    if await self._reference_of(instance_id, label) == request.reference:
                        return instance_id
                if token is None:
                    break
        return None

    def _ranges(
        self, request: InstanceRequest, windows: Sequence[Window] | None
    ) -> list[tuple[int, int | None]]:
        """The listing's (startTime, endTime) ranges in DingTalk's ms, overlapping ones merged."""
        if windows is None:
            return [(_ms(request.received_at - FIND_MARGIN), None)]
        error = self._client.clock_error()
        margin = CLOCK_MARGIN if error is None else dt.timedelta(seconds=max(1.0, 2 * error))
        ranges: list[tuple[int, int | None]] = []
        for start, end in sorted(windows):
            low, high = _ms(start - margin), _ms(end + margin)
            last = ranges[-1] if ranges else None
            if last is not None and last[1] is not None and low <= last[1]:
                ranges[-1] = (last[0], max(last[1], high))
            else:
                ranges.append((low, high))
        return ranges

    async def _reference_of(self, instance_id: str, label: str) -> str:
        """The bridge reference in an instance's form, fetched once per process."""
        known = self._references.get(instance_id)
        if known is not None:
            return known
        # Lookups run side by side after a crash (one per lost create), listing the same
        # instances: one fetch each, shared, or N lookups cost N times the calls.
        fetching = self._fetching.get(instance_id)
        if fetching is None:
            fetching = asyncio.ensure_future(self._fetch_reference(instance_id, label))
            self._fetching[instance_id] = fetching
            fetching.add_done_callback(lambda _: self._fetching.pop(instance_id, None))
        return await asyncio.shield(fetching)

    async def _fetch_reference(self, instance_id: str, label: str) -> str:
        detail = await self._client.get_instance(instance_id)
        values = detail.get("formComponentValues") or []
        found = next((str(v.get("value")) for v in values if v.get("name") == label), "")
        self._remember(instance_id, found)
        return found

    def _remember(self, instance_id: str, reference: str) -> None:
        self._references[instance_id] = reference
        if len(self._references) > REFERENCES_KEPT:
            self._references.popitem(last=False)

    async def terminate_instance(self, instance_id: str, reason: str) -> None:
        """Terminate a running instance; a finished one is done; a young one is retried later."""
        born = self._born.get(instance_id)
        if born is not None and self._monotonic() - born < TERMINATE_GRACE_S:
            # Known to be too young: wait without spending a metered call on the refusal.
            wait = self._grace_left(instance_id, {})
            raise Retryable(f"instance {instance_id} is too young to terminate", retry_after=wait)
        try:
            await self._client.terminate_instance(instance_id, reason)
        except DingTalkBadRequest as exc:
            if exc.code in _NOT_FOUND:
                log.warning("gateway: instance %s to terminate does not exist", instance_id)
                return
            if exc.code != _STATUS_REFUSED:
                raise
            detail = await self._client.get_instance(instance_id)
            if detail.get("status") in _FINISHED:
                return  # already over: nothing to terminate
            wait = self._grace_left(instance_id, detail)
            raise Retryable(
                f"instance {instance_id} too young to terminate (spec 3.3): retry in {wait:.0f} s",
                retry_after=wait,
            ) from exc
        self._born.pop(instance_id, None)

    def _grace_left(self, instance_id: str, detail: Mapping[str, Any]) -> float:
        """Seconds until the 15-s rule lets go, with a second to spare; at most 16 s."""
        born = self._born.get(instance_id)
        if born is not None:
            age = self._monotonic() - born
        else:
            created = parse_time(detail.get("createTime"))
            # createTime is cut to the minute: the instance may be up to 60 s younger than it says.
            age = (self._clock.now() - created).total_seconds() - 60 if created else 0.0
        return min(TERMINATE_GRACE_S + 1, max(1.0, TERMINATE_GRACE_S + 1 - age))

    async def finished_ids(self, process_code: str, started_since: dt.datetime) -> list[str]:
        """Ids of instances started since a time that are completed or terminated (all pages)."""
        found: dict[str, None] = {}  # ordered, and a page repeated across calls counts once
        token: str | None = None
        while True:
            ids, token = await self._client.list_instance_ids(
                process_code, _ms(started_since), _FINISHED, token
            )
            found.update(dict.fromkeys(ids))
            if token is None:
                return list(found)

    async def snapshot(self, instance_id: str) -> InstanceSnapshot:
        """One instance's status, result, finish time and approvers."""
        detail = await self._client.get_instance(instance_id)
        status = str(detail.get("status") or "")
        result = str(detail.get("result") or "").lower() or None
        return InstanceSnapshot(
            instance_id=instance_id,
            status=status,
            result=result if status == "COMPLETED" else None,
            finished_at=parse_time(detail.get("finishTime")) if status in _FINISHED else None,
            approvers=approvers(detail),
        )


def approvers(detail: Mapping[str, Any]) -> tuple[ApproverAction, ...]:
    """Who agreed or refused, from operationRecords, else from the finished tasks (spec 3.2)."""
    actions = [
        ApproverAction(
            user_id=str(r.get("userId") or ""),
            result=str(r.get("result")).lower(),
            comment=str(r.get("remark") or ""),
            at=parse_time(r.get("date")),
        )
        for r in detail.get("operationRecords") or []
        if r.get("type") in _DECIDING and str(r.get("result")).upper() in ("AGREE", "REFUSE")
    ]
    if actions:
        return tuple(actions)
    return tuple(
        ApproverAction(
            user_id=str(t.get("userId") or ""),
            result=str(t.get("result")).lower(),
            at=parse_time(t.get("finishTime")),
        )
        for t in detail.get("tasks") or []
        if t.get("status") == "COMPLETED" and str(t.get("result")).upper() in ("AGREE", "REFUSE")
    )


def parse_time(value: object) -> dt.datetime | None:
    """DingTalk's `2022-08-31T11:52Z` (UTC, spec section 1), with seconds or an offset too."""
    if not isinstance(value, str):
        return None
    match = _TIME.match(value.strip())
    if match is None:
        return None
    day, hm, sec, zone = match.groups()
    offset = "+00:00" if zone in (None, "Z") else zone
    try:
        parsed = dt.datetime.fromisoformat(f"{day}T{hm}{sec or ':00'}{offset}")
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC)


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)

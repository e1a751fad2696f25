"""DingTalk approval events and robot messages: typed parsing, and one dispatcher into the core."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Protocol

from dingtalk_stream.frames import Headers
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from approvals.decisions import DecisionOutcome, DecisionResult, DecisionService
from approvals.models import ApproverAction, Decision, DecisionReport
from approvals.ports import Clock, SystemClock

log = logging.getLogger(__name__)

INSTANCE_CHANGE = "bpms_instance_change"
TASK_CHANGE = "bpms_task_change"
ROBOT_TOPIC = "/v1.0/im/bot/messages/get"
"""The stream CALLBACK topic of robot messages (spec §5.6)."""


class EventError(ValueError):
    """A payload that claims to be an approval event but cannot be read."""


class EventKind(StrEnum):
    """Which object changed: the whole instance, or one approver's task."""

    INSTANCE = "instance"
    TASK = "task"


class ChangeType(StrEnum):
    """The event's `type` (spec §4.1); anything new maps to OTHER and is ignored."""

    START = "start"
    FINISH = "finish"
    TERMINATE = "terminate"
    CANCEL = "cancel"
    OTHER = "other"


class TaskResult(StrEnum):
    """The event's `result`, lower-case on events (spec §4.1, DESIGN §5)."""

    AGREE = "agree"
    REFUSE = "refuse"
    REDIRECT = "redirect"
    OTHER = "other"


def _enum(kind: type[StrEnum]) -> Any:
    """Map an unknown string to OTHER rather than refuse the event (it is then ignored)."""

    known = frozenset(m.value for m in kind)

    def parse(value: Any) -> Any:
        if value is None or value == "":
            return None
        text = str(value).strip().lower()
        return text if text in known else "other"

    return BeforeValidator(parse)


def _epoch_ms(value: Any) -> Any:
    """Events carry epoch milliseconds, as numbers or (stream headers) numeric strings (§1)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromtimestamp(int(value) / 1000, dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValueError(f"not epoch milliseconds: {value!r:.40}") from None


EpochMs = Annotated[dt.datetime | None, BeforeValidator(_epoch_ms)]


class ApprovalEvent(BaseModel):
    """One `bpms_instance_change` or `bpms_task_change`, from either delivery."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, coerce_numbers_to_str=True)

    kind: EventKind
    type: Annotated[ChangeType, _enum(ChangeType)]
    result: Annotated[TaskResult | None, _enum(TaskResult)] = None
    instance_id: str = Field(alias="processInstanceId", min_length=1)
    process_code: str = Field("", alias="processCode")
    staff_id: str = Field("", alias="staffId")
    task_id: str | None = Field(None, alias="taskId")
    remark: str = ""
    title: str = ""
    business_id: str = Field("", alias="businessId")
    create_time: EpochMs = Field(None, alias="createTime")
    finish_time: EpochMs = Field(None, alias="finishTime")
    event_id: str | None = Field(None, alias="eventId")
    event_time: EpochMs = Field(None, alias="eventTime")
    corp_id: str = Field("", alias="corpId")

    @property
    def key(self) -> str:
        """The identity the core dedupes on: eventId, else what makes the change unique (§4.4)."""
        if self.event_id:
            key = f"dingtalk:{self.event_id}"
        else:
            parts = (self.instance_id, self.kind, self.type, self.task_id, self.result)
            key = "dingtalk:" + ":".join(str(p or "") for p in parts)
        if len(key) > 200:  # the inbox key column holds 200 characters
            key = "dingtalk:sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return key


_KINDS = {INSTANCE_CHANGE: EventKind.INSTANCE, TASK_CHANGE: EventKind.TASK}


def _build(event_type: str | None, fields: dict[str, Any]) -> ApprovalEvent | None:
    kind = _KINDS.get(event_type or "")
    if kind is None:
        return None  # check_url, user_add_org, ...: not ours to apply
    try:
        return ApprovalEvent.model_validate({**fields, "kind": kind})
    except ValidationError as exc:
        raise EventError(f"unreadable {event_type}: {exc.errors(include_url=False)}") from None


def from_stream(headers: Headers, data: Mapping[str, Any]) -> ApprovalEvent | None:
    """An approval event from a stream EVENT frame (§5.3); None for other event types."""
    fields = {
        **data,
        "eventId": headers.event_id or data.get("eventId"),
        "eventTime": headers.event_born_time,
        "corpId": headers.event_corp_id or "",
    }
    return _build(headers.event_type, fields)


def from_http(payload: Mapping[str, Any]) -> ApprovalEvent | None:
    """An approval event from a decrypted HTTP push (§4.3, both variants); None for others."""
    corp = payload.get("CorpId") or payload.get("corpId") or ""
    fields = {**payload, "corpId": corp, "eventTime": payload.get("EventTime")}
    return _build(payload.get("EventType"), fields)


_DECISIONS = {TaskResult.AGREE: Decision.APPROVED, TaskResult.REFUSE: Decision.REJECTED}
_IGNORED = DecisionResult(DecisionOutcome.IGNORED)


@dataclass
class _Turn:
    """A per-instance lock and how many events hold or wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class EventSink:
    """Applies approval events through the core; returns once the core has committed."""

    def __init__(self, decisions: DecisionService, clock: Clock | None = None) -> None:
        self._decisions = decisions
        self._clock = clock or SystemClock()
        self._turns: dict[str, _Turn] = {}

    async def apply(self, event: ApprovalEvent) -> DecisionResult:
        """Record and apply one event; the caller may ack once this returns."""
        # One instance's events in arrival order: a task finish then the instance finish
        # (pushed together, applied concurrently) must not race, or the approver is lost.
        turn = self._turns.setdefault(event.instance_id, _Turn())
        turn.users += 1
        try:
            async with turn.lock:
                result = await self._dispatch(event)
        finally:
            turn.users -= 1
            if not turn.users:
                del self._turns[event.instance_id]
        log.info(
            "dingtalk %s %s %s of %s: %s",
            event.kind,
            event.type,
            event.result or "-",
            event.instance_id,
            result.outcome,
            extra={"event_key": event.key, "approval_id": result.approval_id},
        )
        return result

    async def _dispatch(self, event: ApprovalEvent) -> DecisionResult:
        decided_at = event.finish_time or event.event_time or self._clock.now()
        if event.kind is EventKind.INSTANCE and event.type is ChangeType.FINISH:
            decision = _DECISIONS.get(event.result) if event.result else None
            if decision is None:
                return _IGNORED  # §4.1: a finish always carries agree or refuse
            report = DecisionReport(
                instance_id=event.instance_id,
                decision=decision,
                decided_at=decided_at,
                event_key=event.key,
            )  # approvers: the core fills them from the task actions it recorded
            return await self._decisions.apply(report)
        if event.kind is EventKind.INSTANCE and event.type is ChangeType.TERMINATE:
            return await self._decisions.terminated(event.instance_id, event.key)
        if (
            event.kind is EventKind.TASK
            and event.type is ChangeType.FINISH
            and event.result in (TaskResult.AGREE, TaskResult.REFUSE)
        ):
            action = ApproverAction(
                user_id=event.staff_id,
                result=str(event.result),
                comment=event.remark,
                at=event.finish_time or decided_at,
            )
            return await self._decisions.record_action(event.instance_id, action, event.key)
        return _IGNORED  # start, cancel, redirect: nothing for the ERP


def _text(value: Any) -> str:
    """`text.content` with the @-mention's leading space stripped; "" when missing (§5.6)."""
    return str(value.get("content", "")).strip() if isinstance(value, Mapping) else ""


class ChatMessage(BaseModel):
    """A robot message (`/v1.0/im/bot/messages/get`, spec §5.6)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, coerce_numbers_to_str=True)

    msg_id: str = Field("", alias="msgId")
    msgtype: str = "text"
    text: Annotated[str, BeforeValidator(_text)] = ""
    conversation_id: str = Field("", alias="conversationId")
    conversation_type: str = Field("", alias="conversationType")
    """"1" for a 1:1 chat, "2" for a group."""
    conversation_title: str = Field("", alias="conversationTitle")
    sender_staff_id: str = Field("", alias="senderStaffId")
    """The org userId; empty for external users."""
    sender_nick: str = Field("", alias="senderNick")
    robot_code: str = Field("", alias="robotCode")
    session_webhook: str = Field("", alias="sessionWebhook")
    session_webhook_expires: EpochMs = Field(None, alias="sessionWebhookExpiredTime")
    created_at: EpochMs = Field(None, alias="createAt")
    is_in_at_list: bool = Field(False, alias="isInAtList")
    error: str | None = None
    """Set when DingTalk withheld the content (org over its call quota, §5.6)."""

    @property
    def is_group(self) -> bool:
        """Whether it came from a group chat."""
        return self.conversation_type == "2"


def chat_message(data: Mapping[str, Any]) -> ChatMessage:
    """Parse a robot message; the quota case (no `text`, an error field) parses too (§5.6)."""
    error = data.get("errMsg") or data.get("errorMessage")
    try:
        return ChatMessage.model_validate({**data, "error": str(error) if error else None})
    except ValidationError as exc:
        raise EventError(f"unreadable robot message: {exc.errors(include_url=False)}") from None


class ChatHandler(Protocol):
    """Handles robot messages (the chat commands); fire-and-forget, never redelivered."""

    async def handle(self, message: ChatMessage) -> None:
        """Handle one message."""
        ...


async def relay_chat(chat: ChatHandler, data: Mapping[str, Any]) -> None:
    """Parse a robot message and hand it on; fire-and-forget, so failures are logged only."""
    try:
        await chat.handle(chat_message(data))
    except EventError as exc:
        log.warning("dingtalk: %s", exc)
    except Exception:
        log.exception("dingtalk: the chat handler failed on %s", data.get("msgId"))

"""What the sandbox remembers: instances with their tasks, events, and messages the bot sent."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

InstanceStatus = Literal["RUNNING", "COMPLETED", "TERMINATED"]
TaskStatus = Literal["NEW", "RUNNING", "PAUSED", "CANCELED", "COMPLETED", "TERMINATED"]
TaskResult = Literal["NONE", "AGREE", "REFUSE", "REDIRECTED"]
DeliveryStatus = Literal["pending", "delivered", "dropped", "failed"]


def api_time(ts: float) -> str:
    """The new workflow API's time format, `yyyy-MM-ddTHH:mmZ` in UTC."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


def iso_time(ts: float) -> str:
    """An ISO 8601 UTC time with seconds, for the control API."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def camel(values: dict[str, Any]) -> dict[str, Any]:
    """The same mapping with snake_case keys in camelCase, as the control API spells them."""
    return {_camel(k): v for k, v in values.items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def ms(ts: float) -> int:
    """Epoch milliseconds, as events carry times."""
    return int(ts * 1000)


@dataclass
class Node:
    """One step of an approval flow: its approvers and how they sign (AND, OR, NONE)."""

    action_type: str
    user_ids: tuple[str, ...]


@dataclass
class Task:
    """One approver's task at one node."""

    task_id: int
    user_id: str
    node: int
    activity_id: str
    create_time: float
    status: TaskStatus = "RUNNING"
    result: TaskResult = "NONE"
    finish_time: float | None = None
    remark: str = ""

    def to_json(self, instance_id: str, page_url: str) -> dict[str, Any]:
        """The task as `tasks[]` of the get-instance answer shows it (`taskId` a Long)."""
        body: dict[str, Any] = {
            "taskId": self.task_id,
            "userId": self.user_id,
            "status": self.status,
            "result": self.result,
            "createTime": api_time(self.create_time),
            "mobileUrl": page_url,
            "pcUrl": page_url,
            "processInstanceId": instance_id,
            "activityId": self.activity_id,
            "taskGroupName": f"审批人{self.node + 1}",
        }
        if self.finish_time is not None:
            body["finishTime"] = api_time(self.finish_time)
        return body


@dataclass
class Operation:
    """One line of an instance's `operationRecords`."""

    user_id: str
    date: float
    type: str
    result: str
    remark: str = ""
    activity_id: str = ""
    show_name: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record as the get-instance answer shows it."""
        return {
            "userId": self.user_id,
            "date": api_time(self.date),
            "type": self.type,
            "result": self.result,
            "remark": self.remark,
            "attachments": [],
            "ccUserIds": [],
            "activityId": self.activity_id,
            "showName": self.show_name,
            "images": [],
        }


@dataclass
class Instance:
    """An approval instance and its flow."""

    instance_id: str
    process_code: str
    originator_user_id: str
    dept_id: int | None
    form: list[dict[str, Any]]
    nodes: list[Node]
    approvers_given: bool
    cc_user_ids: list[str]
    business_id: str
    title: str
    create_time: float
    app_key: str
    status: InstanceStatus = "RUNNING"
    result: str | None = None
    finish_time: float | None = None
    current_node: int = 0
    tasks: list[Task] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)

    def running_tasks(self) -> list[Task]:
        """Tasks waiting for their approver."""
        return [t for t in self.tasks if t.status in ("NEW", "RUNNING")]

    def task(self, task_id: int) -> Task | None:
        """The task with this id, if it belongs to this instance."""
        return next((t for t in self.tasks if t.task_id == task_id), None)

    def to_api(self, page_url: str) -> dict[str, Any]:
        """The `result` object of `GET /v1.0/workflow/processInstances`."""
        body: dict[str, Any] = {
            "title": self.title,
            "createTime": api_time(self.create_time),
            "originatorUserId": self.originator_user_id,
            "originatorDeptId": str(self.dept_id if self.dept_id is not None else -1),
            "originatorDeptName": "沙箱部门",
            "status": self.status,
            "businessId": self.business_id,
            "ccUserIds": list(self.cc_user_ids),
            "operationRecords": [op.to_json() for op in self.operations],
            "tasks": [t.to_json(self.instance_id, page_url) for t in self.tasks],
            "bizAction": "NONE",
            "attachedProcessInstanceIds": [],
            "formComponentValues": [dict(v) for v in self.form],
        }
        if self.finish_time is not None:
            body["finishTime"] = api_time(self.finish_time)
        # DingTalk leaves `result` out (or empty) while running and once terminated.
        if self.result is not None:
            body["result"] = self.result
        # `approverUserIds` is only returned for instances created with explicit approvers.
        if self.approvers_given:
            body["approverUserIds"] = [u for n in self.nodes for u in n.user_ids]
        return body

    def to_control(self, page_url: str) -> dict[str, Any]:
        """The instance as `GET /sandbox/instances` lists it."""
        return {
            "instanceId": self.instance_id,
            "processCode": self.process_code,
            "title": self.title,
            "status": self.status,
            "result": self.result,
            "formComponentValues": [dict(v) for v in self.form],
            "tasks": [t.to_json(self.instance_id, page_url) for t in self.tasks],
            "originatorUserId": self.originator_user_id,
            "createTime": api_time(self.create_time),
            "finishTime": api_time(self.finish_time) if self.finish_time is not None else None,
            "businessId": self.business_id,
        }


@dataclass
class EventRecord:
    """One event as DingTalk emits it, with how its delivery went."""

    event_id: str
    event_type: str
    born: int
    """eventBornTime, epoch ms."""
    data: dict[str, Any]
    status: DeliveryStatus = "pending"
    deliveries: int = 0
    delivered_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The event and its delivery state, for `GET /sandbox/events`."""
        return {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "eventBornTime": self.born,
            "data": self.data,
            "status": self.status,
            "deliveries": self.deliveries,
            "deliveredAt": iso_time(self.delivered_at) if self.delivered_at else None,
        }


@dataclass
class SentMessage:
    """A message the bot sent through one of DingTalk's sending APIs."""

    message_id: str
    kind: Literal["oto", "group", "session", "work_notification", "card"]
    time: float
    text: str
    title: str = ""
    msg_type: str = ""
    """msgKey (robot), msgtype (session webhook and work notification) or the card template."""
    robot_code: str = ""
    user_ids: list[str] = field(default_factory=list)
    conversation_id: str = ""
    reply_to: str = ""
    """The chat message (msgId) whose sessionWebhook carried this reply."""
    raw: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The message as `GET /sandbox/messages` and chat replies show it."""
        return {
            "id": self.message_id,
            "kind": self.kind,
            "time": iso_time(self.time),
            "msgType": self.msg_type,
            "title": self.title,
            "text": self.text,
            "robotCode": self.robot_code,
            "userIds": list(self.user_ids),
            "conversationId": self.conversation_id,
            "replyTo": self.reply_to,
            "raw": self.raw,
        }

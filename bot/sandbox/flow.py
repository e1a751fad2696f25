"""The approval state machine, emitting DingTalk's events at each transition (spec §3, §4)."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.sandbox.errors import ApiError, ControlError
from bot.sandbox.options import Clock, SandboxOptions
from bot.sandbox.records import Instance, Node, Operation, Task, ms

Emit = Callable[[str, dict[str, Any]], object]
"""Emits one event: (eventType, data)."""

_FIRST_TASK_ID = 67583405630
"""Task ids are Longs in DingTalk; start at a realistic size so clients never fit them in int32."""


@dataclass(frozen=True)
class NewInstance:
    """A validated create request."""

    process_code: str
    originator_user_id: str
    dept_id: int | None
    form: list[dict[str, Any]]
    nodes: list[Node]
    cc_user_ids: list[str]


class Workflow:
    """Instances and their tasks; every change emits the events DingTalk would."""

    def __init__(
        self, options: SandboxOptions, clock: Clock, emit: Emit, page_url: Callable[[str], str]
    ) -> None:
        self._options = options
        self._clock = clock
        self._emit = emit
        self._page_url = page_url
        self.instances: dict[str, Instance] = {}
        self._task_ids = itertools.count(_FIRST_TASK_ID)
        self._business_ids = itertools.count(1)

    def create(self, request: NewInstance, app_key: str) -> Instance:
        """Start an instance: instance `start`, then a task `start` per first-node approver."""
        now = self._clock()
        nodes = request.nodes or [Node("NONE", (self._options.default_approver,))]
        instance = Instance(
            instance_id=str(uuid.uuid4()),
            process_code=request.process_code,
            originator_user_id=request.originator_user_id,
            dept_id=request.dept_id,
            form=request.form,
            nodes=nodes,
            approvers_given=bool(request.nodes),
            cc_user_ids=request.cc_user_ids,
            business_id=time.strftime("%Y%m%d%H%M", time.gmtime(now))
            + f"{next(self._business_ids):06d}",
            title=f"{request.originator_user_id}提交的审批",
            create_time=now,
            app_key=app_key,
        )
        instance.operations.append(
            Operation(request.originator_user_id, now, "START_PROCESS_INSTANCE", "NONE")
        )
        self.instances[instance.instance_id] = instance
        self._instance_event(instance, "start")
        self._start_node(instance, 0)
        return instance

    def get(self, instance_id: str) -> Instance:
        """The instance, or 400 processInstanceNotExist."""
        instance = self.instances.get(instance_id)
        if instance is None:
            raise ApiError("processInstanceNotExist", "审批实例不存在")
        return instance

    def execute(
        self, instance_id: str, task_id: int, actioner: str, agree: bool, remark: str
    ) -> None:
        """`processInstances/execute`: the actioner agrees or refuses their running task."""
        instance = self.get(instance_id)
        if instance.status != "RUNNING":
            raise ApiError("aflowProcessInstStatusException", "审批实例已结束")
        task = instance.task(task_id)
        if task is None:
            raise ApiError("invalidParameter", f"taskId {task_id} 不属于该审批实例")
        if task.user_id != actioner:
            raise ApiError("invalidParameter", "actionerUserId 不是该任务的审批人")
        if task.status not in ("NEW", "RUNNING"):
            raise ApiError("aflowTaskStatusException", "任务已处理")
        self._act(instance, task, agree, remark)

    def terminate(
        self, instance_id: str, is_system: bool, operating_user_id: str | None, remark: str
    ) -> None:
        """`processInstances/terminate`: refused within the grace period and once finished."""
        instance = self.instances.get(instance_id)
        if instance is None:
            raise ApiError("aflowProcessInstNotExist", "审批实例不存在")
        if not is_system and operating_user_id != instance.originator_user_id:
            raise ApiError(
                "invalidInstanceTerminateOperatingUserId", "非系统撤销时操作人必须是发起人"
            )
        now = self._clock()
        if instance.status != "RUNNING":
            raise ApiError("aflowProcessInstStatusException", "审批实例已结束，不能撤销")
        if now - instance.create_time < self._options.terminate_grace:
            raise ApiError(
                "aflowProcessInstStatusException",
                f"审批实例创建后{self._options.terminate_grace:g}秒内不能撤销",
            )
        for task in instance.running_tasks():
            task.status, task.finish_time = "CANCELED", now
        operator = operating_user_id or instance.originator_user_id
        instance.operations.append(
            Operation(operator, now, "TERMINATE_PROCESS_INSTANCE", "NONE", remark)
        )
        instance.status, instance.result, instance.finish_time = "TERMINATED", None, now
        self._instance_event(instance, "terminate")

    def comment(self, instance: Instance, user_id: str, remark: str) -> None:
        """`processInstances/comments`: an ADD_REMARK record; no event, no state change."""
        instance.operations.append(Operation(user_id, self._clock(), "ADD_REMARK", "NONE", remark))

    def decide(self, instance_id: str, agree: bool, user_id: str | None, remark: str) -> Instance:
        """Control API: the current task (of `user_id`, if given) is agreed or refused."""
        instance = self.instances.get(instance_id)
        if instance is None:
            raise ControlError("not_found", f"no instance {instance_id}", 404)
        if instance.status != "RUNNING":
            raise ControlError("not_running", f"the instance is {instance.status}", 409)
        running = instance.running_tasks()
        task = next((t for t in running if user_id in (None, "", t.user_id)), None)
        if task is None:
            waiting = ", ".join(t.user_id for t in running)
            raise ControlError("not_an_approver", f"{user_id} has no task; waiting for {waiting}")
        self._act(instance, task, agree, remark)
        return instance

    def list_ids(
        self,
        process_code: str,
        start_ms: int,
        end_ms: int | None,
        statuses: Sequence[str],
        user_ids: Sequence[str],
    ) -> list[str]:
        """Ids of the template's instances started in the window, oldest first."""
        found = [
            i
            for i in self.instances.values()
            if i.process_code == process_code
            and ms(i.create_time) >= start_ms
            and (end_ms is None or ms(i.create_time) <= end_ms)
            and (not statuses or i.status in statuses)
            and (not user_ids or i.originator_user_id in user_ids)
        ]
        found.sort(key=lambda i: (i.create_time, i.business_id))
        return [i.instance_id for i in found]

    def _act(self, instance: Instance, task: Task, agree: bool, remark: str) -> None:
        """Finish one task and move the flow on: next node, or the instance's end."""
        now = self._clock()
        task.status, task.finish_time, task.remark = "COMPLETED", now, remark
        task.result = "AGREE" if agree else "REFUSE"
        instance.operations.append(
            Operation(
                task.user_id,
                now,
                "EXECUTE_TASK_NORMAL",
                task.result,
                remark,
                task.activity_id,
                f"审批人{task.node + 1}",
            )
        )
        self._task_event(instance, task, "finish", "agree" if agree else "refuse")
        node = instance.nodes[task.node]
        if agree and node.action_type == "AND" and instance.running_tasks():
            return  # a countersign node ends only when everyone on it agreed
        # A refusal ends the flow; an or-sign node ends with its first answer. Either way the
        # other approvers' tasks are cancelled, and DingTalk tells them with a task `cancel`.
        for other in instance.running_tasks():
            other.status, other.finish_time = "CANCELED", now
            self._task_event(instance, other, "cancel")
        if agree and task.node + 1 < len(instance.nodes):
            self._start_node(instance, task.node + 1)
            return
        instance.status, instance.finish_time = "COMPLETED", now
        instance.result = "agree" if agree else "refuse"
        instance.operations.append(
            Operation(instance.originator_user_id, now, "FINISH_PROCESS_INSTANCE", "NONE")
        )
        self._instance_event(instance, "finish")

    def _start_node(self, instance: Instance, index: int) -> None:
        instance.current_node = index
        node = instance.nodes[index]
        now = self._clock()
        activity = f"sandbox-node-{index + 1}"
        for user_id in dict.fromkeys(node.user_ids):
            task = Task(next(self._task_ids), user_id, index, activity, now)
            instance.tasks.append(task)
            self._task_event(instance, task, "start")

    def _common(self, instance: Instance, type_: str, staff_id: str) -> dict[str, Any]:
        return {
            "processInstanceId": instance.instance_id,
            "processCode": instance.process_code,
            "bizCategoryId": "",
            "businessId": instance.business_id,
            "businessType": "",
            "title": instance.title,
            "type": type_,
            "staffId": staff_id,
        }

    def _instance_event(self, instance: Instance, type_: str) -> None:
        data = self._common(instance, type_, instance.originator_user_id)
        data["createTime"] = ms(instance.create_time)
        if instance.finish_time is not None:
            data["finishTime"] = ms(instance.finish_time)
        if type_ == "finish" and instance.result is not None:
            data["result"] = instance.result  # only `finish` carries a result; never `terminate`
        data["url"] = self._page_url(instance.instance_id)
        self._emit("bpms_instance_change", data)

    def _task_event(
        self, instance: Instance, task: Task, type_: str, result: str | None = None
    ) -> None:
        data = self._common(instance, type_, task.user_id)
        data["taskId"] = task.task_id
        data["createTime"] = ms(task.create_time)
        if task.finish_time is not None:
            data["finishTime"] = ms(task.finish_time)
        if result is not None:
            data["result"] = result
            data["remark"] = task.remark
        self._emit("bpms_task_change", data)

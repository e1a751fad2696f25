"""In-memory implementations of the ports, for the demo and tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from approvals.models import ApproverAction
from approvals.ports import InstanceRequest, InstanceSnapshot, Notice, Window


@dataclass
class MemoryInstance:
    """An approval instance held in memory."""

    instance_id: str
    request: InstanceRequest
    status: str = "RUNNING"
    result: str | None = None
    terminate_reason: str | None = None
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    finished_at: dt.datetime | None = None


@dataclass
class MemoryGateway:
    """An approval system in memory: instances are created, found by reference and terminated."""

    instances: dict[str, MemoryInstance] = field(default_factory=dict)
    created: asyncio.Queue[MemoryInstance] = field(default_factory=asyncio.Queue)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lookups: int = 0
    """Directory calls made (what DingTalk would meter)."""
    finds: list[tuple[Window, ...] | None] = field(default_factory=list)
    """The windows of each `find_instance` (None: look everywhere)."""

    async def create_instance(self, request: InstanceRequest) -> str:
        """Create a running instance."""
        instance = MemoryInstance(f"mem-inst-{next(self._ids)}", request)
        self.instances[instance.instance_id] = instance
        self.created.put_nowait(instance)
        return instance.instance_id

    async def find_instance(
        self, request: InstanceRequest, windows: Sequence[Window] | None = None
    ) -> str | None:
        """An instance carrying this request's reference (created in `windows`, if given)."""
        self.finds.append(None if windows is None else tuple(windows))
        for instance in self.instances.values():
            if windows is not None and not any(a <= instance.created_at <= b for a, b in windows):
                continue
            if instance.request.reference == request.reference:
                return instance.instance_id
        return None

    async def terminate_instance(self, instance_id: str, reason: str) -> None:
        """Terminate a running instance (a finished one is left as it is)."""
        instance = self.instances[instance_id]
        if instance.status == "RUNNING":
            instance.status, instance.terminate_reason = "TERMINATED", reason
            instance.finished_at = dt.datetime.now(dt.UTC)

    def finish(self, instance_id: str, result: str) -> None:
        """Approvers decided (`agree` or `refuse`)."""
        instance = self.instances[instance_id]
        instance.status, instance.result = "COMPLETED", result
        instance.finished_at = dt.datetime.now(dt.UTC)

    async def finished_ids(self, process_code: str, started_since: dt.datetime) -> list[str]:
        """Finished instances started since a time (the process code is not modelled here)."""
        found = [
            i.instance_id
            for i in self.instances.values()
            if i.status != "RUNNING" and i.created_at >= started_since
        ]
        self.lookups += max(1, -(-len(found) // 20))  # one call per page of 20
        return found

    async def snapshot(self, instance_id: str) -> InstanceSnapshot:
        """One instance as it stands."""
        self.lookups += 1
        i = self.instances[instance_id]
        approvers: tuple[ApproverAction, ...] = ()
        if i.result is not None:
            approvers = (
                ApproverAction(user_id="mem-approver", result=i.result.upper(), at=i.finished_at),
            )
        return InstanceSnapshot(i.instance_id, i.status, i.result, i.finished_at, approvers)

    def running_for(self, reference: str) -> list[MemoryInstance]:
        """Running instances carrying a reference."""
        return [
            i
            for i in self.instances.values()
            if i.request.reference == reference and i.status == "RUNNING"
        ]


@dataclass
class MemoryNotifier:
    """Collects notices."""

    notices: list[Notice] = field(default_factory=list)

    async def notify(self, notice: Notice) -> None:
        """Keep the notice."""
        self.notices.append(notice)

"""Chat commands from a table: input, who sends it, the template chosen and what the reply says.

The approvals are real: raised, decided and written back by a running bridge (in-memory DingTalk,
a scripted ERP), and the router reads and changes the same SQLite database. The world is shared
by the module; the test of admins' actions changes it, so it comes last.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from approvals.db.tables import job
from approvals.errors import Conflict, Permanent
from approvals.ports import SystemClock, WriteBack, WriteBackReceipt
from approvals.reconcile import Reconciler
from approvals.states import State
from bot.commands import CommandRouter, parse
from bot.keys import DECISIONS, JOBS
from bot.meter import CallMeter
from bot.settings import DingTalkConfig, Settings
from cards.chat import render_reply
from cards.renderer import Renderer
from tests import dbutil
from tests.harness import Bridge, bridge_settings, event, order, running_bridge, stock
from tests.test_reconcile import PROCESSES
from tests.test_stream import until

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN, STAFF = "dt-admin", "dt-staff"
RENDERER = Renderer()


@dataclass
class Erp:
    """Acknowledges write-backs, except the documents it is told to refuse or call changed."""

    refuse: set[str] = field(default_factory=lambda: {"PO-REFUSED"})
    changed: set[str] = field(default_factory=lambda: {"PO-CHANGED"})

    async def write_back(self, result: WriteBack) -> WriteBackReceipt:
        if result.doc_no in self.refuse:
            raise Permanent("ERP answered 422: the order is closed")
        if result.doc_no in self.changed:
            raise Conflict("ERP answered 409: the order changed")
        return WriteBackReceipt(erp_ref=f"ERP-{result.doc_no}")


@dataclass
class World:
    """A bridge with approvals in every kind of state, and routers for three configurations."""

    bridge: Bridge
    erp: Erp
    ids: dict[str, str]

    def router(
        self, readonly_for_all: bool = False, meter: CallMeter | None = None
    ) -> CommandRouter:
        config = DingTalkConfig(admins=[ADMIN], allow_readonly_for_all=readonly_for_all)
        settings = Settings(dingtalk=config)
        reconciler = Reconciler(
            self.bridge.db,
            SystemClock(),
            self.bridge.gateway,
            self.bridge.app[DECISIONS],
            PROCESSES,
            dt.timedelta(hours=1),
        )
        return CommandRouter(
            self.bridge.db,
            self.bridge.app[DECISIONS],
            settings,
            reconciler=reconciler,
            meter=meter,
            wake=self.bridge.app[JOBS].wake,
        )

    async def ask(self, sender: str, text: str, readonly_for_all: bool = False) -> tuple[str, str]:
        """(template, rendered Markdown) of the reply."""
        meter = CallMeter(self.bridge.db, budget=10_000)
        for _ in range(3):
            meter.record("workflow.processInstances.create")
        reply = await self.router(readonly_for_all, meter).route(sender, text)
        _, markdown = render_reply(RENDERER, reply, "Asia/Shanghai")
        return reply.template, markdown


async def submit(bridge: Bridge, doc_no: str, revision: int = 1) -> tuple[str, str]:
    """An order raised and pending; (approval id, instance id)."""
    data = order(doc_no, revision)
    kind = "purchase_order.submitted" if revision == 1 else "purchase_order.changed"
    status, body = await bridge.post(event(f"e-{doc_no}-{revision}", kind, data))
    assert status == 202, body
    row = await bridge.wait_state(body["approval_id"], revision, State.PENDING)
    assert row.instance_id is not None
    return body["approval_id"], row.instance_id


async def decided(bridge: Bridge, doc_no: str, decision: str, end: State) -> str:
    approval_id, instance_id = await submit(bridge, doc_no)
    await bridge.decide(instance_id, decision)
    await bridge.wait_state(approval_id, 1, end)
    return approval_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    url = dbutil.copy_sqlite(sqlite_template, tmp_path_factory.mktemp("cmd") / "bridge.db")
    erp = Erp()
    async with running_bridge(bridge_settings(url), erp=erp) as bridge:
        ids = {"PO-1": (await submit(bridge, "PO-1"))[0]}
        ids["PO-2"] = await decided(bridge, "PO-2", "approved", State.DONE)
        ids["PO-3"] = await decided(bridge, "PO-3", "rejected", State.DONE)
        ids["PO-REFUSED"] = await decided(bridge, "PO-REFUSED", "approved", State.FAILED)
        ids["PO-CHANGED"] = await decided(bridge, "PO-CHANGED", "approved", State.STALE)
        await submit(bridge, "PO-5")
        ids["PO-5"] = (await submit(bridge, "PO-5", 2))[0]
        ids["PO-6"] = (await submit(bridge, "PO-6"))[0]
        cancel = {"doc_no": "PO-6", "revision": 1, "reason": "not needed"}
        assert (await bridge.post(event("e-c6", "purchase_order.cancelled", cancel)))[0] == 202
        await bridge.wait_state(ids["PO-6"], 1, State.CANCELLED)
        status, body = await bridge.post(event("e-rpl", "stock.below_safety", stock()))
        assert status == 202, body
        await bridge.wait_state(body["approval_id"], 1, State.PENDING)
        yield World(bridge, erp, ids)


OPEN = "open"  # allow_readonly_for_all = true

# (sender, text, configuration, template, the reply contains, the reply does not contain)
CASES: list[tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]] = [
    (ADMIN, "help", "", "help", ("状态", "status", "撤销", "cancel", "仅管理员"), ("没有这个",)),
    (ADMIN, "帮助", "", "help", ("待审批", "pending", "重试"), ()),
    (ADMIN, "？", "", "help", ("同步", "sync"), ()),
    (ADMIN, "", "", "help", ("health",), ("没有这个",)),
    (ADMIN, "what now", "", "help", ("没有这个命令：`what now`", "stats"), ()),
    (ADMIN, " status PO-1", "", "status", ("PO-1：审批中 (pending)", "mem-inst-", "已等待"), ()),
    (ADMIN, "状态 PO-2", "", "status", ("已完成 (done)", "**已同意**", "已回写", "ERP-PO-2"), ()),
    (ADMIN, "状态PO-3", "", "status", ("已拒绝", "rejected", "王五 refuse"), ()),
    (ADMIN, "ＳＴＡＴＵＳ\u3000PO-REFUSED", "", "status", ("回写失败", "422"), ()),
    (ADMIN, "Status PO-5", "", "status", ("版本 / revision 2", "r1：已被新版本取代"), ()),
    (ADMIN, "status PO-6", "", "status", ("已撤销 (cancelled)", "无需回写"), ()),
    (ADMIN, "status PO-404", "", "not_found", ("`PO-404`",), ()),
    (ADMIN, "status", "", "usage", ("请给出单据编号", "`status <单据编号 doc_no>`"), ()),
    (ADMIN, "pending", "", "pending", ("pending：3", "PO-1", "PO-5** r2", "@ WH1"), ("PO-2",)),
    (ADMIN, "待审批", "", "pending", ("CNY 12000.00", "张三", "李四"), ()),
    (ADMIN, "stuck 0", "", "pending", ("等待超过 0s", "：3"), ()),
    (ADMIN, "超时 2d", "", "pending", ("等待超过 2d", "没有"), ("PO-1",)),
    (ADMIN, "stuck soon", "", "usage", ("看不懂时长",), ()),
    (ADMIN, "stuck 99999999999d", "", "usage", ("看不懂时长",), ()),
    (ADMIN, "stats", "", "stats", ("近 7 天", "同意 approved 3，拒绝 rejected 1"), ()),
    (ADMIN, "统计 30d", "", "stats", ("近 30 天", "回写失败 / write-back failures：1"), ()),
    (ADMIN, "stats 30天", "", "stats", ("stale 1", "当前待审批 / open now：3"), ()),
    (ADMIN, "stats forever", "", "usage", ("看不懂天数",), ()),
    (ADMIN, "failed", "", "failed", ("：2", "PO-REFUSED", "`重试 PO-REFUSED`", "PO-CHANGED"), ()),
    (ADMIN, "失败", "", "failed", ("ERP 已变更", "409"), ("重试 PO-CHANGED",)),
    (
        ADMIN,
        "health",
        "",
        "health",
        ("未使用", "3 / 10000", "搁置的回写 / parked write-backs：1"),
        (),
    ),
    (ADMIN, "健康", "", "health", ("尚未运行", "任务队列"), ()),
    (STAFF, "status PO-1", "", "refused", ("只有管理员可以使用本机器人",), ()),
    (STAFF, "help", "", "refused", ("只有管理员",), ()),
    (STAFF, "nonsense", "", "refused", ("只有管理员",), ()),
    (STAFF, "retry PO-REFUSED", "", "refused", ("**重试** / `retry` 仅限管理员",), ()),
    (STAFF, "状态 PO-1", OPEN, "status", ("审批中",), ()),
    (STAFF, "pending", OPEN, "pending", ("PO-1",), ()),
    (STAFF, "help", OPEN, "help", ("status", "health"), ("retry", "同步", "撤销")),
    (STAFF, "blah", OPEN, "help", ("没有这个命令",), ("cancel",)),
    (STAFF, "重试 PO-REFUSED", OPEN, "refused", ("仅限管理员",), ()),
    (STAFF, "sync", OPEN, "refused", ("仅限管理员",), ()),
    (STAFF, "撤销 PO-1", OPEN, "refused", ("仅限管理员",), ()),
    (ADMIN, "status PO-1", OPEN, "status", ("审批中",), ()),
]


@pytest.mark.parametrize(("sender", "text", "config", "template", "has", "lacks"), CASES)
async def test_replies(
    world: World,
    sender: str,
    text: str,
    config: str,
    template: str,
    has: tuple[str, ...],
    lacks: tuple[str, ...],
) -> None:
    chosen, markdown = await world.ask(sender, text, readonly_for_all=config == OPEN)
    assert chosen == f"chat/{template}.md.j2", markdown
    for part in has:
        assert part in markdown, markdown
    for part in lacks:
        assert part not in markdown, markdown


@pytest.mark.parametrize(
    ("text", "word", "args"),
    [
        (" status PO-1", "status", ["PO-1"]),
        ("ＳＴＡＴＵＳ\u3000PO-1", "status", ["PO-1"]),
        ("/Help", "help", []),
        ("统计\u30007d", "统计", ["7d"]),
        ("   ", "", []),
    ],
)
async def test_input_is_normalised(text: str, word: str, args: list[str]) -> None:
    assert parse(text) == (word, args)


async def test_admins_retry_sync_and_cancel(world: World) -> None:
    bridge = world.bridge
    # retry: the ERP accepts the refused order now; a document with nothing parked is not found.
    world.erp.refuse.clear()
    template, text = await world.ask(ADMIN, "重试 PO-REFUSED")
    assert (template, "重新回写" in text) == ("chat/retried.md.j2", True), text
    assert (await bridge.wait_state(world.ids["PO-REFUSED"], 1, State.DONE)).erp_ref
    template, text = await world.ask(ADMIN, "retry PO-1")
    assert (template, "nothing parked for PO-1" in text) == ("chat/not_found.md.j2", True)
    # sync: a decision made in DingTalk whose event never came is found and applied.
    [po5] = [i for i in bridge.gateway.instances.values() if i.request.reference.endswith(":2")]
    bridge.gateway.finish(po5.instance_id, "agree")
    template, text = await world.ask(ADMIN, "同步")
    assert (template, "补上 / fixed **1**" in text) == ("chat/sync.md.j2", True), text
    await bridge.wait_state(world.ids["PO-5"], 2, State.DONE)
    # cancel: the open revision is cancelled, its instance terminated, nothing written back.
    template, text = await world.ask(ADMIN, "cancel PO-1")
    assert (template, "已撤销 / cancelled **PO-1** r1" in text) == ("chat/cancelled.md.j2", True)
    row = await bridge.wait_state(world.ids["PO-1"], 1, State.CANCELLED)
    assert row.instance_id is not None
    instance = bridge.gateway.instances[row.instance_id]
    await until(lambda: instance.status == "TERMINATED")
    assert instance.terminate_reason is not None
    async with bridge.db.read() as conn:
        kinds = (
            (await conn.execute(select(job.c.kind).where(job.c.approval_id == row.approval_id)))
            .scalars()
            .all()
        )
    assert "write_back" not in kinds
    template, text = await world.ask(ADMIN, "撤销 PO-2")
    assert (template, "无法撤销" in text, "已完成" in text) == ("chat/cancelled.md.j2", True, True)
    template, _ = await world.ask(ADMIN, "撤销 PO-404")
    assert template == "chat/not_found.md.j2"

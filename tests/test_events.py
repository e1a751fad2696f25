"""Approval events and robot messages: recorded payloads parse, and the sink applies them once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dingtalk_stream import CallbackMessage, EventMessage, SystemMessage
from dingtalk_stream.frames import Headers
from sqlalchemy import func, select, text

from approvals.db.tables import inbox, metadata
from approvals.decisions import DecisionOutcome
from approvals.states import State
from bot.events import (
    ApprovalEvent,
    ChangeType,
    EventError,
    EventKind,
    EventSink,
    TaskResult,
    chat_message,
    from_http,
    from_stream,
)
from bot.keys import DECISIONS
from tests import dbutil
from tests.harness import Bridge, bridge_settings, event, order, running_bridge

FIXTURES = Path(__file__).parent / "fixtures" / "dingtalk"
"""Payloads from reference/dingtalk-api.md: §4.2 (stream_*), §4.3 (http_*, both variants), §5.3
and §5.5 (frame_*: the §4.2 event in wire form, ping, disconnect, a robot CALLBACK), §5.6
(robot_message*, with the quota case), §6.3 vector A's plaintext (http_check_url)."""

UTC = dt.UTC


def fixture(name: str) -> dict[str, Any]:
    """A recorded payload."""
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return loaded


def logical(name: str) -> ApprovalEvent | None:
    """Parse a §4.2 logical-view event: its `event*` keys are the frame's headers."""
    payload = fixture(name)
    headers = Headers.from_dict({k: v for k, v in payload.items() if k != "data"})
    return from_stream(headers, payload["data"])


def test_the_stream_instance_event_parses() -> None:
    ev = logical("stream_instance_finish.json")
    assert ev is not None
    assert (ev.kind, ev.type, ev.result) == (
        EventKind.INSTANCE,
        ChangeType.FINISH,
        TaskResult.AGREE,
    )
    assert ev.instance_id == "9Qgx5QqjR7axMwxxxx"
    assert (ev.process_code, ev.staff_id, ev.title) == ("Pro-xxx", "manager75", "自测-1016")
    assert ev.finish_time == dt.datetime(2017, 5, 24, 2, 17, 52, tzinfo=UTC)
    assert ev.create_time == dt.datetime(2017, 5, 24, 2, 18, 25, tzinfo=UTC)
    assert ev.event_time == dt.datetime(2023, 5, 8, 8, 17, 3, 336000, tzinfo=UTC)
    assert ev.corp_id == "ding9f50b15bxxxx16741"
    assert ev.task_id is None
    assert ev.key == "dingtalk:c7c7120f2c07419**ebdba0318c8"


def test_the_wire_frame_parses_through_the_sdk_message_class() -> None:
    msg = EventMessage.from_dict(fixture("frame_event.json"))
    ev = from_stream(msg.headers, msg.data)
    assert ev == logical("stream_instance_finish.json")


def test_the_task_event_carries_its_task_and_remark() -> None:
    ev = logical("stream_task_finish.json")
    assert ev is not None
    assert (ev.kind, ev.type, ev.result) == (EventKind.TASK, ChangeType.FINISH, TaskResult.AGREE)
    assert (ev.task_id, ev.remark, ev.staff_id) == ("811165", "同意", "manager75")


def test_both_http_variants_parse_to_the_same_change() -> None:
    new = from_http(fixture("http_instance_finish.json"))
    old = from_http(fixture("http_instance_finish_legacy.json"))
    assert new is not None and old is not None
    assert new.corp_id == old.corp_id == "ding9f50b15bxxxx16741"
    assert new.event_id == "c7c7120f2c07419**ebdba0318c8"
    assert new.event_time == dt.datetime(2022, 9, 14, 8, 15, 35, 567000, tzinfo=UTC)
    assert (old.event_id, old.event_time) == (None, None)
    assert new.key == "dingtalk:c7c7120f2c07419**ebdba0318c8"
    # No eventId: the change's own identity (§4.4).
    assert old.key == "dingtalk:9Qgx5QqjR7axMwxxxx:instance:finish::agree"
    fields = ("kind", "type", "result", "instance_id", "finish_time", "staff_id")
    assert [getattr(new, f) for f in fields] == [getattr(old, f) for f in fields]


def test_other_event_types_are_not_approval_events() -> None:
    assert from_http(fixture("http_check_url.json")) is None
    assert from_http({"EventType": "user_add_org", "UserId": ["u1"]}) is None
    assert from_stream(Headers.from_dict({"eventType": "user_add_org"}), {"x": 1}) is None


def test_unknown_types_and_results_are_kept_as_other() -> None:
    base = {"EventType": "bpms_instance_change", "processInstanceId": "pi-1"}
    deleted = from_http({**base, "type": "delete"})
    odd = from_http({**base, "type": "finish", "result": "maybe"})
    assert deleted is not None and deleted.type is ChangeType.OTHER
    assert odd is not None and odd.result is TaskResult.OTHER


def test_an_approval_event_without_its_instance_is_an_error() -> None:
    with pytest.raises(EventError, match="bpms_task_change"):
        from_http({"EventType": "bpms_task_change", "type": "finish", "result": "agree"})
    with pytest.raises(EventError):
        from_http({"EventType": "bpms_task_change", "processInstanceId": "p", "createTime": "x"})


def test_system_frames_parse_through_the_sdk() -> None:
    ping = SystemMessage.from_dict(fixture("frame_ping.json"))
    bye = SystemMessage.from_dict(fixture("frame_disconnect.json"))
    assert (ping.headers.topic, ping.data) == ("ping", {"opaque": "123-dsfs"})
    assert (bye.headers.topic, bye.data) == ("disconnect", {"reason": "connection is expired"})


def test_a_robot_message_parses_with_its_text_stripped() -> None:
    msg = CallbackMessage.from_dict(fixture("frame_robot.json"))
    assert msg.headers.topic == "/v1.0/im/bot/messages/get"
    chat = chat_message(msg.data)
    assert chat.text == "status PO-2024-001"
    assert (chat.sender_staff_id, chat.robot_code) == ("manager75", "dingeqqpkv3xxxxxx")
    assert chat.is_group and chat.is_in_at_list
    assert chat.session_webhook.startswith("https://oapi.dingtalk.com/robot/sendBySession")
    assert chat.session_webhook_expires == dt.datetime(2023, 7, 26, 10, 31, 42, 194000, tzinfo=UTC)
    assert chat.error is None


def test_a_robot_message_over_quota_parses_without_text() -> None:
    chat = chat_message(fixture("robot_message_quota.json"))
    assert (chat.text, chat.error) == ("", "org call quota exceeded")
    assert chat_message({"conversationType": 1, "text": {}}).conversation_type == "1"


# --- the sink, against a real database through a running bridge ---


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def bridge(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[Bridge]:
    """A bridge on a migrated, empty database."""
    if request.param == "sqlite":
        url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
    else:
        url = request.getfixturevalue("postgres_url")
        from approvals.config import DatabaseConfig
        from approvals.db.engine import Database

        db = Database.from_config(DatabaseConfig(url=url))
        async with db.engine.begin() as conn:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        await db.dispose()
    async with running_bridge(bridge_settings(url)) as running:
        yield running


async def pending(bridge: Bridge, doc_no: str) -> tuple[str, str]:
    """Submit an order and wait until its instance is raised: (approval_id, instance_id)."""
    status, body = await bridge.post(
        event(f"{doc_no}-1", "purchase_order.submitted", order(doc_no))
    )
    assert status == 202, body
    row = await bridge.wait_state(body["approval_id"], 1, State.PENDING)
    assert row.instance_id is not None
    return body["approval_id"], row.instance_id


def http_event(kind: str, instance_id: str, **fields: Any) -> ApprovalEvent:
    """An event as an HTTP push would carry it."""
    name = "bpms_instance_change" if kind == "instance" else "bpms_task_change"
    parsed = from_http({"EventType": name, "processInstanceId": instance_id, **fields})
    assert parsed is not None
    return parsed


async def inbox_size(bridge: Bridge) -> int:
    async with bridge.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(inbox))).scalar_one())


async def test_task_actions_then_the_finish_decide_the_revision(bridge: Bridge) -> None:
    approval_id, instance_id = await pending(bridge, "PO-E1")
    sink = EventSink(bridge.app[DECISIONS])
    task = http_event(
        "task", instance_id, type="finish", result="agree", staffId="manager1", remark="ok",
        taskId=7, finishTime=1764064800000,
    )  # fmt: skip
    finish = http_event(
        "instance", instance_id, type="finish", result="agree", finishTime=1764064801000
    )
    assert (await sink.apply(task)).outcome is DecisionOutcome.APPLIED
    assert (await sink.apply(task)).outcome is DecisionOutcome.DUPLICATE
    result = await sink.apply(finish)
    assert (result.outcome, result.approval_id) == (DecisionOutcome.APPLIED, approval_id)
    assert (await sink.apply(finish)).outcome is DecisionOutcome.DUPLICATE
    row = await bridge.revision(approval_id, 1)
    assert row.decision == "approved"
    assert row.decided_at == dt.datetime(2025, 11, 25, 10, 0, 1, tzinfo=UTC)
    assert row.approvers == [
        {
            "user_id": "manager1",
            "name": "",
            "result": "agree",
            "comment": "ok",
            "at": "2025-11-25T10:00:00Z",
        }
    ]


async def test_an_instances_events_apply_in_arrival_order(bridge: Bridge) -> None:
    approval_id, instance_id = await pending(bridge, "PO-E5")
    sink = EventSink(bridge.app[DECISIONS])
    task = http_event(
        "task", instance_id, type="finish", result="agree", staffId="manager1", taskId=8
    )
    finish = http_event("instance", instance_id, type="finish", result="agree")
    # Pushed back to back and applied concurrently (as the stream intake does).
    results = await asyncio.gather(sink.apply(task), sink.apply(finish))
    assert [r.outcome for r in results] == [DecisionOutcome.APPLIED] * 2
    row = await bridge.revision(approval_id, 1)
    assert [a["user_id"] for a in row.approvers or []] == ["manager1"]


async def test_a_refusal_rejects(bridge: Bridge) -> None:
    approval_id, instance_id = await pending(bridge, "PO-E2")
    sink = EventSink(bridge.app[DECISIONS])
    await sink.apply(http_event("instance", instance_id, type="finish", result="refuse"))
    assert (await bridge.revision(approval_id, 1)).decision == "rejected"


async def test_a_terminated_instance_cancels_the_revision(bridge: Bridge) -> None:
    approval_id, instance_id = await pending(bridge, "PO-E3")
    sink = EventSink(bridge.app[DECISIONS])
    result = await sink.apply(http_event("instance", instance_id, type="terminate"))
    assert result.outcome is DecisionOutcome.APPLIED
    assert (await bridge.revision(approval_id, 1)).state is State.CANCELLED


async def test_what_is_not_a_decision_is_ignored_and_not_recorded(bridge: Bridge) -> None:
    approval_id, instance_id = await pending(bridge, "PO-E4")
    sink = EventSink(bridge.app[DECISIONS])
    before = await inbox_size(bridge)
    for ev in [
        http_event("instance", instance_id, type="start"),
        http_event("task", instance_id, type="start", staffId="manager1"),
        http_event("task", instance_id, type="cancel", staffId="manager2"),
        http_event("task", instance_id, type="finish", result="redirect", staffId="manager1"),
        http_event("instance", instance_id, type="delete"),
        http_event("instance", instance_id, type="finish"),  # no result: nothing to decide
    ]:
        assert (await sink.apply(ev)).outcome is DecisionOutcome.IGNORED
    row = await bridge.revision(approval_id, 1)
    assert (row.state, row.approvers or []) == (State.PENDING, [])
    assert await inbox_size(bridge) == before


async def test_a_decision_for_an_unknown_instance_is_held(bridge: Bridge) -> None:
    sink = EventSink(bridge.app[DECISIONS])
    ev = http_event("instance", "not-yet-recorded", type="finish", result="agree")
    assert (await sink.apply(ev)).outcome is DecisionOutcome.HELD

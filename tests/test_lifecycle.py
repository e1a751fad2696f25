"""An order's whole life over loopback HTTP: webhook in, instance, decision, write-back out."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from approvals.states import State
from tests.harness import bridge_settings, event, order, running_bridge


class Receiver:
    """A minimal ERP endpoint that records write-backs (the reference ERP has its own tests)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.statuses = statuses or []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), json.loads(await request.read())))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"erp_ref": f"ERP-{len(self.received)}"}, status=status)


async def serve(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/approval-results", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_order_is_raised_decided_and_written_back(
    tmp_path: Any, sqlite_template: Any
) -> None:
    from tests import dbutil

    url = dbutil.copy_sqlite(sqlite_template, tmp_path / "b.db")
    receiver = Receiver(statuses=[503, 200])
    erp_runner, erp_url = await serve(receiver)
    try:
        async with running_bridge(bridge_settings(url, erp_url)) as bridge:
            status, body = await bridge.post(event("e1", "purchase_order.submitted", order("PO-1")))
            assert status == 202, body
            approval_id = body["approval_id"]
            row = await bridge.wait_state(approval_id, 1, State.PENDING)
            assert row.instance_id is not None
            result = await bridge.decide(row.instance_id, "approved")
            assert result.outcome.value == "applied"
            done = await bridge.wait_state(approval_id, 1, State.DONE)
            assert done.erp_ref == "ERP-2"
    finally:
        await erp_runner.cleanup()
    assert len(receiver.received) == 2
    keys = {headers["Idempotency-Key"] for headers, _ in receiver.received}
    assert keys == {f"{approval_id}:1"}
    assert receiver.received[1][1]["decision"] == "approved"

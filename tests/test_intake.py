"""The group-commit writer: batches, and survives what would otherwise stop it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import TypeAdapter

from approvals import intake as intake_module
from approvals import rules
from approvals.config import IntakeConfig
from approvals.db.engine import Database
from approvals.errors import Overloaded, StorageUnavailable
from approvals.intake import IntakeService
from approvals.models import ErpEvent
from approvals.ports import SystemClock
from approvals.rules import Outcome
from tests.harness import event, order

EVENTS = TypeAdapter[Any](ErpEvent)


def po(doc_no: str) -> Any:
    return EVENTS.validate_python(event(f"e-{doc_no}", "purchase_order.submitted", order(doc_no)))


async def test_a_bug_fails_its_batch_but_not_the_writer(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rules.decide

    def fragile(event: Any, view: Any, new_id: Any) -> Any:
        if event.data.doc_no == "PO-BUG":
            raise RuntimeError("a bug in the rules")
        return real(event, view, new_id)

    monkeypatch.setattr(intake_module, "decide", fragile)
    service = IntakeService(db, SystemClock(), IntakeConfig())
    async with service.running():
        with pytest.raises(StorageUnavailable):
            await service.submit(po("PO-BUG"))
        after = await asyncio.wait_for(service.submit(po("PO-OK")), 5)
    assert after.outcome is Outcome.ACCEPTED


async def test_a_stopped_intake_refuses_instead_of_hanging(db: Database) -> None:
    service = IntakeService(db, SystemClock(), IntakeConfig())
    async with service.running():
        assert (await service.submit(po("PO-1"))).outcome is Outcome.ACCEPTED
    with pytest.raises(Overloaded):
        await service.submit(po("PO-2"))

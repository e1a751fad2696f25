"""Intake rules from tables: what each event does to a document as it stands."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import TypeAdapter

from approvals.models import DocType, ErpEvent
from approvals.rules import (
    CREATE_INSTANCE,
    TERMINATE_INSTANCE,
    DocView,
    EnqueueJob,
    Event,
    Move,
    NewApproval,
    NewRevision,
    Note,
    Outcome,
    decide,
    fold_key,
)
from approvals.states import State, Trigger
from tests.harness import event, order, stock

EVENTS = TypeAdapter[Event](ErpEvent)


def _ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"A{next(counter)}"


def po(rev: int, kind: str = "submitted") -> Event:
    return EVENTS.validate_python(
        event(f"e-{kind}-{rev}", f"purchase_order.{kind}", order("PO-1", rev))
    )


def cancel(rev: int) -> Event:
    data = {"doc_no": "PO-1", "revision": rev, "reason": "no longer needed"}
    return EVENTS.validate_python(event(f"c-{rev}", "purchase_order.cancelled", data))


def view(rev: int, state: State) -> DocView:
    return DocView("A0", DocType.PURCHASE_ORDER, "PO-1", rev, state)


def kinds(effects: tuple[Any, ...]) -> list[str]:
    return [type(e).__name__ for e in effects]


def test_first_submission_opens_an_approval() -> None:
    verdict = decide(po(1), None, _ids())
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.approval_id == "A1"
    assert kinds(verdict.effects) == ["NewApproval", "NewRevision", "EnqueueJob"]
    job = verdict.effects[2]
    assert isinstance(job, EnqueueJob) and job.kind == CREATE_INSTANCE


def test_changed_without_a_known_document_is_a_first_submission() -> None:
    verdict = decide(po(3, "changed"), None, _ids())
    assert verdict.outcome is Outcome.ACCEPTED
    assert isinstance(verdict.effects[1], NewRevision) and verdict.effects[1].revision == 3


@pytest.mark.parametrize(
    ("known_rev", "state", "incoming", "outcome"),
    [
        (2, State.PENDING, 1, Outcome.STALE_REVISION),
        (2, State.PENDING, 2, Outcome.DUPLICATE),
        (2, State.DONE, 2, Outcome.DUPLICATE),
        (2, State.CANCELLED, 1, Outcome.STALE_REVISION),
        (2, State.CANCELLED, 2, Outcome.DUPLICATE),
    ],
)
def test_revision_precedence(known_rev: int, state: State, incoming: int, outcome: Outcome) -> None:
    verdict = decide(po(incoming), view(known_rev, state), _ids())
    assert verdict.outcome is outcome
    assert verdict.approval_id == "A0"
    assert verdict.effects == ()


# (state of the known revision, what superseding it writes besides the new revision)
SUPERSEDE_CASES = [
    (State.RECEIVED, ["Move"]),
    (State.SUBMITTING, ["Move"]),
    (State.PENDING, ["Move", "EnqueueJob"]),
    (State.APPROVED, ["Move"]),
    (State.REJECTED, ["Move"]),
    (State.FAILED, ["Move"]),
    (State.WRITING_BACK, ["Note"]),
    (State.DONE, ["Note"]),
    (State.STALE, ["Note"]),
    (State.CANCELLED, ["Note"]),
]


@pytest.mark.parametrize(("state", "retire"), SUPERSEDE_CASES)
def test_newer_revision_supersedes(state: State, retire: list[str]) -> None:
    verdict = decide(po(2, "changed"), view(1, state), _ids())
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.approval_id == "A0"
    assert kinds(verdict.effects) == [*retire, "NewRevision", "EnqueueJob"]
    first = verdict.effects[0]
    if isinstance(first, Move):
        assert (first.revision, first.from_state, first.trigger) == (1, state, Trigger.SUPERSEDE)
    if state is State.PENDING:
        terminate = verdict.effects[1]
        assert isinstance(terminate, EnqueueJob) and terminate.kind == TERMINATE_INSTANCE
    assert verdict.view is not None and verdict.view.revision == 2


@pytest.mark.parametrize(
    ("state", "effects", "outcome"),
    [
        (State.RECEIVED, ["Move"], Outcome.ACCEPTED),
        (State.SUBMITTING, ["Move"], Outcome.ACCEPTED),
        (State.PENDING, ["Move", "EnqueueJob"], Outcome.ACCEPTED),
        (State.APPROVED, ["Move"], Outcome.ACCEPTED),
        (State.FAILED, ["Move"], Outcome.ACCEPTED),
        (State.WRITING_BACK, ["Note"], Outcome.ACCEPTED),
        (State.DONE, ["Note"], Outcome.ACCEPTED),
        (State.CANCELLED, [], Outcome.DUPLICATE),
    ],
)
def test_cancellation_of_the_current_revision(
    state: State, effects: list[str], outcome: Outcome
) -> None:
    verdict = decide(cancel(1), view(1, state), _ids())
    assert verdict.outcome is outcome
    assert kinds(verdict.effects) == effects
    if effects and effects[0] == "Move":
        move = verdict.effects[0]
        assert isinstance(move, Move) and move.trigger is Trigger.CANCEL


def test_cancellation_of_an_older_revision_is_stale() -> None:
    assert decide(cancel(1), view(2, State.PENDING), _ids()).outcome is Outcome.STALE_REVISION


def test_cancellation_before_submission_is_remembered() -> None:
    verdict = decide(cancel(2), None, _ids())
    assert verdict.outcome is Outcome.ACCEPTED
    assert kinds(verdict.effects) == ["NewApproval", "NewRevision", "Note"]
    revision = verdict.effects[1]
    assert isinstance(revision, NewRevision) and revision.state is State.CANCELLED
    # ...so that the late submission of that revision is refused.
    assert verdict.view is not None
    assert decide(po(2), verdict.view, _ids()).outcome is Outcome.DUPLICATE
    assert decide(po(1), verdict.view, _ids()).outcome is Outcome.STALE_REVISION
    assert decide(po(3), verdict.view, _ids()).outcome is Outcome.ACCEPTED


def test_cancellation_of_an_unseen_newer_revision() -> None:
    verdict = decide(cancel(3), view(1, State.PENDING), _ids())
    assert verdict.outcome is Outcome.ACCEPTED
    assert kinds(verdict.effects) == ["Move", "EnqueueJob", "NewRevision", "Note"]
    assert verdict.view is not None and verdict.view.state is State.CANCELLED


def alert(warehouse: str = "WH1") -> Event:
    return EVENTS.validate_python(event("s1", "stock.below_safety", stock(warehouse=warehouse)))


@pytest.mark.parametrize("state", [State.RECEIVED, State.SUBMITTING, State.PENDING])
def test_stock_alert_folds_into_an_open_need(state: State) -> None:
    key = fold_key("M-001", "WH1")
    open_view = DocView("A0", DocType.REPLENISHMENT, "RPL-A0", 1, state, key)
    verdict = decide(alert(), open_view, _ids())
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.approval_id == "A0"
    assert kinds(verdict.effects) == ["Note"]
    note = verdict.effects[0]
    assert isinstance(note, Note) and note.action == "folded" and note.detail["on_hand"] == "80"


def test_stock_alert_opens_a_new_need() -> None:
    verdict = decide(alert(), None, _ids())
    assert verdict.outcome is Outcome.ACCEPTED
    new = verdict.effects[0]
    assert isinstance(new, NewApproval)
    assert new.doc_type is DocType.REPLENISHMENT
    assert new.doc_no == "RPL-A1"
    assert new.open_fold_key == fold_key("M-001", "WH1")
    assert kinds(verdict.effects) == ["NewApproval", "NewRevision", "EnqueueJob"]

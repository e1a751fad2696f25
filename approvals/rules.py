"""Intake rules, pure: revision precedence, supersede, cancellation and folding (CONTRACT §2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from approvals.models import DocType, OrderCancelled, OrderSubmitted, StockBelowSafety
from approvals.states import OPEN_STATES, State, Trigger, next_state

Event = OrderSubmitted | OrderCancelled | StockBelowSafety


class Outcome(StrEnum):
    """How intake answers an event."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    STALE_REVISION = "stale_revision"


@dataclass
class DocView:
    """What intake knows of one document: its approval and current revision."""

    approval_id: str
    doc_type: DocType
    doc_no: str
    revision: int
    state: State
    open_fold_key: str | None = None


@dataclass(frozen=True)
class NewApproval:
    """Insert an approval (and its first revision via `NewRevision`)."""

    approval_id: str
    doc_type: DocType
    doc_no: str
    open_fold_key: str | None


@dataclass(frozen=True)
class NewRevision:
    """Insert a revision in a state, and make it the approval's current one."""

    approval_id: str
    revision: int
    state: State
    document: str
    """The document as JSON text."""


@dataclass(frozen=True)
class Move:
    """Move a revision from one state by a trigger (compare-and-set on `from_state`)."""

    approval_id: str
    revision: int
    from_state: State
    trigger: Trigger
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnqueueJob:
    """Add an outbox job, in the same transaction."""

    kind: str
    approval_id: str
    revision: int
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Note:
    """An audit entry that changes no state."""

    approval_id: str
    revision: int
    action: str
    detail: dict[str, Any] = field(default_factory=dict)


Effect = NewApproval | NewRevision | Move | EnqueueJob | Note


@dataclass(frozen=True)
class Verdict:
    """The answer to one event and what to write for it."""

    outcome: Outcome
    approval_id: str | None
    revision: int | None = None
    effects: tuple[Effect, ...] = ()
    view: DocView | None = None
    """What the document looks like afterwards (for later events in the same batch)."""


CREATE_INSTANCE = "create_instance"
TERMINATE_INSTANCE = "terminate_instance"


def fold_key(material_code: str, warehouse: str) -> str:
    """The identity of one replenishment need."""
    return f"{material_code}\x1f{warehouse}"


def decide(event: Event, view: DocView | None, new_id: Callable[[], str]) -> Verdict:
    """What to do with one event, given the document as it stands (None: never seen)."""
    if isinstance(event, OrderSubmitted):
        return _order(event, view, new_id)
    if isinstance(event, OrderCancelled):
        return _cancel(event, view, new_id)
    return _stock(event, view, new_id)


def _retire(view: DocView, trigger: Trigger, detail: dict[str, Any]) -> list[Effect]:
    """Supersede or cancel the current revision if it still can be, terminating its instance."""
    if next_state(view.state, trigger) is None:
        return [Note(view.approval_id, view.revision, f"{trigger.value}_ignored", detail)]
    effects: list[Effect] = [Move(view.approval_id, view.revision, view.state, trigger, detail)]
    if view.state is State.PENDING:
        effects.append(EnqueueJob(TERMINATE_INSTANCE, view.approval_id, view.revision))
    # A revision still `submitting` may have an instance we have not recorded yet: the create
    # job sees the new state when it finishes and terminates what it raised.
    return effects


def _start(view: DocView, revision: int, document: str) -> list[Effect]:
    return [
        NewRevision(view.approval_id, revision, State.RECEIVED, document),
        EnqueueJob(CREATE_INSTANCE, view.approval_id, revision),
    ]


def _order(event: OrderSubmitted, view: DocView | None, new_id: Callable[[], str]) -> Verdict:
    data = event.data
    document = data.model_dump_json()
    if view is None:
        approval_id = new_id()
        fresh = DocView(
            approval_id, DocType.PURCHASE_ORDER, data.doc_no, data.revision, State.RECEIVED
        )
        effects: list[Effect] = [
            NewApproval(approval_id, DocType.PURCHASE_ORDER, data.doc_no, None)
        ]
        effects += _start(fresh, data.revision, document)
        return Verdict(Outcome.ACCEPTED, approval_id, data.revision, tuple(effects), fresh)
    if data.revision < view.revision:
        return Verdict(Outcome.STALE_REVISION, view.approval_id, view.revision, view=view)
    if data.revision == view.revision:
        return Verdict(Outcome.DUPLICATE, view.approval_id, view.revision, view=view)
    detail = {"by_revision": data.revision}
    changes = _retire(view, Trigger.SUPERSEDE, detail) + _start(view, data.revision, document)
    after = DocView(view.approval_id, view.doc_type, view.doc_no, data.revision, State.RECEIVED)
    return Verdict(Outcome.ACCEPTED, view.approval_id, data.revision, tuple(changes), after)


def _cancel(event: OrderCancelled, view: DocView | None, new_id: Callable[[], str]) -> Verdict:
    data = event.data
    document = data.model_dump_json()
    detail = {"reason": data.reason}
    if view is None:
        # A cancellation that overtook its submission: remember it, so the late submission of
        # this revision (a duplicate) or an older one (stale) raises no approval.
        approval_id = new_id()
        after = DocView(
            approval_id, DocType.PURCHASE_ORDER, data.doc_no, data.revision, State.CANCELLED
        )
        effects: list[Effect] = [
            NewApproval(approval_id, DocType.PURCHASE_ORDER, data.doc_no, None),
            NewRevision(approval_id, data.revision, State.CANCELLED, document),
            Note(approval_id, data.revision, "cancelled_before_submission", detail),
        ]
        return Verdict(Outcome.ACCEPTED, approval_id, data.revision, tuple(effects), after)
    if data.revision < view.revision:
        return Verdict(Outcome.STALE_REVISION, view.approval_id, view.revision, view=view)
    if data.revision == view.revision:
        if view.state is State.CANCELLED:
            return Verdict(Outcome.DUPLICATE, view.approval_id, view.revision, view=view)
        effects = _retire(view, Trigger.CANCEL, detail)
        moved = next_state(view.state, Trigger.CANCEL)
        after = DocView(
            view.approval_id, view.doc_type, view.doc_no, view.revision, moved or view.state
        )
        return Verdict(Outcome.ACCEPTED, view.approval_id, view.revision, tuple(effects), after)
    # Cancelled at a revision we never saw: the one we hold is superseded and the new one is dead.
    effects = _retire(view, Trigger.SUPERSEDE, {"by_revision": data.revision})
    effects.append(NewRevision(view.approval_id, data.revision, State.CANCELLED, document))
    effects.append(Note(view.approval_id, data.revision, "cancelled", detail))
    after = DocView(view.approval_id, view.doc_type, view.doc_no, data.revision, State.CANCELLED)
    return Verdict(Outcome.ACCEPTED, view.approval_id, data.revision, tuple(effects), after)


def replenishment_doc_no(approval_id: str) -> str:
    """The bridge's own reference for a replenishment request."""
    # 40 random bits: readable in chat; the unique (doc_type, doc_no) index backs it up.
    return f"RPL-{approval_id[-8:]}"


def _stock(event: StockBelowSafety, view: DocView | None, new_id: Callable[[], str]) -> Verdict:
    data = event.data
    key = fold_key(data.material_code, data.warehouse)
    if view is not None and view.state in OPEN_STATES:
        detail = {"event_id": event.event_id, "on_hand": str(data.on_hand)}
        effects = (Note(view.approval_id, view.revision, "folded", detail),)
        return Verdict(Outcome.ACCEPTED, view.approval_id, view.revision, effects, view)
    approval_id = new_id()
    doc_no = replenishment_doc_no(approval_id)
    fresh = DocView(approval_id, DocType.REPLENISHMENT, doc_no, 1, State.RECEIVED, key)
    effects_list: list[Effect] = [NewApproval(approval_id, DocType.REPLENISHMENT, doc_no, key)]
    effects_list += _start(fresh, 1, data.model_dump_json())
    return Verdict(Outcome.ACCEPTED, approval_id, 1, tuple(effects_list), fresh)

"""The approval life cycle (DESIGN.md section 3) as one transition table."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where one revision of an approval stands."""

    RECEIVED = "received"
    SUBMITTING = "submitting"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WRITING_BACK = "writing_back"
    DONE = "done"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    STALE = "stale"
    FAILED = "failed"


class Trigger(StrEnum):
    """What can happen to a revision."""

    SUBMIT = "submit"
    """A worker starts raising the approval instance."""
    INSTANCE_CREATED = "instance_created"
    SUBMIT_FAILED = "submit_failed"
    """Raising the instance failed for good (e.g. an unmapped user); parked."""
    APPROVE = "approve"
    REJECT = "reject"
    WRITE_BACK = "write_back"
    """A worker starts telling the ERP."""
    ACKNOWLEDGED = "acknowledged"
    """The ERP answered 2xx."""
    CONFLICT = "conflict"
    """The ERP answered 409: the document changed there."""
    WRITE_BACK_FAILED = "write_back_failed"
    """The ERP refused (4xx) or stayed unreachable past the deadline; parked."""
    SUPERSEDE = "supersede"
    """A newer revision of the same document arrived."""
    CANCEL = "cancel"
    """The ERP (or an admin) cancelled the document."""
    TERMINATED = "terminated"
    """The instance was terminated or revoked on the approval side."""
    RETRY_SUBMIT = "retry_submit"
    """An admin retries a revision parked before it had an instance."""
    RETRY_WRITE_BACK = "retry_write_back"
    """An admin retries a parked write-back."""


S, T = State, Trigger

TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (S.RECEIVED, T.SUBMIT): S.SUBMITTING,
    (S.RECEIVED, T.SUPERSEDE): S.SUPERSEDED,
    (S.RECEIVED, T.CANCEL): S.CANCELLED,
    (S.SUBMITTING, T.SUBMIT): S.SUBMITTING,
    (S.SUBMITTING, T.INSTANCE_CREATED): S.PENDING,
    (S.SUBMITTING, T.SUBMIT_FAILED): S.FAILED,
    (S.SUBMITTING, T.SUPERSEDE): S.SUPERSEDED,
    (S.SUBMITTING, T.CANCEL): S.CANCELLED,
    (S.PENDING, T.APPROVE): S.APPROVED,
    (S.PENDING, T.REJECT): S.REJECTED,
    (S.PENDING, T.SUPERSEDE): S.SUPERSEDED,
    (S.PENDING, T.CANCEL): S.CANCELLED,
    (S.PENDING, T.TERMINATED): S.CANCELLED,
    (S.APPROVED, T.WRITE_BACK): S.WRITING_BACK,
    (S.APPROVED, T.SUPERSEDE): S.SUPERSEDED,
    (S.APPROVED, T.CANCEL): S.CANCELLED,
    (S.REJECTED, T.WRITE_BACK): S.WRITING_BACK,
    (S.REJECTED, T.SUPERSEDE): S.SUPERSEDED,
    (S.REJECTED, T.CANCEL): S.CANCELLED,
    (S.WRITING_BACK, T.WRITE_BACK): S.WRITING_BACK,
    (S.WRITING_BACK, T.ACKNOWLEDGED): S.DONE,
    (S.WRITING_BACK, T.CONFLICT): S.STALE,
    (S.WRITING_BACK, T.WRITE_BACK_FAILED): S.FAILED,
    (S.FAILED, T.RETRY_SUBMIT): S.RECEIVED,
    (S.FAILED, T.RETRY_WRITE_BACK): S.WRITING_BACK,
    (S.FAILED, T.SUPERSEDE): S.SUPERSEDED,
    (S.FAILED, T.CANCEL): S.CANCELLED,
}
"""Every allowed move; a (state, trigger) pair not listed is not allowed."""

OPEN_STATES: frozenset[State] = frozenset({S.RECEIVED, S.SUBMITTING, S.PENDING})
"""Revisions still waiting for a decision."""

FINAL_STATES: frozenset[State] = frozenset({S.DONE, S.SUPERSEDED, S.CANCELLED, S.STALE})
"""Revisions nothing more will happen to (short of a new revision)."""


class InvalidTransition(Exception):
    """A trigger that the revision's state does not allow."""

    def __init__(self, state: State, trigger: Trigger) -> None:
        super().__init__(f"{trigger.value} is not allowed in state {state.value}")
        self.state = state
        self.trigger = trigger


def next_state(state: State, trigger: Trigger) -> State | None:
    """The state a trigger leads to, or None when the pair is not allowed."""
    return TRANSITIONS.get((state, trigger))


def transition(state: State, trigger: Trigger) -> State:
    """The state a trigger leads to; raises `InvalidTransition` when not allowed."""
    target = TRANSITIONS.get((state, trigger))
    if target is None:
        raise InvalidTransition(state, trigger)
    return target


def mermaid() -> str:
    """The transition table as a Mermaid state diagram, for the README."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.RECEIVED.value}"]
    for (source, trigger), target in TRANSITIONS.items():
        if source is not target:
            lines.append(f"    {source.value} --> {target.value}: {trigger.value}")
    lines.extend(f"    {final.value} --> [*]" for final in sorted(FINAL_STATES))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # `python -m approvals.states` regenerates the README's diagram
    print(mermaid(), end="")

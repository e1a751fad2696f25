"""The transition table, checked over every (state, trigger) pair."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from approvals.states import (
    FINAL_STATES,
    InvalidTransition,
    State,
    Trigger,
    mermaid,
    next_state,
    transition,
)

S, T = State, Trigger

# Written out by state, as a reviewer reads the life cycle; every pair absent here must be refused.
EXPECTED: dict[State, dict[Trigger, State]] = {
    S.RECEIVED: {T.SUBMIT: S.SUBMITTING, T.SUPERSEDE: S.SUPERSEDED, T.CANCEL: S.CANCELLED},
    S.SUBMITTING: {
        T.SUBMIT: S.SUBMITTING,
        T.INSTANCE_CREATED: S.PENDING,
        T.SUBMIT_FAILED: S.FAILED,
        T.SUPERSEDE: S.SUPERSEDED,
        T.CANCEL: S.CANCELLED,
    },
    S.PENDING: {
        T.APPROVE: S.APPROVED,
        T.REJECT: S.REJECTED,
        T.SUPERSEDE: S.SUPERSEDED,
        T.CANCEL: S.CANCELLED,
        T.TERMINATED: S.CANCELLED,
    },
    S.APPROVED: {T.WRITE_BACK: S.WRITING_BACK, T.SUPERSEDE: S.SUPERSEDED, T.CANCEL: S.CANCELLED},
    S.REJECTED: {T.WRITE_BACK: S.WRITING_BACK, T.SUPERSEDE: S.SUPERSEDED, T.CANCEL: S.CANCELLED},
    S.WRITING_BACK: {
        T.WRITE_BACK: S.WRITING_BACK,
        T.ACKNOWLEDGED: S.DONE,
        T.CONFLICT: S.STALE,
        T.WRITE_BACK_FAILED: S.FAILED,
    },
    S.DONE: {},
    S.SUPERSEDED: {},
    S.CANCELLED: {},
    S.STALE: {},
    S.FAILED: {
        T.RETRY_SUBMIT: S.RECEIVED,
        T.RETRY_WRITE_BACK: S.WRITING_BACK,
        T.SUPERSEDE: S.SUPERSEDED,
        T.CANCEL: S.CANCELLED,
    },
}


@pytest.mark.parametrize(("state", "trigger"), list(itertools.product(State, Trigger)))
def test_every_pair(state: State, trigger: Trigger) -> None:
    expected = EXPECTED[state].get(trigger)
    assert next_state(state, trigger) == expected
    if expected is None:
        with pytest.raises(InvalidTransition):
            transition(state, trigger)
    else:
        assert transition(state, trigger) == expected


def test_final_states_accept_nothing() -> None:
    for state in FINAL_STATES:
        assert all(next_state(state, trigger) is None for trigger in Trigger)


def test_a_written_back_decision_cannot_be_superseded_or_cancelled() -> None:
    # Once the ERP may have heard a decision, only the ERP's answer moves the revision on.
    for trigger in (T.SUPERSEDE, T.CANCEL, T.APPROVE, T.REJECT):
        assert next_state(S.WRITING_BACK, trigger) is None


def test_mermaid_lists_every_move() -> None:
    diagram = mermaid()
    assert diagram.startswith("stateDiagram-v2\n")
    assert "pending --> approved: approve" in diagram
    assert "writing_back --> stale: conflict" in diagram
    moves = [line for line in diagram.splitlines() if ": " in line]
    assert len(moves) == sum(1 for (a, _), b in _expected_pairs() if a is not b)


def _expected_pairs() -> list[tuple[tuple[State, Trigger], State]]:
    return [((s, t), to) for s, moves in EXPECTED.items() for t, to in moves.items()]


def test_readme_diagram_is_generated_from_the_table() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert f"```mermaid\n{mermaid()}```" in readme, "run `python -m approvals.states` and paste it"

"""Intake's writes: effects decided for a batch of ERP events, inserted in bulk in order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, insert, update

from approvals.db import jobs as job_repo
from approvals.db.repo import append_audit_sync, audit_row, move_sync
from approvals.db.tables import approval, revision
from approvals.rules import Effect, EnqueueJob, Move, NewApproval, NewRevision, Note


class _Writes:
    """Intake effects gathered for bulk inserts, flushed in dependency order."""

    def __init__(self, now: dt.datetime, actor: str) -> None:
        self.now, self.actor = now, actor
        self._reset()

    def _reset(self) -> None:
        self.approvals: list[dict[str, Any]] = []
        self.revisions: list[dict[str, Any]] = []
        self.current: dict[str, int] = {}
        self.jobs: list[job_repo.JobSpec] = []
        self.audits: list[dict[str, Any]] = []

    def add(self, effect: NewApproval | NewRevision | EnqueueJob | Note) -> None:
        now, actor = self.now, self.actor
        if isinstance(effect, NewApproval):
            self.approvals.append(
                {
                    "id": effect.approval_id,
                    "doc_type": effect.doc_type.value,
                    "doc_no": effect.doc_no,
                    "open_fold_key": effect.open_fold_key,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        elif isinstance(effect, NewRevision):
            self.revisions.append(
                {
                    "approval_id": effect.approval_id,
                    "revision": effect.revision,
                    "state": effect.state.value,
                    "document": effect.document,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            self.current[effect.approval_id] = effect.revision
            self.audits.append(
                audit_row(
                    effect.approval_id, effect.revision, now, actor, "received", None, effect.state
                )
            )
        elif isinstance(effect, EnqueueJob):
            self.jobs.append((effect.kind, effect.approval_id, effect.revision, effect.payload))
        else:
            self.audits.append(
                audit_row(
                    effect.approval_id,
                    effect.revision,
                    now,
                    actor,
                    effect.action,
                    detail=effect.detail,
                )
            )

    def flush(self, conn: Connection) -> None:
        now = self.now
        created = set()
        if self.approvals:
            for row in self.approvals:
                row["current_revision"] = self.current[row["id"]]
                created.add(row["id"])
            conn.execute(insert(approval), self.approvals)
        if self.revisions:
            conn.execute(insert(revision), self.revisions)
        for approval_id, rev in self.current.items():
            if approval_id not in created:
                conn.execute(
                    update(approval)
                    .where(approval.c.id == approval_id)
                    .values(current_revision=rev, updated_at=now)
                )
        job_repo.enqueue_sync(conn, self.jobs, now)
        append_audit_sync(conn, self.audits)
        self._reset()


def apply_effects(
    conn: Connection, effects: Iterable[Effect], now: dt.datetime, actor: str
) -> bool:
    """Write intake effects in order, inserts in bulk; False when a compare-and-set lost."""
    writes = _Writes(now, actor)
    for effect in effects:
        if isinstance(effect, Move):
            # A move may touch a row inserted earlier in the same batch: write those first.
            writes.flush(conn)
            if not move_sync(
                conn,
                effect.approval_id,
                effect.revision,
                effect.from_state,
                effect.trigger,
                now,
                actor,
                effect.detail,
            ):
                return False
        else:
            writes.add(effect)
    writes.flush(conn)
    return True

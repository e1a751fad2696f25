"""Named crash points for the reliability suite, in the manner of etcd's gofail and TiKV's fail-rs.

`APPROVAL_BRIDGE_FAILPOINTS="create.returned=3,writeback.acknowledged=p0.1"` arms them in
`approval-bridge run`: the process kills itself (SIGKILL, no clean-up) the 3rd time it reaches
`create.returned`, or each time it reaches `writeback.acknowledged` with probability 0.1.
Unarmed (always, in production), `reach` is one falsy check.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass

ENV = "APPROVAL_BRIDGE_FAILPOINTS"

POINTS: dict[str, str] = {
    "create.returned": "DingTalk created the instance; the bridge has not recorded it",
    "writeback.acknowledged": "the ERP acknowledged a write-back; the bridge has not recorded it",
    "intake.before_commit": "a group of ERP events is written but not committed",
    "stream.before_ack": "a DingTalk event is committed but not acknowledged",
}
"""Every crash point and the window it opens; `parse` refuses any other name."""


@dataclass
class _Trigger:
    countdown: int | None
    probability: float

    def fires(self, rng: random.Random) -> bool:
        if self.countdown is not None:
            self.countdown -= 1
            return self.countdown == 0
        return rng.random() < self.probability


_armed: dict[str, _Trigger] = {}
_lock = threading.Lock()
_rng = random.Random()  # noqa: S311 - picks a crash moment, not a secret


def parse(spec: str) -> dict[str, _Trigger]:
    """`name=N` (the Nth time) or `name=pP` (probability P), comma-separated; ValueError if bad."""
    triggers: dict[str, _Trigger] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, when = item.partition("=")
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(POINTS)}")
        if when.startswith("p"):
            probability = float(when[1:])
            if not 0 < probability <= 1:
                raise ValueError(f"failpoint {name}: probability must be in (0, 1]")
            triggers[name] = _Trigger(None, probability)
        else:
            count = int(when)
            if count < 1:
                raise ValueError(f"failpoint {name}: the count must be at least 1")
            triggers[name] = _Trigger(count, 0.0)
    return triggers


def arm_from_env(environ: Mapping[str, str]) -> list[str]:
    """Arm what `APPROVAL_BRIDGE_FAILPOINTS` names; the names armed."""
    triggers = parse(environ.get(ENV, ""))
    with _lock:
        _armed.clear()
        _armed.update(triggers)
    return sorted(triggers)


def reach(name: str) -> None:
    """A crash point: kill the process here if the point is armed and its trigger fires."""
    if not _armed:
        return
    with _lock:
        trigger = _armed.get(name)
        fire = trigger is not None and trigger.fires(_rng)
    if fire:
        os.kill(os.getpid(), signal.SIGKILL)

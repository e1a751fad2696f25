"""Typed errors that cross the core's boundary; each edge maps its failures onto these."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of the bridge's own errors."""


class Retryable(BridgeError):
    """A transient failure: try again later (5xx, timeout, refused connection)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Throttled(Retryable):
    """The peer asked us to slow down; not a failure, only a wait."""


class Permanent(BridgeError):
    """A failure that retrying cannot fix (a 4xx, an unmapped user); parked for an admin."""


class Conflict(Permanent):
    """The ERP says the document changed (409): the decision is stale."""


class Overloaded(BridgeError):
    """Intake is full; the caller should come back after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"overloaded; retry after {retry_after} s")
        self.retry_after = retry_after


class StorageUnavailable(BridgeError):
    """The database refused the write (locked, disk full, unreachable); nothing was stored."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConcurrentChange(BridgeError):
    """A row changed under us (compare-and-set lost); the unit of work is retried."""


class NotFound(BridgeError):
    """No approval matches what was asked for."""

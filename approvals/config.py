"""Configuration owned by the core: database, approval processes, prices, jobs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class CoreModel(BaseModel):
    """Base for configuration sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(CoreModel):
    """`[database]`."""

    url: str = "sqlite+aiosqlite:///./bridge.db"
    pool_size: Annotated[int, Field(ge=1, le=200)] = 10
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """FULL survives power loss; NORMAL (faster) survives process crashes only."""
    lock_timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    """How long a statement waits for a lock another connection holds before it fails (SQLite's
    busy timeout, PostgreSQL's lock_timeout): the webhook then answers 503, jobs retry."""


class ProcessConfig(CoreModel):
    """`[approvals.purchase_order]` or `[approvals.replenishment]`: one approval template."""

    process_code: str = ""
    dept_id: int = -1
    """The originator's department for the instance; -1 is the root department."""
    lines_as: Literal["table", "text"] = "table"
    """Order lines as the template's table (detail) field, or as one multi-line text field."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Our form field -> the label of the template's component; see the README for defaults."""


class PriceConfig(CoreModel):
    """`[prices]`: the price context shown to approvers."""

    lookback_days: Annotated[int, Field(ge=1, le=3650)] = 365
    warn_above_average_pct: Annotated[float, Field(ge=0, le=1000)] = 10.0
    learn_from_approved: bool = True


class JobConfig(CoreModel):
    """`[jobs]`: how outbound work is retried."""

    workers: Annotated[int, Field(ge=1, le=256)] = 16
    backoff_initial_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    backoff_max_s: Annotated[float, Field(gt=0, le=86400)] = 300.0
    lease_s: Annotated[float, Field(ge=5, le=3600)] = 60.0
    poll_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    write_back_deadline_h: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0
    dingtalk_deadline_h: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0


class IntakeConfig(CoreModel):
    """`[intake]`: group commit and back-pressure for ERP events."""

    max_batch: Annotated[int, Field(ge=1, le=5000)] = 500
    max_queue: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    retry_after_s: Annotated[int, Field(ge=1, le=3600)] = 2


class ApprovalsConfig(CoreModel):
    """`[approvals]`: one section per document type."""

    purchase_order: ProcessConfig = ProcessConfig()
    replenishment: ProcessConfig = ProcessConfig()

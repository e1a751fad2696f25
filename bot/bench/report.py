"""Benchmark figures, their targets, and how they are printed (a table, or JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Figure:
    """One measured number, with its target when the issue sets one."""

    name: str
    value: float | None
    unit: str = ""
    target: str = ""
    """Human form of the bound, e.g. `>= 5000`; empty when the figure is for information."""
    met: bool | None = None
    """Whether the target is met; None when there is no target."""

    def shown(self) -> str:
        """The value as printed in the table."""
        if self.value is None:
            return "-"
        if abs(self.value) >= 100 or float(self.value).is_integer():
            text = f"{self.value:,.0f}"
        elif abs(self.value) >= 1:
            text = f"{self.value:,.2f}"
        else:
            text = f"{self.value:.3f}"
        return f"{text} {self.unit}".rstrip()


def info(name: str, value: float | None, unit: str = "") -> Figure:
    """A figure without a target."""
    return Figure(name, value, unit)


def at_least(name: str, value: float | None, bound: float, unit: str = "") -> Figure:
    """A figure that must reach `bound`."""
    met = None if value is None else value >= bound
    return Figure(name, value, unit, f">= {bound:g}", met)


def at_most(name: str, value: float | None, bound: float, unit: str = "") -> Figure:
    """A figure that must stay at or under `bound`."""
    met = None if value is None else value <= bound
    return Figure(name, value, unit, f"<= {bound:g}", met)


def exactly(name: str, value: float | None, expected: float, unit: str = "") -> Figure:
    """A figure that must equal `expected`."""
    met = None if value is None else value == expected
    return Figure(name, value, unit, f"= {expected:g}", met)


@dataclass
class ScenarioResult:
    """What one scenario measured, and what limited it."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def targets_met(self) -> bool:
        """True when it ran and no target was missed."""
        return self.error is None and all(f.met is not False for f in self.figures)


def percentile(samples: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank; None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def print_table(results: list[ScenarioResult], machine: dict[str, Any], out: TextIO) -> None:
    """The human report: one row per figure, grouped by scenario, then the notes."""
    console = Console(file=out, highlight=False, soft_wrap=True)
    table = Table(title="approval-bridge bench", title_justify="left")
    for column in ("scenario", "figure", "value", "target", ""):
        table.add_column(column, justify="right" if column in {"value", "target"} else "left")
    for result in results:
        if result.error is not None:
            table.add_row(result.name, "error", "-", "", f"[red]{result.error}[/red]")
            continue
        for i, figure in enumerate(result.figures):
            verdict = {True: "[green]met[/green]", False: "[red]missed[/red]", None: ""}[figure.met]
            table.add_row(
                result.name if i == 0 else "", figure.name, figure.shown(), figure.target, verdict
            )
        table.add_section()
    console.print(table)
    console.print(
        f"machine: {machine['cpus']} CPUs ({machine['cpu_model']}), service pinned to "
        f"{machine['service_cpus']}, load and stand-ins on {machine['helper_cpus']}; "
        f"Python {machine['python']}; database {machine['database']}"
    )
    for result in results:
        for note in result.notes:
            console.print(f"[dim]{result.name}:[/dim] {note}")


def write_json(
    results: list[ScenarioResult], machine: dict[str, Any], quick: bool, out: TextIO
) -> None:
    """The machine-readable report."""
    body = {
        "quick": quick,
        "machine": machine,
        "scenarios": [asdict(r) | {"targets_met": r.targets_met} for r in results],
    }
    json.dump(body, out, ensure_ascii=False, indent=2)
    out.write("\n")

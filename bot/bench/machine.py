"""Where the bench runs: the service on one core, the rest elsewhere; readings from /proc."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Placement:
    """The service's core and the cores left for the load generator and the stand-ins."""

    service: frozenset[int]
    helpers: frozenset[int]

    @classmethod
    def detect(cls) -> Placement:
        """The first allowed core for the service, the others for everything else."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) == 1:
            return cls(frozenset(cpus), frozenset(cpus))
        return cls(frozenset(cpus[:1]), frozenset(cpus[1:]))

    def pin_service(self, pid: int) -> None:
        """Pin a freshly started service process (its threads start later and inherit it)."""
        os.sched_setaffinity(pid, self.service)

    def pin_self(self) -> None:
        """Keep this process (the sandbox, the ERP, the bench) off the service's core."""
        os.sched_setaffinity(0, self.helpers)


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(placement: Placement, database: str) -> dict[str, object]:
    """The machine, for the report."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "service_cpus": sorted(placement.service),
        "helper_cpus": sorted(placement.helpers),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "database": database,
        "executable": sys.executable,
    }


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")

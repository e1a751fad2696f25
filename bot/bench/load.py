"""The load generator: signed webhooks over keep-alive HTTP/1.1, in a process of its own.

It is a lean client on asyncio streams (one request in flight per connection), so that on one
core it can outrun the service it measures; aiohttp's client costs several times more per call.
Run as `python -m bot.bench.load SPEC_JSON`; it prints a JSON report on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.bench.events import BodyFactory, signature


@dataclass(frozen=True)
class LoadSpec:
    """What to send: a fixed time (`duration_s`) or a fixed count (`count`)."""

    host: str
    port: int
    secret: str
    kind: str = "order"
    prefix: str = "BENCH"
    concurrency: int = 64
    duration_s: float | None = None
    warmup_s: float = 0.0
    count: int | None = None
    lines: int = 3
    materials: int = 1
    retry_overloaded: bool = False
    """Resend an event answered 503 after its Retry-After (the ERP's own behaviour)."""
    path: str = "/erp/events"


@dataclass
class LoadReport:
    """What came back; latencies in milliseconds, of the measured window only."""

    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    measured: int = 0
    accepted_measured: int = 0
    window_s: float = 0.0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def accepted_per_s(self) -> float:
        """Events answered 202 per second in the measured window."""
        return self.accepted_measured / self.window_s if self.window_s else 0.0


class _Connection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, spec: LoadSpec) -> None:
        self._spec = spec
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._head = (
            f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self._secret = spec.secret.encode()

    async def post(self, body: bytes) -> tuple[int, dict[bytes, bytes]]:
        """Send one signed event; the status and the lower-cased response headers."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self._spec.host, self._spec.port
            )
        assert self._reader is not None
        stamp = int(time.time())
        self._writer.write(
            self._head
            + b"Content-Length: %d\r\nX-Bridge-Timestamp: %d\r\nX-Bridge-Signature: %s\r\n\r\n"
            % (len(body), stamp, signature(self._secret, stamp, body))
            + body
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name:
                headers[name.strip().lower()] = value.strip()
        await self._reader.readexactly(int(headers.get(b"content-length", b"0")))
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, headers

    def close(self) -> None:
        """Drop the connection (the next post opens a new one)."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def generate(spec: LoadSpec) -> LoadReport:
    """Send the load and measure every answer."""
    factory = BodyFactory(spec.kind, spec.prefix, spec.lines, spec.materials)
    report = LoadReport()
    start = time.perf_counter()
    measure_from = start + spec.warmup_s
    end = None if spec.duration_s is None else measure_from + spec.duration_s
    counter = iter(range(sys.maxsize if spec.count is None else spec.count))

    async def worker() -> None:
        conn = _Connection(spec)
        try:
            for n in counter:
                now = time.perf_counter()
                if end is not None and now >= end:
                    return
                await _send(conn, factory.body(n), report, measure_from, end, spec)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    finished = time.perf_counter()
    report.elapsed_s = finished - start
    report.window_s = (end if end is not None else finished) - measure_from
    return report


async def _send(
    conn: _Connection,
    body: bytes,
    report: LoadReport,
    measure_from: float,
    end: float | None,
    spec: LoadSpec,
) -> None:
    while True:
        began = time.perf_counter()
        try:
            status, headers = await conn.post(body)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            conn.close()
            if len(report.errors) < 20:
                report.errors.append(f"{type(exc).__name__}: {exc}")
            report.statuses["error"] = report.statuses.get("error", 0) + 1
            await asyncio.sleep(0.05)
            if spec.retry_overloaded:
                continue
            return
        done = time.perf_counter()
        report.sent += 1
        key = str(status)
        report.statuses[key] = report.statuses.get(key, 0) + 1
        if began >= measure_from and (end is None or done <= end):
            report.measured += 1
            report.latencies_ms.append((done - began) * 1000)
            if status == 202:
                report.accepted_measured += 1
        if status == 503 and spec.retry_overloaded:
            await asyncio.sleep(float(headers.get(b"retry-after", b"1")))
            continue
        return


def main(argv: list[str] | None = None) -> int:
    """`python -m bot.bench.load SPEC_JSON`: run, then print the report as JSON."""
    args = sys.argv[1:] if argv is None else argv
    spec = LoadSpec(**json.loads(args[0]))
    report = asyncio.run(generate(spec))
    sys.stdout.write(json.dumps(asdict(report)))
    return 0


async def run_load(spec: LoadSpec, cpus: frozenset[int]) -> LoadReport:
    """Run the generator in a process of its own, pinned to `cpus`, and read its report."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.bench.load",
        json.dumps(asdict(spec)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    os.sched_setaffinity(process.pid, cpus)
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode(errors='replace')[-2000:]}")
    data: dict[str, Any] = json.loads(out)
    return LoadReport(**data)


if __name__ == "__main__":
    raise SystemExit(main())

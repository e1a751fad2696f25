"""A terminal progress line for long imports: bytes done of total, percent, rate, time left."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(count: float) -> str:
    """A byte count in binary units, e.g. `12.5 MiB`."""
    for unit in _UNITS[:-1]:
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} {_UNITS[-1]}"


def format_duration(seconds: float) -> str:
    """Seconds as `m:ss` or `h:mm:ss`."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_progress(
    done: int, total: int, elapsed: float, rows: int | None = None, width: int = 24
) -> str:
    """One progress line: bar, percent, bytes done/total, [rows,] rate and time left."""
    fraction = min(1.0, done / total) if total > 0 else 1.0
    filled = int(fraction * width)
    bar = "#" * filled + "." * (width - filled)
    parts = [f"[{bar}] {fraction * 100:3.0f}%", f"{format_bytes(done)}/{format_bytes(total)}"]
    if rows is not None:
        parts.append(f"{rows:,} rows")
    if elapsed > 0 and done > 0:
        rate = done / elapsed
        parts.append(f"{format_bytes(rate)}/s")
        if done < total:
            parts.append(f"ETA {format_duration((total - done) / rate)}")
    return "  ".join(parts)


class ProgressBar:
    """A `progress(done, total)` callback that redraws one terminal line a few times a second."""

    def __init__(
        self,
        stream: TextIO,
        *,
        interactive: bool | None = None,
        min_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        # A redirected stream (log file, cron mail) gets whole lines, rarely, not \r redraws.
        self._interactive = stream.isatty() if interactive is None else interactive
        default_interval = 0.2 if self._interactive else 10.0
        self._min_interval = default_interval if min_interval is None else min_interval
        self._clock = clock
        self._started = clock()
        self._last_draw: float | None = None
        self._last_state: tuple[int, int] | None = None
        self._last_width = 0
        self.draws = 0
        """How many times the line was written (the throttle's visible effect)."""

    def __call__(self, done: int, total: int) -> None:
        """Record progress; redraw when enough time has passed or the work is complete."""
        now = self._clock()
        if (done, total) == self._last_state:
            return
        finished = total > 0 and done >= total
        if (
            not finished
            and self._last_draw is not None
            and now - self._last_draw < self._min_interval
        ):
            return
        self._last_draw, self._last_state = now, (done, total)
        line = format_progress(done, total, now - self._started)
        if self._interactive:
            # Pad over the tail of a longer previous line.
            self._stream.write("\r" + line.ljust(self._last_width))
            self._last_width = len(line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
        self.draws += 1

    def close(self) -> None:
        """End the redrawn line so later output starts on a fresh one."""
        if self._interactive and self.draws:
            self._stream.write("\n")
            self._stream.flush()

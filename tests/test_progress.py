"""The terminal progress line: formatting and throttled redraws."""

from __future__ import annotations

import io

from approvals.progress import ProgressBar, format_progress


def test_format_progress() -> None:
    assert format_progress(512 * 1024, 1024 * 1024, 2.0) == (
        "[############............]  50%  512.0 KiB/1.0 MiB  256.0 KiB/s  ETA 0:02"
    )
    assert format_progress(3 * 1024**3, 3 * 1024**3, 100.0, rows=12_345_678) == (
        "[########################] 100%  3.0 GiB/3.0 GiB  12,345,678 rows  30.7 MiB/s"
    )
    assert format_progress(0, 0, 0.0) == "[########################] 100%  0 B/0 B"
    assert format_progress(1, 7200, 1.0, width=4).endswith("ETA 1:59:59")


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_bar_redraws_a_few_times_a_second() -> None:
    out, clock = io.StringIO(), Clock()
    bar = ProgressBar(out, interactive=True, clock=clock)
    bar(0, 1000)
    for step in range(1, 10):  # 9 updates within 0.09 s: throttled away
        clock.now += 0.01
        bar(step, 1000)
    assert bar.draws == 1
    clock.now += 0.2
    bar(500, 1000)
    clock.now += 0.01
    bar(1000, 1000)  # the end is always drawn, once
    bar(1000, 1000)
    bar.close()
    assert bar.draws == 3
    frames = out.getvalue().split("\r")[1:]
    assert [frame.split("]")[1].split("%")[0].strip() for frame in frames] == ["0", "50", "100"]
    assert out.getvalue().endswith("\n")
    assert "\n" not in out.getvalue()[:-1]


def test_progress_bar_writes_lines_when_not_a_terminal() -> None:
    out, clock = io.StringIO(), Clock()
    bar = ProgressBar(out, clock=clock)  # a StringIO is no TTY
    bar(0, 100)
    clock.now += 5
    bar(50, 100)  # under the 10 s interval for logs
    clock.now += 10
    bar(60, 100)
    bar(100, 100)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "\r" not in out.getvalue()
    assert lines[-1].startswith("[########################] 100%  100 B/100 B")

"""Progress of long data work (scanning, cache filling, evaluation).

On a terminal: a rich progress bar with count, rate and ETA on stderr. Elsewhere (logs, CI,
pipes): nothing while it runs, then one summary line through ``echo``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any


def _silent(_: str) -> None:
    pass


class Progress:
    """Counts work done; ``advance(n)`` after each piece. Use through :func:`progress`."""

    def __init__(self, bar: Any, task: Any) -> None:
        self.count = 0
        self._bar, self._task = bar, task

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)


@contextmanager
def progress(
    what: str,
    total: int | None,
    *,
    unit: str = "images",
    echo: Callable[[str], None] | None = None,
    tty: bool | None = None,
):
    """A progress display for ``total`` items (None: unknown); yields a :class:`Progress`.

    The summary line (``what: N units in S s, R units/s``) goes to ``echo`` when not on a
    terminal; on a terminal the finished bar stays visible instead.
    """
    echo = echo or _silent
    tty = sys.stderr.isatty() if tty is None else tty
    bar = task = None
    if tty:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        task = bar.add_task(what, total=total, rate="")
        bar.start()
    started = time.perf_counter()
    state = Progress(bar, task)
    if bar is not None:
        # The rate column: rich's speed column prints bytes; this one says images/s.
        def _advance(n: int = 1, _orig=state.advance) -> None:
            _orig(n)
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.update(task, rate=f"{state.count / elapsed:,.0f} {unit}/s")

        state.advance = _advance  # type: ignore[method-assign]
    try:
        yield state
    finally:
        if bar is not None:
            bar.stop()
    elapsed = time.perf_counter() - started  # reached only when the work succeeded
    if not tty:
        rate = state.count / elapsed if elapsed > 0 else 0.0
        echo(f"{what}: {state.count:,} {unit} in {elapsed:.1f} s ({rate:,.0f} {unit}/s)")

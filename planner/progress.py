"""A progress bar for the runs that take a while (planning thousands of nodes).

It appears on stderr only when stderr is a terminal and the work has lasted DELAY seconds,
and never when stdout carries JSON or YAML: quick runs, pipes and scripts see nothing. The
planner is one pure call with no progress hooks, so the bar is indeterminate and names
the phase.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

DELAY = 1.0  # seconds of work before the bar shows; $NETPLAN_PROGRESS_DELAY overrides it


def _delay() -> float:
    try:
        return max(0.0, float(os.environ.get("NETPLAN_PROGRESS_DELAY", DELAY)))
    except ValueError:
        return DELAY


class _Bar:
    """The rich Progress, started late from a timer thread and stopped from the caller's."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TimeElapsedColumn(), console=console, transient=True)
        self._task = self._progress.add_task("", total=None)
        self._lock = threading.Lock()
        self._shown = False
        self._stopped = False

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)

    def show(self) -> None:
        with self._lock:
            if not self._stopped:
                self._progress.start()
                self._shown = True

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._shown:
                self._progress.stop()


@contextmanager
def working(console: Console, description: str, *, quiet: bool = False,
            delay: float | None = None) -> Iterator[Callable[[str], None]]:
    """Show an indeterminate bar labelled description if the block lasts `delay` seconds.

    quiet: never show it (machine-readable output). Yields a function that names the next
    phase on the bar.
    """
    if quiet or not console.is_terminal:
        yield lambda text: None
        return
    bar = _Bar(console)
    bar.describe(description)
    timer = threading.Timer(_delay() if delay is None else delay, bar.show)
    timer.daemon = True
    timer.start()
    try:
        yield bar.describe
    finally:
        timer.cancel()
        bar.stop()

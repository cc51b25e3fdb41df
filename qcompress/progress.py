"""Progress bars with ETA for the long phases (teacher preparation, training, evaluation)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Advance(Protocol):
    def __call__(self, steps: int = 1) -> None: ...


class ProgressReporter:
    """``with reporter.task("training", total=steps) as advance: advance()``.

    Bars show only on a terminal; elsewhere (CI, pipes) the run stays quiet."""

    def __init__(self, console: Console | None = None, enabled: bool | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Advance]:
        if not self.enabled:
            yield lambda steps=1: None
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            task_id = progress.add_task(description, total=total)
            yield lambda steps=1: progress.advance(task_id, steps)

"""Progress bars with ETA (rich): one bar for the stage (adapter i/I, cell k/K), one for the job inside it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter:
    """Draws bars and log lines on stderr; ``enabled=False`` (tests, ``--quiet``) silences both."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.console = Console(stderr=True, quiet=not enabled)
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("elapsed"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console,
            disable=not enabled, transient=False,
        )

    def __enter__(self) -> Reporter:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False)

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A bar that lives while the block runs; yields ``advance(n)``."""
        task = self._progress.add_task(description, total=total)
        try:
            yield lambda n=1: self._progress.advance(task, n)
        finally:
            self._progress.remove_task(task)

    @contextmanager
    def stage(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A stage bar kept on screen when done (e.g. 'train adapters 6/6')."""
        yield self.counter(description, total)

    def counter(self, description: str, total: int) -> Callable[[int], None]:
        """A stage bar kept on screen; returns ``advance(n)``."""
        task = self._progress.add_task(f"[bold]{description}", total=total)
        return lambda n=1: self._progress.advance(task, n)


@contextmanager
def reporting(progress) -> Iterator[Reporter]:
    """``progress`` as a live Reporter: a Reporter passed in is used as is (its owner starts and stops
    it); True or False make a new one, shown while the block runs."""
    if isinstance(progress, Reporter):
        yield progress
        return
    with Reporter(enabled=bool(progress)) as reporter:
        yield reporter

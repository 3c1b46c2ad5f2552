"""The interface every executor implements: run jobs somewhere, yield their results here.

The contract that keeps one writer: an executor never writes the store or the run directory. It
yields each result as it arrives, and the driver commits it (installs the adapter, writes the cell)
before asking for the next one. A job whose ``needs`` name other jobs of the batch starts only after
those have been yielded and committed, so a job that reads an adapter finds it installed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from ..jobs import Job, Result
from ..progress import Reporter

STAGES = {"train": "train adapters", "dynamics": "pattern dynamics (retraining)", "eval": "evaluate cells",
          "pattern": "head activation patterns"}


class Executor(ABC):
    name: ClassVar[str]

    @classmethod
    def from_settings(cls, settings, resources) -> Executor:
        """The executor an experiment's ``executor:`` and ``resources:`` settings describe."""
        return cls()

    def check(self) -> None:  # noqa: B027  (the local executor has nothing to check)
        """Fail in one line if the jobs could never run here (called before anything is written)."""

    @abstractmethod
    def run(self, jobs: Sequence[Job], scratch_dir: Path, reporter: Reporter) -> Iterator[Result]:
        """Run ``jobs`` and yield each result as it finishes (see the module docstring for the contract).

        ``scratch_dir`` is where training may write finished adapter folders for the driver to rename
        into place (it is on the driver's storage).
        """


def in_dependency_order(jobs: Sequence[Job]) -> list[Job]:
    """The jobs with every job before those that need it (stable otherwise); needs outside ``jobs`` are met."""
    by_id = {job.id: job for job in jobs}
    ordered, placed = [], set()

    def place(job: Job, visiting: frozenset = frozenset()) -> None:
        if job.id in placed:
            return
        if job.id in visiting:
            raise ValueError(f"jobs need each other in a cycle: {job.id}")
        for need in job.needs:
            if need in by_id:
                place(by_id[need], visiting | {job.id})
        placed.add(job.id)
        ordered.append(job)

    for job in jobs:
        place(job)
    return ordered


class StageBars:
    """One progress bar per kind of job ('train adapters 3/6', 'evaluate cells 12/56'), made when first used."""

    def __init__(self, reporter: Reporter, jobs: Sequence[Job]):
        self.reporter = reporter
        self.totals: dict[str, int] = {}
        for job in jobs:
            self.totals[job.kind] = self.totals.get(job.kind, 0) + 1
        self._bars: dict = {}

    def advance(self, kind: str) -> None:
        if kind not in self._bars:
            self._bars[kind] = self.reporter.counter(STAGES.get(kind, kind), self.totals[kind])
        self._bars[kind](1)

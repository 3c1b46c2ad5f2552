"""The ``local`` executor: every job in this process, one after another, the base model loaded once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from ..jobs import Job, Result, Worker
from ..keys import BASE
from ..progress import Reporter
from .base import Executor, StageBars, in_dependency_order

# Training first (each adapter is then installed before anything reads it), evaluation with the base
# model first (it needs no adapter), then patterns.
_ORDER = {"train": 0, "dynamics": 1, "eval": 2, "pattern": 3}


def _models(job: Job) -> tuple[str, ...]:
    if job.kind == "eval":
        return tuple(cell.model for cell in job.cells)
    return (job.model,) if job.kind == "pattern" else ()


class LocalExecutor(Executor):
    name = "local"

    def run(self, jobs: Sequence[Job], scratch_dir: Path, reporter: Reporter) -> Iterator[Result]:
        # Grouped by model so that each adapter is switched on once (sorted() is stable).
        grouped = sorted(jobs, key=lambda job: (_ORDER[job.kind], _models(job) != (BASE,), _models(job)))
        worker = Worker(scratch_dir, bar=reporter.bar)
        stages = StageBars(reporter, jobs)
        try:
            for job in in_dependency_order(grouped):
                result = worker.run(job)
                stages.advance(job.kind)
                yield result
        finally:
            worker.close()

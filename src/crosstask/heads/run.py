"""Activation patterns for every model × target of a finished run, kept in the run's store.

Each pattern is a :class:`~crosstask.jobs.PatternJob` keyed by the model, the adapter, the exact
examples and the settings; the executor runs the jobs that are not stored yet (the local one loads the
base model once and switches adapters on it), and the driver commits each pattern to the store and
exports it as ``heads/<model>__<task>.npy`` and ``.csv``. A second call does no work and a changed
setting recomputes only what it affects.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Optional, Union

import pandas as pd

from ..analysis.base import RunData
from ..errors import CrosstaskError
from ..jobs import PatternJob
from ..keys import BASE, HEADS_VERSION, content_key
from ..progress import Reporter, reporting
from ..tasks.data import examples_digest
from ..workspace import Workspace
from .patterns import Mode, Normalize


def pattern_key(model_key: str, dtype: str, adapter_key: Optional[str], spec, examples, mode: str,
                normalize: Optional[str]) -> str:
    return content_key("heads", HEADS_VERSION, model_key, dtype, adapter_key or BASE,
                       examples_digest(spec, examples), mode, normalize)


def pattern_jobs(run: RunData, models: list[str], tasks: list[str], n_items: Optional[int], batch_size: int,
                 mode: Mode, normalize: Normalize) -> list[PatternJob]:
    """One job per model × task, on the first ``n_items`` eval items of each target (all by default)."""
    plan, jobs = run.plan, []
    for model in models:
        for task in tasks:
            eval_job, cell = plan.eval_cell(model, task)
            examples = eval_job.examples[:n_items]
            key = pattern_key(plan.model.key, plan.dtype, cell.adapter.key if cell.adapter else None, eval_job.spec,
                              examples, mode, normalize)
            jobs.append(PatternJob(model, task, key, eval_job.spec, examples, plan.base, cell.adapter, mode,
                                   normalize, batch_size))
    return jobs


SOURCE_PREFIX = "source:"  # the base model's pattern on a source's training items: never a target's name
HALVES = ("fit:", "held-out:")  # a target's probe items split in two, stored as tasks "fit:<target>", ...


def half_pattern_jobs(run: RunData, models: list[str], task: str, n_items: Optional[int], batch_size: int,
                      mode: Mode, normalize: Normalize) -> list[PatternJob]:
    """Each model's pattern on each half of ``task``'s first ``n_items`` eval items (stored as tasks
    ``fit:<task>`` and ``held-out:<task>``): one half to fit on, the other to score the fit out of sample."""
    plan, jobs = run.plan, []
    for model in models:
        eval_job, cell = plan.eval_cell(model, task)
        items = eval_job.examples[:n_items]
        half = len(items) // 2
        if half < 1:
            raise CrosstaskError(f"splitting {task!r}'s probe items in two needs at least 2 items, got {len(items)}")
        adapter_key = cell.adapter.key if cell.adapter else None
        for prefix, examples in zip(HALVES, (items[:half], items[half:2 * half])):
            key = pattern_key(plan.model.key, plan.dtype, adapter_key, eval_job.spec, examples, mode, normalize)
            jobs.append(PatternJob(model, prefix + task, key, eval_job.spec, examples, plan.base, cell.adapter, mode,
                                   normalize, batch_size))
    return jobs


def source_pattern_jobs(run: RunData, n_items: Optional[int], batch_size: int, mode: Mode,
                        normalize: Normalize) -> list[PatternJob]:
    """The base model's pattern on each source's first ``n_items`` training items (task ``source:<name>``):
    what the heads do on a source's data before any training, to compare with each target's."""
    plan, jobs = run.plan, []
    for source in run.sources:
        train = plan.train_job(source)
        examples = train.examples[:n_items]
        key = pattern_key(plan.model.key, plan.dtype, None, train.spec, examples, mode, normalize)
        jobs.append(PatternJob(BASE, SOURCE_PREFIX + source, key, train.spec, examples, plan.base, None, mode,
                               normalize, batch_size))
    return jobs


def compute_run_patterns(run_dir: Union[str, Path, RunData], models: Optional[Iterable[str]] = None,
                         tasks: Optional[Iterable[str]] = None, n_items: Optional[int] = None, batch_size: int = 8,
                         mode: Mode = "abs", normalize: Normalize = None,
                         progress: Union[bool, Reporter] = False, executor=None) -> pd.DataFrame:
    """Compute (or reuse) the activation pattern of each model (``base``, adapters) on each target.

    Returns one row per model × task: ``model, task, items, mode, normalize, npy, csv, computed``
    (``computed`` is False when a stored pattern with the same key was reused). ``progress`` is a
    bool or a :class:`crosstask.progress.Reporter`; ``executor`` an executor (default: the run's own).
    """
    from ..pipeline import make_executor

    run = RunData.of(run_dir)
    models = _choose(list(models) if models is not None else run.models, run.models, "model")
    tasks = _choose(list(tasks) if tasks is not None else run.targets, run.targets, "target")
    if n_items is not None and n_items < 1:
        raise CrosstaskError(f"n_items must be at least 1, got {n_items}")
    jobs = pattern_jobs(run, sorted(models, key=lambda name: name != BASE), tasks, n_items, batch_size, mode,
                        normalize)
    workspace = Workspace(run.root)
    for job in jobs:
        if job.adapter is not None and not workspace.adapter_ready(job.adapter.name, job.adapter.key):
            raise CrosstaskError(f"{run.root}: adapter {job.model!r} is missing or was trained with other "
                                 "settings; finish the run first (crosstask run)")
    todo = {job.id for job in workspace.pending(jobs)}
    with reporting(progress) as reporter:
        workspace.run_jobs(jobs, executor or make_executor(run.experiment), reporter)
    rows = []
    for job in jobs:
        npy, csv = workspace.export_pattern(job.model, job.task)
        rows.append({"model": job.model, "task": job.task, "items": len(job.examples), "mode": mode,
                     "normalize": normalize, "npy": npy, "csv": csv, "computed": job.id in todo})
    return pd.DataFrame(rows)


def _choose(wanted: list[str], known: list[str], what: str) -> list[str]:
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise CrosstaskError(f"no {what} named {unknown[0]!r} in this run; known: {', '.join(known)}")
    return list(dict.fromkeys(wanted))


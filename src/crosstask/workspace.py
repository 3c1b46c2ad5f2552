"""A run directory and its one writer: the store, the adapters, the files exported from them.

Experiments, ``crosstask heads`` and mixing studies all keep their results here. Jobs run anywhere
(:mod:`crosstask.executors`) and return results; :meth:`Workspace.commit`, called by the driver as
each result arrives, is the only code that writes: it renames a finished adapter folder into place
(or writes the shipped bytes), and commits cells and patterns to the store under their content keys.
Committing a result whose key is already stored changes nothing, so a retried job is harmless.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Optional

from .files import adapter_files_present, replace_folder
from .jobs import (
    AdapterRef,
    DynamicsJob,
    DynamicsResult,
    EvalJob,
    EvalResult,
    Job,
    PatternJob,
    PatternResult,
    Result,
    TrainJob,
    TrainResult,
)
from .progress import Reporter
from .store import Store

SCRATCH_PREFIX = ".scratch-"


def adapter_folder(root: Path, name: str) -> Path:
    """Where a run directory keeps adapter ``name`` (a standard PEFT folder)."""
    return Path(root) / "adapters" / name.replace("/", "_")


class Workspace:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.adapters_dir = self.root / "adapters"
        self.adapters_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.root / "results.sqlite")

    def clear_scratch(self) -> None:
        """Remove unfinished adapter folders left by a run killed mid-training (call before running jobs)."""
        for leftover in self.adapters_dir.glob(f"{SCRATCH_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)

    # --- adapters ----------------------------------------------------------------------------------
    def adapter_path(self, name: str) -> Path:
        return adapter_folder(self.root, name)

    def adapter_ready(self, name: str, key: str) -> bool:
        """Whether adapter ``name`` is installed with weights of content key ``key``."""
        return self.store.adapter_key(name) == key and adapter_files_present(self.adapter_path(name))

    def adapter_ref(self, name: str, key: str) -> AdapterRef:
        return AdapterRef(name, key, str(self.adapter_path(name).resolve()))

    def install_adapter(self, result: TrainResult) -> None:
        if result.folder is not None:
            finished = Path(result.folder)
        else:
            finished = Path(tempfile.mkdtemp(dir=self.adapters_dir, prefix=f"{SCRATCH_PREFIX}{result.adapter}-"))
            for name, data in result.files.items():
                (finished / name).write_bytes(data)
        (finished / "crosstask.json").write_text(json.dumps(
            {"adapter": result.adapter, "task": result.task, "key": result.key}, indent=2))
        final = self.adapter_path(result.adapter)
        replace_folder(finished, final)
        self.store.put_adapter(result.adapter, result.key, result.task, str(final.relative_to(self.root)),
                               result.metrics)

    # --- the driver --------------------------------------------------------------------------------
    def pending(self, jobs: Sequence[Job]) -> list[Job]:
        """The jobs whose results are not stored yet; an evaluation job keeps only its missing cells."""
        todo: list[Job] = []
        for job in jobs:
            if isinstance(job, TrainJob):
                if not self.adapter_ready(job.adapter, job.key):
                    todo.append(job)
            elif isinstance(job, EvalJob):
                missing = tuple(cell for cell in job.cells if self.store.cell_key(cell.model, job.target) != cell.key)
                if missing:
                    todo.append(replace(job, cells=missing))
            elif isinstance(job, PatternJob):
                if self.store.pattern_key(job.model, job.task) != job.key:
                    todo.append(job)
            elif isinstance(job, DynamicsJob):
                if self.store.dynamics_key(job.train.adapter, job.probe_task) != job.key:
                    todo.append(job)
        return todo

    def run_jobs(self, jobs: Sequence[Job], executor, reporter: Optional[Reporter] = None) -> int:
        """Run what is pending of ``jobs`` on ``executor``, committing each result as it arrives; returns
        how many jobs ran. Killing the driver loses at most the results that had not arrived yet."""
        todo = self.pending(jobs)
        if todo:
            for result in executor.run(todo, self.adapters_dir, reporter or Reporter(enabled=False)):
                self.commit(result)
        return len(todo)

    def commit(self, result: Result) -> None:
        if isinstance(result, TrainResult):
            if not self.adapter_ready(result.adapter, result.key):
                self.install_adapter(result)
            elif result.folder:
                shutil.rmtree(result.folder, ignore_errors=True)  # a retried job's second copy
        elif isinstance(result, EvalResult):
            for cell in result.cells:
                self.store.put_cell(cell.model, cell.target, cell.key, cell.task, cell.answer_type, cell.items,
                                    cell.seconds, cell.backend, cell.device)
        elif isinstance(result, PatternResult):
            if self.store.pattern_key(result.model, result.task) != result.key:
                self.store.put_pattern(result.model, result.task, result.key, result.pattern, result.items,
                                       result.mode, result.normalize, result.seconds)
            self.export_pattern(result.model, result.task)
        elif isinstance(result, DynamicsResult):
            if self.store.dynamics_key(result.source, result.task) != result.key:
                self.store.put_dynamics(result.source, result.task, result.key, result.curve, result.snapshots,
                                        result.seconds)
            self.export_dynamics(result.source, result.task, result.curve, result.snapshots)
        else:
            raise TypeError(f"not a job result: {type(result).__name__}")

    # --- files exported from the store -------------------------------------------------------------
    def export_pattern(self, model: str, task: str) -> tuple[Path, Path]:
        """``heads/<model>__<task>.npy`` and its long CSV (``layer,head,score``), from the store."""
        from .heads.patterns import save_pattern

        return save_pattern(self.store.pattern(model, task), self.root, model, task)

    def export_dynamics(self, source: str, task: str, curve, snapshots) -> None:
        """``heads/dynamics_<source>__<task>.csv`` and ``.npy``."""
        from .heads.dynamics import PatternDynamics

        PatternDynamics(curve, snapshots).save(self.root, source, task)

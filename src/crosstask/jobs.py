"""A run is a set of independent jobs with explicit inputs and outputs, executed by an executor.

* :class:`TrainJob` trains one adapter from a fresh base model and installs it under
  ``adapters/<name>/`` (written to a scratch folder first, then renamed into place).
* :class:`EvalJob` evaluates one model (the base, or base + one adapter) on one target and commits
  the cell with all its items in one transaction.

Jobs carry everything they need (model, examples, settings) and their content ``key``; the executor
only decides where and in which order they run. :class:`LocalExecutor` runs them in this process and
keeps the base model loaded across evaluation jobs, switching adapters on it. A cluster executor can
run the same jobs elsewhere without touching the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from .config import LoraSettings
from .evaluation import evaluate
from .models import ResolvedModel, load_model, load_tokenizer
from .progress import Reporter
from .store import Store
from .tasks.base import Example, TaskSpec
from .training import count_steps, train_adapter

BASE = "base"


@dataclass(frozen=True)
class TrainJob:
    adapter: str
    key: str
    task: str
    spec: TaskSpec
    examples: tuple[Example, ...]
    model: ResolvedModel
    dtype: str
    lora: LoraSettings
    seed: int

    @property
    def id(self) -> str:
        return f"train:{self.adapter}"


@dataclass(frozen=True)
class EvalJob:
    model_name: str  # 'base' or an adapter name
    target: str
    key: str
    task: str
    spec: TaskSpec
    examples: tuple[Example, ...]
    model: ResolvedModel
    dtype: str
    batch_size: int
    adapter_key: Optional[str] = None  # the adapter this cell needs (None for the base model)

    @property
    def id(self) -> str:
        return f"eval:{self.model_name}:{self.target}"

    @property
    def needs(self) -> tuple[str, ...]:
        return () if self.model_name == BASE else (f"train:{self.model_name}",)


Job = Union[TrainJob, EvalJob]


class Workspace:
    """The run directory: the store, the adapters, the exported tables and the report."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.adapters_dir = self.root / "adapters"
        self.adapters_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.root / "results.sqlite")
        for leftover in self.adapters_dir.glob(".scratch-*"):  # from a run killed mid-training
            shutil.rmtree(leftover, ignore_errors=True)

    def adapter_path(self, name: str) -> Path:
        return self.adapters_dir / name

    def adapter_ready(self, name: str, key: str) -> bool:
        return self.store.adapter_key(name) == key and (self.adapter_path(name) / "adapter_model.safetensors").is_file()

    def install_adapter(self, name: str, scratch: Path, key: str, task: str, metrics: dict) -> None:
        (scratch / "crosstask.json").write_text(json.dumps({"adapter": name, "task": task, "key": key}, indent=2))
        final = self.adapter_path(name)
        retired = self.adapters_dir / f".scratch-retired-{name}-{os.getpid()}"
        if final.exists():
            os.replace(final, retired)
        os.replace(scratch, final)
        self.store.put_adapter(name, key, task, str(final.relative_to(self.root)), metrics)
        shutil.rmtree(retired, ignore_errors=True)


def run_train_job(job: TrainJob, workspace: Workspace, reporter: Reporter) -> dict:
    tokenizer = load_tokenizer(job.model)
    model = load_model(job.model, getattr(torch, job.dtype))
    scratch = Path(tempfile.mkdtemp(dir=workspace.adapters_dir, prefix=f".scratch-{job.adapter}-"))
    steps = count_steps(len(job.examples), job.lora)
    with reporter.bar(f"  train {job.adapter} (steps)", steps) as advance:
        state = {"step": 0}

        def on_step(step: int) -> None:
            advance(step - state["step"])
            state["step"] = step

        metrics = train_adapter(model, tokenizer, job.spec, list(job.examples), job.lora, job.seed, scratch, on_step)
    workspace.install_adapter(job.adapter, scratch, job.key, job.task, metrics)
    return metrics


class EvalSession:
    """The base model, loaded once, with adapters switched on it (never reloaded with the base)."""

    def __init__(self, model: ResolvedModel, dtype: str):
        self.tokenizer = load_tokenizer(model)
        self.base = load_model(model, getattr(torch, dtype))
        self.peft_model = None
        self.loaded: dict[str, str] = {}  # adapter name -> key of the weights loaded under that name

    def model_for(self, job: EvalJob, workspace: Workspace):
        if job.model_name == BASE:
            return self.base if self.peft_model is None else _WithoutAdapters(self.peft_model)
        from peft import PeftModel

        name, path = _peft_name(job.model_name), str(workspace.adapter_path(job.model_name))
        if self.peft_model is None:
            self.peft_model = PeftModel.from_pretrained(self.base, path, adapter_name=name, is_trainable=False)
        elif self.loaded.get(name) != job.adapter_key:
            if name in self.loaded:
                self.peft_model.delete_adapter(name)
            self.peft_model.load_adapter(path, adapter_name=name, is_trainable=False)
        self.loaded[name] = job.adapter_key
        self.peft_model.set_adapter(name)
        self.peft_model.eval()
        return self.peft_model


def _peft_name(adapter: str) -> str:
    """PEFT adapter names become module names, which cannot contain '.' (e.g. ``x+mislabeled0.3``)."""
    return adapter.replace(".", "_") + "_" + hashlib.sha256(adapter.encode()).hexdigest()[:8]


class _WithoutAdapters:
    """The base model seen through a PeftModel: every call runs with the adapters disabled."""

    def __init__(self, peft_model):
        self.peft_model = peft_model

    def __call__(self, *args, **kwargs):
        with self.peft_model.disable_adapter():
            return self.peft_model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        with self.peft_model.disable_adapter():
            return self.peft_model.generate(*args, **kwargs)


def run_eval_job(job: EvalJob, session: EvalSession, workspace: Workspace, reporter: Reporter) -> None:
    model = session.model_for(job, workspace)
    started = time.perf_counter()
    with reporter.bar(f"  {job.model_name} on {job.target} (items)", len(job.examples)) as advance:
        results = evaluate(model, session.tokenizer, job.spec, list(job.examples), job.batch_size, advance)
    workspace.store.put_cell(job.model_name, job.target, job.key, job.task, job.spec.answer_type, results,
                             time.perf_counter() - started)


class LocalExecutor:
    """Runs jobs in this process: training jobs first, then evaluation grouped by model."""

    def run(self, jobs: list[Job], workspace: Workspace, reporter: Reporter) -> None:
        train_jobs = [job for job in jobs if isinstance(job, TrainJob)]
        eval_jobs = sorted((job for job in jobs if isinstance(job, EvalJob)), key=lambda job: job.model_name != BASE)
        with reporter.stage("train adapters", len(train_jobs)) as advance_stage:
            for job in train_jobs:
                run_train_job(job, workspace, reporter)
                advance_stage(1)
        if not eval_jobs:
            return
        session = EvalSession(eval_jobs[0].model, eval_jobs[0].dtype)
        with reporter.stage("evaluate cells", len(eval_jobs)) as advance_stage:
            for job in eval_jobs:
                run_eval_job(job, session, workspace, reporter)
                advance_stage(1)

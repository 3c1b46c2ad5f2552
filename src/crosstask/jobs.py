"""A run is a set of independent jobs with explicit inputs and outputs, run by an executor.

* :class:`TrainJob` trains one adapter (from the base model, or continuing another adapter) and
  returns its folder: a finished scratch folder on storage the driver sees, or the folder's bytes.
* :class:`EvalJob` evaluates one or more models (the base, adapters) on one target and returns the
  items of each cell.
* :class:`PatternJob` measures one model's head activation pattern on one task.
* :class:`DynamicsJob` retrains an adapter with a pattern snapshot every few steps.

Jobs carry everything they need (model, examples, settings, the adapters they read) and the content
keys of what they produce; they never write the store or the run directory. The driver
(:meth:`crosstask.workspace.Workspace.commit`) is the only writer: it installs adapters and commits
cells and patterns as results arrive. :class:`Worker` runs jobs in one process, keeping one base model
per backend loaded across jobs and switching adapters on it; executors decide where workers live.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from .config import LoraSettings
from .evaluation import ItemResult
from .keys import BASE, content_key
from .models import ResolvedModel
from .tasks.base import Example, TaskSpec

# Adapters a worker keeps on one base model between jobs: the plan orders per-cell jobs adapter by adapter,
# so each is loaded once; a few more spare reloads when jobs arrive interleaved (Ray, resumed runs).
MAX_RESIDENT_ADAPTERS = 4


@dataclass(frozen=True)
class ModelSpec:
    """The base model of a run and how to place it: a dtype name and a device setting (resolved where the job runs)."""

    model: ResolvedModel
    dtype: str  # "bfloat16" | "float32"
    device: str = "auto"


@dataclass(frozen=True)
class BackendSpec:
    """Which backend evaluates (:mod:`crosstask.backends`), its options and batch sizes."""

    name: str = "hf"
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    batch_size: int = 16
    generate_batch_size: Optional[int] = None  # answers decoded together (None: batch_size)


@dataclass(frozen=True)
class AdapterRef:
    """A trained adapter a job reads: its name in the run, the key of its weights, where its folder is.

    ``files`` carries the folder's contents when workers cannot see the driver's storage.
    """

    name: str
    key: str
    path: str
    files: Optional[dict[str, bytes]] = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class TrainJob:
    kind: ClassVar[str] = "train"
    adapter: str
    key: str
    task: str
    spec: TaskSpec
    examples: tuple[Example, ...]
    base: ModelSpec
    lora: LoraSettings
    seed: int
    start_from: Optional[AdapterRef] = None  # continue training this adapter instead of a fresh one

    @property
    def id(self) -> str:
        return f"train:{self.adapter}"

    @property
    def needs(self) -> tuple[str, ...]:
        return (f"train:{self.start_from.name}",) if self.start_from else ()


@dataclass(frozen=True)
class Cell:
    model: str  # BASE or an adapter name
    key: str
    adapter: Optional[AdapterRef] = None  # None for the base model


@dataclass(frozen=True)
class EvalJob:
    kind: ClassVar[str] = "eval"
    target: str
    task: str
    spec: TaskSpec
    examples: tuple[Example, ...]
    cells: tuple[Cell, ...]
    base: ModelSpec
    backend: BackendSpec = BackendSpec()

    @property
    def id(self) -> str:
        return f"eval:{self.target}:{','.join(cell.model for cell in self.cells)}"

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(f"train:{cell.adapter.name}" for cell in self.cells if cell.adapter)


@dataclass(frozen=True)
class PatternJob:
    kind: ClassVar[str] = "pattern"
    model: str  # BASE or an adapter name
    task: str
    key: str
    spec: TaskSpec
    examples: tuple[Example, ...]
    base: ModelSpec
    adapter: Optional[AdapterRef] = None
    mode: str = "abs"
    normalize: Optional[str] = None
    batch_size: int = 8

    @property
    def id(self) -> str:
        return f"pattern:{self.model}:{self.task}"

    @property
    def needs(self) -> tuple[str, ...]:
        return (f"train:{self.adapter.name}",) if self.adapter else ()


@dataclass(frozen=True)
class DynamicsJob:
    kind: ClassVar[str] = "dynamics"
    train: TrainJob  # how the adapter is retrained (the retrained adapter is not kept)
    probe_task: str
    probe_spec: TaskSpec
    probe_examples: tuple[Example, ...]
    key: str
    every: int = 5
    mode: str = "abs"
    normalize: Optional[str] = None
    batch_size: int = 8

    @property
    def id(self) -> str:
        return f"dynamics:{self.train.adapter}:{self.probe_task}"

    @property
    def needs(self) -> tuple[str, ...]:
        return ()


Job = Union[TrainJob, EvalJob, PatternJob, DynamicsJob]


@dataclass
class TrainResult:
    job_id: str
    adapter: str
    key: str
    task: str
    metrics: dict
    folder: Optional[str] = None  # a finished folder on storage the driver sees, to be renamed into place
    files: Optional[dict[str, bytes]] = None  # or the folder's contents


@dataclass
class CellResult:
    model: str
    target: str
    key: str
    task: str
    answer_type: str
    items: list[ItemResult]
    seconds: float
    backend: str
    device: str


@dataclass
class EvalResult:
    job_id: str
    cells: list[CellResult]


@dataclass
class PatternResult:
    job_id: str
    model: str
    task: str
    key: str
    pattern: Any  # numpy (layers, heads)
    items: int
    mode: str
    normalize: Optional[str]
    seconds: float


@dataclass
class DynamicsResult:
    job_id: str
    source: str
    task: str
    key: str
    curve: Any  # pandas DataFrame (crosstask.heads.dynamics.TABLE_COLUMNS)
    snapshots: Any  # numpy (snapshots, layers, heads)
    seconds: float


Result = Union[TrainResult, EvalResult, PatternResult, DynamicsResult]
Bar = Callable[[str, int], Any]  # (description, total) -> a context manager yielding advance(n)


def with_adapters(job: Job, change: Callable[[AdapterRef], AdapterRef]) -> Job:
    """The job with ``change`` applied to every adapter it reads (e.g. to attach the adapters' bytes)."""
    if isinstance(job, EvalJob):
        return replace(job, cells=tuple(replace(cell, adapter=change(cell.adapter)) if cell.adapter else cell
                                        for cell in job.cells))
    if isinstance(job, PatternJob) and job.adapter is not None:
        return replace(job, adapter=change(job.adapter))
    if isinstance(job, TrainJob) and job.start_from is not None:
        return replace(job, start_from=change(job.start_from))
    return job


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(Path(folder).iterdir()) if path.is_file()}


class Worker:
    """Runs jobs in one process and returns their results; writes nothing but scratch folders.

    It keeps one backend (a base model loaded once) per model and backend, and loads each adapter onto
    it once per key. Training loads a fresh base each time: LoRA wraps the model it trains.
    ``scratch_dir`` is where training writes adapter folders; with ``ship_files`` the result carries
    the folder's bytes instead (workers that do not share the driver's storage).
    """

    def __init__(self, scratch_dir: Optional[Path] = None, ship_files: bool = False, bar: Optional[Bar] = None):
        self.scratch_dir = Path(scratch_dir) if scratch_dir else None
        self.ship_files = ship_files
        self.bar = bar
        self._backends: dict[str, Any] = {}
        # (id of backend, adapter name) -> key of the loaded weights, least recently used first
        self._loaded: OrderedDict[tuple[int, str], str] = OrderedDict()
        self._materialized: dict[str, Path] = {}  # adapter key -> local folder of shipped files

    def run(self, job: Job) -> Result:
        return {"train": self._train, "eval": self._evaluate, "pattern": self._pattern,
                "dynamics": self._dynamics}[job.kind](job)

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        self._loaded.clear()
        for folder in self._materialized.values():
            shutil.rmtree(folder, ignore_errors=True)
        self._materialized.clear()

    # --- jobs --------------------------------------------------------------------------------------
    def _train(self, job: TrainJob) -> TrainResult:
        from .devices import resolve_device
        from .models import load_model, load_tokenizer
        from .training import count_steps, train_adapter

        device = resolve_device(job.base.device)
        tokenizer = load_tokenizer(job.base.model)
        model = load_model(job.base.model, job.base.dtype, device)
        if job.start_from is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self._adapter_folder(job.start_from)), is_trainable=True)
        scratch_root = self.scratch_dir if self.scratch_dir and not self.ship_files else None
        scratch = Path(tempfile.mkdtemp(dir=scratch_root, prefix=f".scratch-{job.adapter}-"))
        with self._bar(f"  train {job.adapter} (steps)", count_steps(len(job.examples), job.lora)) as advance:
            done = {"step": 0}

            def on_step(step: int) -> None:
                advance(step - done["step"])
                done["step"] = step

            metrics = train_adapter(model, tokenizer, job.spec, list(job.examples), job.lora, job.seed, scratch,
                                    on_step)
        metrics["device"] = str(device)
        result = TrainResult(job.id, job.adapter, job.key, job.task, metrics)
        if self.ship_files:
            result.files = folder_bytes(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            result.folder = str(scratch)
        return result

    def _evaluate(self, job: EvalJob) -> EvalResult:
        from .evaluation import evaluate

        backend = self._backend(job.base, job.backend)
        needed = frozenset(cell.adapter.name for cell in job.cells if cell.adapter is not None)
        for cell in job.cells:
            if cell.adapter is not None:
                self._ensure_adapter(backend, cell.adapter, needed)
        models = [None if cell.model == BASE else cell.model for cell in job.cells]
        started = time.perf_counter()
        label = job.cells[0].model if len(job.cells) == 1 else f"{len(job.cells)} models"
        with self._bar(f"  {label} on {job.target} (items)", len(job.examples) * len(job.cells)) as advance:
            results = evaluate(backend, job.spec, job.examples, models, advance)
        seconds = (time.perf_counter() - started) / len(job.cells)
        return EvalResult(job.id, [
            CellResult(cell.model, job.target, cell.key, job.task, job.spec.answer_type, items, seconds,
                       backend.version(), backend.device)
            for cell, items in zip(job.cells, results)])

    def _pattern(self, job: PatternJob) -> PatternResult:
        from .heads.patterns import activation_pattern

        backend = self._backend(job.base, BackendSpec("hf"))  # gates hook into a transformers model
        if job.adapter is not None:
            self._ensure_adapter(backend, job.adapter)
        started = time.perf_counter()
        with self._bar(f"  {job.model} on {job.task} (items)", len(job.examples)) as advance, \
                backend.activated(None if job.model == BASE else job.model) as module:
            pattern = activation_pattern(module, backend.tokenizer, job.spec, list(job.examples), job.batch_size,
                                         job.mode, job.normalize, advance)
        return PatternResult(job.id, job.model, job.task, job.key, pattern, len(job.examples), job.mode,
                             job.normalize, time.perf_counter() - started)

    def _dynamics(self, job: DynamicsJob) -> DynamicsResult:
        from .heads.dynamics import pattern_dynamics

        train = job.train
        started = time.perf_counter()
        with self._bar(f"  retrain {train.adapter} with snapshots on {job.probe_task} (snapshots)",
                       _snapshot_count(job)) as advance:
            outcome = pattern_dynamics(
                train.base.model, train.spec, list(train.examples), job.probe_spec, list(job.probe_examples),
                train.lora, job.every, train.seed, dtype=train.base.dtype, device=train.base.device,
                batch_size=job.batch_size, mode=job.mode, normalize=job.normalize,
                on_snapshot=lambda step: advance(1))
        return DynamicsResult(job.id, train.adapter, job.probe_task, job.key, outcome.table, outcome.snapshots,
                              time.perf_counter() - started)

    # --- models ------------------------------------------------------------------------------------
    def _backend(self, base: ModelSpec, spec: BackendSpec):
        from .backends import backend_class

        identity = content_key(base.model.key, base.dtype, base.device, spec.name, spec.options)
        if identity not in self._backends:
            cls = backend_class(spec.name)
            self._backends[identity] = cls(base.model, dtype=base.dtype, device=base.device,
                                           batch_size=spec.batch_size, **spec.options)
        backend = self._backends[identity]
        # Per-job settings; the loaded model is shared.
        backend.batch_size, backend.generate_batch_size = spec.batch_size, spec.generate_batch_size
        return backend

    def _ensure_adapter(self, backend, adapter: AdapterRef, needed: frozenset[str] = frozenset()) -> None:
        """Load ``adapter`` unless it is loaded already, then unload the least recently used adapters beyond
        MAX_RESIDENT_ADAPTERS that the current job (``needed``) does not use: memory stays flat however many
        sources a run has."""
        slot = (id(backend), adapter.name)
        if self._loaded.get(slot) != adapter.key:
            backend.load_adapter(adapter.name, str(self._adapter_folder(adapter)))
            self._loaded[slot] = adapter.key
        self._loaded.move_to_end(slot)
        resident = [other for other in self._loaded if other[0] == id(backend)]
        excess = len(resident) - MAX_RESIDENT_ADAPTERS
        for other in resident:
            if excess <= 0:
                break
            if other[1] not in needed and other != slot:
                backend.unload_adapter(other[1])
                del self._loaded[other]
                excess -= 1

    def _adapter_folder(self, adapter: AdapterRef) -> Path:
        if adapter.files is None:
            return Path(adapter.path)
        if adapter.key not in self._materialized:
            folder = Path(tempfile.mkdtemp(prefix=f"crosstask-adapter-{adapter.name}-"))
            for name, data in adapter.files.items():
                (folder / name).write_bytes(data)
            self._materialized[adapter.key] = folder
        return self._materialized[adapter.key]

    def _bar(self, description: str, total: int):
        from contextlib import nullcontext

        if self.bar is None:
            return nullcontext(lambda n=1: None)
        return self.bar(description, total)


def _snapshot_count(job: DynamicsJob) -> int:
    from .training import count_steps

    steps = count_steps(len(job.train.examples), job.train.lora)
    return 1 + steps // job.every + (steps % job.every != 0)

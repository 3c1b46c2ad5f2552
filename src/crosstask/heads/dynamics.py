"""How a task's activation pattern moves while an adapter trains (paper 2: sharp moves in the first steps).

:class:`PatternSnapshots` is a ``transformers.TrainerCallback`` that computes :func:`activation_pattern`
on a fixed probe set at step 0 (the LoRA update is still zero, so this is the base model), every
``every`` optimizer steps and at the last step. :func:`pattern_dynamics` trains one adapter with it and
returns the table ``step, examples_seen, probe_loss, mse_to_final, corr_to_final, mse_to_base,
corr_to_base`` and the ``(snapshots, layers, heads)`` array.

Cost: one snapshot is one forward and backward pass over the probe items (16 short items take a few
seconds for SmolLM2-135M on two CPU cores), so ``every`` and the probe size set the overhead.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd
import torch
from transformers import TrainerCallback

from ..config import LoraSettings
from ..devices import resolve_device
from ..files import write_atomically
from ..models import ResolvedModel, load_model, load_tokenizer, resolve_model
from ..tasks.base import Example, TaskSpec
from ..training import train_adapter
from .patterns import Mode, Normalize, activation_pattern, answer_batches, frozen, item_losses, model_device

TABLE_COLUMNS = ["step", "examples_seen", "probe_loss", "mse_to_final", "corr_to_final", "mse_to_base",
                 "corr_to_base"]


class PatternSnapshots(TrainerCallback):
    """Record the probe set's activation pattern at step 0, every ``every`` steps and at the final step.

    After training: ``steps`` (optimizer steps), ``patterns`` (one L×H array each), ``losses`` (mean
    answer loss on the probe) and ``seconds`` (time spent on each snapshot). ``on_snapshot(step)`` is
    called after each one (progress bars).
    """

    def __init__(self, tokenizer, spec: TaskSpec, examples: list[Example], every: int, batch_size: int = 8,
                 mode: Mode = "abs", normalize: Normalize = None,
                 on_snapshot: Optional[Callable[[int], None]] = None):
        if every < 1:
            raise ValueError(f"every must be at least 1 step, got {every}")
        if not examples:
            raise ValueError("the probe set is empty")
        self.tokenizer, self.spec, self.examples, self.every = tokenizer, spec, examples, every
        self.batch_size, self.mode, self.normalize, self.on_snapshot = batch_size, mode, normalize, on_snapshot
        self.steps: list[int] = []
        self.patterns: list[np.ndarray] = []
        self.losses: list[float] = []
        self.seconds: list[float] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._take(model, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if (step % self.every == 0 or step == state.max_steps) and step not in self.steps:
            self._take(model, step)

    def _take(self, model, step: int) -> None:
        started = time.perf_counter()
        self.patterns.append(activation_pattern(model, self.tokenizer, self.spec, self.examples, self.batch_size,
                                                self.mode, self.normalize))
        self.losses.append(probe_loss(model, self.tokenizer, self.spec, self.examples, self.batch_size))
        self.steps.append(step)
        self.seconds.append(time.perf_counter() - started)
        if self.on_snapshot:
            self.on_snapshot(step)


def probe_loss(model, tokenizer, spec: TaskSpec, examples: list[Example], batch_size: int = 8) -> float:
    """Mean per-item answer loss (the loss the patterns differentiate), without gradients."""
    with frozen(model), torch.no_grad():
        total = sum(float(item_losses(model, batch).sum())
                    for batch in answer_batches(tokenizer, spec, examples, batch_size, model_device(model)))
    return total / len(examples)


def examples_seen(step: int, n_examples: int, batch_size: int) -> int:
    """Training examples consumed after ``step`` optimizer steps (the last batch of an epoch may be short)."""
    per_epoch = math.ceil(n_examples / batch_size)
    epochs, rest = divmod(step, per_epoch)
    return epochs * n_examples + min(rest * batch_size, n_examples)


def dynamics_table(steps: list[int], snapshots: np.ndarray, seen: list[int], losses: list[float]) -> pd.DataFrame:
    """Distance of every snapshot to the last one (final) and to the first one (base): MSE and Pearson r."""
    flat = snapshots.reshape(len(snapshots), -1)
    final, base = flat[-1], flat[0]
    return pd.DataFrame({
        "step": steps, "examples_seen": seen, "probe_loss": losses,
        "mse_to_final": ((flat - final) ** 2).mean(axis=1), "corr_to_final": [_pearson(row, final) for row in flat],
        "mse_to_base": ((flat - base) ** 2).mean(axis=1), "corr_to_base": [_pearson(row, base) for row in flat],
    }, columns=TABLE_COLUMNS)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


@dataclass
class PatternDynamics:
    """The outcome of :func:`pattern_dynamics`: the table, the stacked patterns and the training metrics."""

    table: pd.DataFrame
    snapshots: np.ndarray  # (len(table), layers, heads), in the table's row order
    metrics: dict = field(default_factory=dict)
    seconds_in_snapshots: float = 0.0

    def save(self, folder: Union[str, Path], source: str, task: str) -> tuple[Path, Path]:
        """Write ``folder/heads/dynamics_<source>__<task>.csv`` and ``.npy`` (atomically)."""
        heads_dir = Path(folder) / "heads"
        heads_dir.mkdir(parents=True, exist_ok=True)
        stem = f"dynamics_{source}__{task}".replace("/", "_")
        csv_path, npy_path = heads_dir / f"{stem}.csv", heads_dir / f"{stem}.npy"
        write_atomically(csv_path, self.table.to_csv(index=False, float_format="%.6g"))
        write_atomically(npy_path, lambda stream: np.save(stream, self.snapshots))
        return csv_path, npy_path


def pattern_dynamics(model: Union[str, ResolvedModel], source_spec: TaskSpec, source_examples: list[Example],
                     probe_spec: TaskSpec, probe_examples: list[Example], lora: LoraSettings, every: int = 10,
                     seed: int = 0, dtype: str = "float32", device: str = "auto", batch_size: int = 8,
                     mode: Mode = "abs", normalize: Normalize = None, adapter_dir: Optional[Union[str, Path]] = None,
                     on_snapshot: Optional[Callable[[int], None]] = None) -> PatternDynamics:
    """Train a LoRA adapter on ``source_examples`` and track the probe set's pattern along the way.

    ``model`` is a model name as in an experiment (alias, folder or hub id) or a resolved one; it is
    loaded fresh in ``dtype`` ("float32" or "bfloat16") on ``device`` (a device setting). Snapshots come
    at step 0 (base), every ``every`` optimizer steps and at the final step, so ``corr_to_final`` is 1
    on the last row. The adapter is saved to
    ``adapter_dir`` (PEFT format) when given, else discarded.
    """
    resolved = resolve_model(model) if isinstance(model, str) else model
    tokenizer = load_tokenizer(resolved)
    base = load_model(resolved, dtype, resolve_device(device))
    snapshots = PatternSnapshots(tokenizer, probe_spec, probe_examples, every, batch_size, mode, normalize,
                                 on_snapshot)
    with tempfile.TemporaryDirectory(prefix="crosstask-dynamics-") as scratch:
        out = Path(adapter_dir) if adapter_dir is not None else Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        metrics = train_adapter(base, tokenizer, source_spec, source_examples, lora, seed, out,
                                callbacks=[snapshots])
    seen = [examples_seen(step, len(source_examples), lora.batch_size) for step in snapshots.steps]
    stacked = np.stack(snapshots.patterns)
    return PatternDynamics(dynamics_table(snapshots.steps, stacked, seen, snapshots.losses), stacked, metrics,
                           float(sum(snapshots.seconds)))

"""A task's activation pattern: the first-order effect of every attention head on the answer loss.

``A[l, h] = mean over items of g_lh · ∂L_item/∂g_lh`` at g = 1 (paper 2; Michel et al. 2019), where
g_lh is a multiplicative gate on the head's output (:mod:`.gates`) and ``L_item`` is the mean
cross-entropy over the item's answer tokens — the same tokens and the same loss that training uses
(the answer ``" " + target`` plus end of sequence, prompt masked). Zeroing a head changes the loss by
about ``-A_signed[l, h]``, which :func:`ablation_effects` measures directly, one pass per head.

One forward and one backward pass per batch score every head. The per-item gradients that
``mode="abs"`` needs come from the same pass: each batch row gets its own copy of the gates and the
batch loss is the *sum* of the per-item losses, so the gradient w.r.t. row b's gates is item b's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..files import write_atomically
from ..tasks.base import Example, TaskSpec
from ..training import answer_token_logits, pad_batch, tokenize_examples
from .gates import HeadGates

Mode = Literal["signed", "abs"]
Normalize = Optional[Literal["layer"]]
Progress = Callable[[int], None]  # called with the number of items just finished


def answer_batches(tokenizer, spec: TaskSpec, examples: list[Example], batch_size: int, device=None) -> list[dict]:
    """Right-padded batches on ``device`` with answer-only labels, items grouped by length to keep padding small."""
    rows = tokenize_examples(tokenizer, spec, examples, max_length=sys.maxsize).rows
    order = sorted(range(len(rows)), key=lambda index: len(rows[index]["input_ids"]))
    return [pad_batch([rows[index] for index in order[start : start + batch_size]], tokenizer.pad_token_id, device)
            for start in range(0, len(order), batch_size)]


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def item_losses(model, batch: dict) -> torch.Tensor:
    """Per-item mean cross-entropy over the answer tokens, shape ``(B,)``, in float32 (or float64)."""
    logits, targets, rows = answer_token_logits(model, batch)
    token_losses = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), targets,
                                   reduction="none")
    counts = torch.bincount(rows, minlength=len(batch["labels"]))
    if (counts == 0).any():
        raise ValueError("an item has no answer tokens to score")
    totals = torch.zeros(len(counts), dtype=token_losses.dtype, device=token_losses.device)
    return totals.index_add_(0, rows, token_losses) / counts


@contextmanager
def frozen(model) -> Iterator[None]:
    """Eval mode and no parameter gradients while the block runs; both restored exactly afterwards.

    Without weight gradients the backward pass only propagates to the gates, about half the work.
    """
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    modes = [(module, module.training) for module in model.modules()]
    for parameter in trainable:
        parameter.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
        for module, training in modes:
            module.training = training  # not module.train(): that would recurse over the children


def activation_pattern(model, tokenizer, spec: TaskSpec, examples: list[Example], batch_size: int = 8,
                       mode: Mode = "abs", normalize: Normalize = None,
                       progress: Optional[Progress] = None) -> np.ndarray:
    """The L×H activation pattern of ``model`` (plain or PEFT) on ``examples`` of task ``spec``.

    ``mode="abs"`` (default) averages ``|g·∂L_i/∂g|`` over items, Michel et al.'s head importance: a
    head that helps half the items and hurts the other half still counts as active, where the signed
    mean would cancel it to ~0, and patterns of different models stay comparable as magnitudes
    (Gini, CV and the before/after deltas assume non-negative "activity"). ``mode="signed"`` is
    paper 2's formula as written, the mean of the signed values; ``-A_signed`` is the first-order
    estimate of the loss change from removing the head.

    ``normalize="layer"`` divides each layer's row by its L2 norm (Michel et al.), which compares
    heads within a layer but hides differences between layers and between models; off by default
    so that patterns before and after fine-tuning keep a common scale.

    The model's weights get no gradients, and it is left as found (hooks removed, ``requires_grad``
    and train/eval modes restored). Gates are float32 whatever the model's dtype.
    """
    if mode not in ("signed", "abs"):
        raise ValueError(f"mode must be 'signed' or 'abs', got {mode!r}")
    if normalize not in (None, "layer"):
        raise ValueError(f"normalize must be None or 'layer', got {normalize!r}")
    if not examples:
        raise ValueError("activation_pattern needs at least one example")
    batches = answer_batches(tokenizer, spec, examples, batch_size, model_device(model))
    with frozen(model), HeadGates(model) as gates, torch.enable_grad():
        total = torch.zeros(gates.shape, dtype=torch.float64, device="cpu")  # float64 is not on every device
        for batch in batches:
            per_item_gates = gates.per_item(len(batch["labels"]))
            loss = item_losses(model, batch).sum()
            (gradient,) = torch.autograd.grad(loss, per_item_gates)
            contributions = (per_item_gates * gradient).detach().cpu().double()
            total += (contributions.abs() if mode == "abs" else contributions).sum(dim=0)
            if progress:
                progress(len(batch["labels"]))
    pattern = (total / len(examples)).numpy()
    if normalize == "layer":
        norms = np.linalg.norm(pattern, axis=1, keepdims=True)
        pattern = pattern / np.where(norms > 0, norms, 1.0)
    return pattern


@torch.inference_mode()
def ablation_effects(model, tokenizer, spec: TaskSpec, examples: list[Example], batch_size: int = 8,
                     heads: Optional[Iterable[tuple[int, int]]] = None,
                     progress: Optional[Progress] = None) -> np.ndarray:
    """Loss change from zeroing each head alone: mean item loss with the head off minus with all on.

    One full pass over ``examples`` per head (the slow, exact counterpart of ``-A_signed``). ``heads``
    restricts the measurement to some ``(layer, head)`` pairs; the others are NaN. ``progress`` is
    called with 1 after each head.
    """
    batches = answer_batches(tokenizer, spec, examples, batch_size, model_device(model))
    with frozen(model), HeadGates(model, requires_grad=False) as gates:
        effects = np.full(gates.shape, np.nan)
        measured = [(layer, head) for layer in range(gates.shape[0]) for head in range(gates.shape[1])]
        measured = measured if heads is None else list(heads)

        def mean_loss() -> float:
            return float(sum(item_losses(model, batch).sum() for batch in batches)) / len(examples)

        intact = mean_loss()
        for layer, head in measured:
            gates.ablate(layer, head)
            effects[layer, head] = mean_loss() - intact
            gates.reset()
            if progress:
                progress(1)
    return effects


def pattern_stem(model_name: str, task: str) -> str:
    return f"{model_name}__{task}".replace(os.sep, "_")


def save_pattern(pattern: np.ndarray, folder: str | Path, model_name: str, task: str) -> tuple[Path, Path]:
    """Write ``folder/heads/<model>__<task>.npy`` and a long CSV (``layer,head,score``), atomically."""
    heads_dir = Path(folder) / "heads"
    heads_dir.mkdir(parents=True, exist_ok=True)
    stem = pattern_stem(model_name, task)
    npy_path, csv_path = heads_dir / f"{stem}.npy", heads_dir / f"{stem}.csv"
    layers, heads = np.indices(pattern.shape)
    table = pd.DataFrame({"layer": layers.ravel(), "head": heads.ravel(), "score": pattern.ravel()})
    write_atomically(npy_path, lambda handle: np.save(handle, pattern))
    write_atomically(csv_path, table.to_csv(index=False))
    return npy_path, csv_path


def load_pattern(folder: str | Path, model_name: str, task: str) -> np.ndarray:
    """The pattern :func:`save_pattern` wrote for this model and task."""
    return np.load(Path(folder) / "heads" / f"{pattern_stem(model_name, task)}.npy")

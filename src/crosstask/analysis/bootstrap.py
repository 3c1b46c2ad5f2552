"""Paired bootstrap intervals for "adapter minus base" on every target task.

Pairing matters: items differ far more in difficulty than models do, so resampling the same items
for both models cancels that shared noise and gives much tighter, honest intervals than two
independent resamples would.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

COLUMNS = ["model", "target", "delta", "low", "high", "significant", "n_items"]


def paired_bootstrap(
    items: pd.DataFrame,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    base: str = "base",
) -> pd.DataFrame:
    """Percentile bootstrap of mean(model) - mean(base) per (model, target), over shared items.

    ``items`` has one row per (model, target, item) with ``correct`` a 0/1, bool or float score.
    The result carries ``attrs["confidence"]`` and ``attrs["n_resamples"]`` for captions.
    """
    _check(items, n_resamples, confidence, base)
    scores = items.pivot(index=["target", "item"], columns="model", values="correct").astype(float)
    tail = (1 - confidence) / 2
    rows = []
    for target in pd.unique(items["target"]):
        table = scores.loc[target]
        if base not in table or table[base].isna().all():
            raise ValueError(f"target {target!r} has no items scored for the base model {base!r}")
        table = table[table[base].notna()]
        # Resample per target with its own stream, so adding a target never changes another's interval.
        rng = np.random.default_rng([seed, zlib.crc32(str(target).encode())])
        models = [m for m in pd.unique(items.loc[items["target"] == target, "model"]) if m != base]
        # Models scored on the same items share one resample-count matrix (usually a single group).
        for shared, group in _group_by_items(table, models):
            n = int(shared.sum())
            if n == 0:
                raise ValueError(f"models {group} share no items with {base!r} on target {target!r}")
            diffs = table.loc[shared, group].to_numpy() - table.loc[shared, [base]].to_numpy()
            counts = rng.multinomial(n, np.full(n, 1 / n), size=n_resamples)
            resampled = counts @ diffs / n
            low, high = np.quantile(resampled, [tail, 1 - tail], axis=0)
            for model, delta, lo, hi in zip(group, diffs.mean(axis=0), low, high):
                rows.append((model, target, delta, lo, hi, bool(lo > 0 or hi < 0), n))
    result = pd.DataFrame(rows, columns=COLUMNS)
    result.attrs.update(confidence=confidence, n_resamples=n_resamples)
    return result


def _group_by_items(table: pd.DataFrame, models: list) -> list[tuple[np.ndarray, list]]:
    """(shared-item mask, models) pairs, one per distinct set of items the models were scored on."""
    groups: dict[bytes, tuple[np.ndarray, list]] = {}
    for model in models:
        shared = table[model].notna().to_numpy()
        groups.setdefault(shared.tobytes(), (shared, []))[1].append(model)
    return list(groups.values())


def _check(items: pd.DataFrame, n_resamples: int, confidence: float, base: str) -> None:
    missing = {"model", "target", "item", "correct"} - set(items.columns)
    if missing:
        raise ValueError(f"items is missing columns: {', '.join(sorted(missing))}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if items["correct"].isna().any():
        raise ValueError("items has missing 'correct' scores")
    if base not in set(items["model"]):
        raise ValueError(f"items has no rows for the base model {base!r}")
    duplicated = items.duplicated(["model", "target", "item"])
    if duplicated.any():
        model, target, item = items.loc[duplicated, ["model", "target", "item"]].iloc[0]
        raise ValueError(f"items scores ({model!r}, {target!r}, item {item!r}) more than once")

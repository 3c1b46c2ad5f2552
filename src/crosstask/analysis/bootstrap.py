"""Paired, two-level bootstrap intervals for "adapter minus base" on every target task.

Two sources of noise make a cell move: which evaluation items were drawn, and which training seed the
adapter got (retraining the demo's adapters moves cells by up to ~15 pp). Each resample therefore
draws the training seeds with replacement (a hierarchical bootstrap: seeds, then items), and draws
the items once for every model of a target. Pairing matters: items differ far more in difficulty than
models do, so resampling the same items for both models cancels that shared noise. With one seed per
adapter only the item level is left, and the intervals say nothing about retraining.

Significance marks are corrected for multiple comparisons: every cell gets a two-sided bootstrap
p-value (the null: adapter and base score the same on these items, across seeds), and the cells of
one call form the family that Benjamini–Hochberg controls the false discovery rate over.
"""

from __future__ import annotations

import zlib
from typing import Literal, Optional

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

COLUMNS = ["model", "target", "delta", "low", "high", "p_value", "p_adjusted", "significant", "n_items",
           "n_seeds", "seed_sd"]
CORRECTIONS = {"bh": "Benjamini–Hochberg", None: "none"}


def paired_bootstrap(
    items: pd.DataFrame,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    base: str = "base",
    correction: Optional[Literal["bh"]] = "bh",
) -> pd.DataFrame:
    """Bootstrap of mean(model) - mean(base) per (model, target), over shared items and training seeds.

    ``items`` has one row per (model, target, item[, replicate]) with ``correct`` a 0/1, bool or float
    score; the optional ``replicate`` column names the training seed of that model's adapter (every
    replicate of a model must be scored on the same items). ``delta`` is the mean over replicates;
    ``low``/``high`` the per-cell percentile interval; ``p_value`` the two-sided bootstrap p-value;
    ``p_adjusted`` it after ``correction`` across all rows (``"bh"``: Benjamini–Hochberg; None: none);
    ``significant`` is ``p_adjusted < 1 - confidence``; ``seed_sd`` the standard deviation of the
    per-seed deltas (NaN with one seed). The result's ``attrs`` say the confidence, resamples,
    correction and the largest number of seeds, for captions.
    """
    items = _checked(items, n_resamples, confidence, base, correction)
    tail = (1 - confidence) / 2
    rows = []
    for target in pd.unique(items["target"]):
        scores = _scores_by_replicate(items[items["target"] == target])
        if base not in scores:
            raise ValueError(f"target {target!r} has no items scored for the base model {base!r}")
        # Resample per target with its own stream, so adding a target never changes another's interval.
        rng = np.random.default_rng([seed, zlib.crc32(str(target).encode())])
        models = [m for m in scores if m != base]
        for shared, group in _group_by_items(scores, models, base):
            n = int(shared.sum())
            if n == 0:
                raise ValueError(f"models {group} share no items with {base!r} on target {target!r}")
            counts = rng.multinomial(n, np.full(n, 1 / n), size=n_resamples)
            base_resampled = _resampled_means(scores[base][:, shared], counts, rng)
            base_mean = scores[base][:, shared].mean()
            for model in group:
                table = scores[model][:, shared]
                resampled = _resampled_means(table, counts, rng) - base_resampled
                low, high = np.quantile(resampled, [tail, 1 - tail])
                per_seed = table.mean(axis=1) - base_mean
                rows.append((model, target, float(per_seed.mean()), low, high, bootstrap_p_value(resampled), n,
                             len(per_seed), float(per_seed.std(ddof=1)) if len(per_seed) > 1 else np.nan))
    result = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("p_adjusted", "significant")])
    adjusted = false_discovery_control(result["p_value"], method="bh") if correction and len(result) else \
        result["p_value"].to_numpy()
    result.insert(6, "p_adjusted", np.minimum(adjusted, 1.0))
    result.insert(7, "significant", result["p_adjusted"] < 1 - confidence)
    result.attrs.update(confidence=confidence, n_resamples=n_resamples, correction=CORRECTIONS[correction],
                        n_seeds=int(result["n_seeds"].max()) if len(result) else 0)
    return result


def _resampled_means(table: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per resample: the mean over seeds drawn with replacement of the mean over the resampled items.

    ``table`` is seeds x items; ``counts`` resamples x items (how often each item is drawn)."""
    n_seeds, n_items = table.shape
    per_seed = counts @ table.T / n_items  # resamples x seeds
    if n_seeds == 1:
        return per_seed[:, 0]
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=len(counts)) / n_seeds
    return (per_seed * seed_weights).sum(axis=1)


def bootstrap_p_value(resampled: np.ndarray) -> float:
    """Two-sided: twice the smaller share of resamples on either side of zero (with the +1 of a permutation
    p-value, so it is never 0), at most 1. A model identical to base gets 1."""
    resampled = np.round(resampled, 12)  # a resample of equal scores is 0, not ±1e-17 from the summation order
    below, above = (resampled <= 0).sum(), (resampled >= 0).sum()
    return float(min(1.0, 2 * (1 + min(below, above)) / (len(resampled) + 1)))


def _scores_by_replicate(items: pd.DataFrame) -> dict[str, np.ndarray]:
    """model -> replicates x items array of scores on this target (NaN where an item was not scored)."""
    table = items.pivot(index="item", columns=["model", "replicate"], values="correct").astype(float)
    return {model: table[model].to_numpy().T for model in pd.unique(items["model"])}


def _group_by_items(scores: dict[str, np.ndarray], models: list, base: str) -> list[tuple[np.ndarray, list]]:
    """(shared-item mask, models) pairs, one per distinct set of items the models were scored on with base."""
    scored_by_base = ~np.isnan(scores[base]).any(axis=0)
    groups: dict[bytes, tuple[np.ndarray, list]] = {}
    for model in models:
        scored = ~np.isnan(scores[model]).any(axis=0)
        if not (scored == ~np.isnan(scores[model]).all(axis=0)).all():
            raise ValueError(f"the replicates of {model!r} were scored on different items")
        shared = scored & scored_by_base
        groups.setdefault(shared.tobytes(), (shared, []))[1].append(model)
    return list(groups.values())


def _checked(items: pd.DataFrame, n_resamples: int, confidence: float, base: str, correction) -> pd.DataFrame:
    missing = {"model", "target", "item", "correct"} - set(items.columns)
    if missing:
        raise ValueError(f"items is missing columns: {', '.join(sorted(missing))}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be 'bh' or None, got {correction!r}")
    if items["correct"].isna().any():
        raise ValueError("items has missing 'correct' scores")
    if base not in set(items["model"]):
        raise ValueError(f"items has no rows for the base model {base!r}")
    if "replicate" not in items.columns:
        items = items.assign(replicate=0)
    duplicated = items.duplicated(["model", "target", "item", "replicate"])
    if duplicated.any():
        model, target, item = items.loc[duplicated, ["model", "target", "item"]].iloc[0]
        raise ValueError(f"items scores ({model!r}, {target!r}, item {item!r}) more than once for one replicate")
    return items

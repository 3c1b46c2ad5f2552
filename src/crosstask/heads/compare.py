"""How concentrated a pattern is, and how it moved: Gini, coefficient of variation, top heads, correlation.

Paper 2 reports that SFT makes patterns *less* concentrated (Llama3: Gini 0.50 → 0.33, CV 1.19 → 0.71)
and activates task-specific heads; :class:`PatternShift` measures both for one base/adapter pair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def gini(values) -> float:
    """Gini coefficient of the absolute values: 0 when all equal, (n-1)/n when one value holds everything."""
    magnitudes = np.sort(np.abs(np.asarray(values, dtype=float).ravel()))
    n, total = len(magnitudes), magnitudes.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * magnitudes).sum() / (n * total))


def coefficient_of_variation(values) -> float:
    """Standard deviation over mean of the absolute values (population std; 0 for all-zero input).

    Absolute values, like :func:`gini`, because a signed pattern's mean can be ~0 and the ratio
    would then measure nothing.
    """
    magnitudes = np.abs(np.asarray(values, dtype=float).ravel())
    mean = magnitudes.mean() if len(magnitudes) else 0.0
    return float(magnitudes.std() / mean) if mean > 0 else 0.0


def top_heads(delta, k: int = 10) -> pd.DataFrame:
    """The ``k`` heads whose score rose most (largest ``delta``), as rows ``layer, head, change``."""
    delta = np.asarray(delta, dtype=float)
    if delta.ndim != 2:
        raise ValueError(f"a pattern is a layers x heads matrix, got shape {delta.shape}")
    order = np.argsort(-delta, axis=None, kind="stable")[:k]
    layers, heads = np.unravel_index(order, delta.shape)
    return pd.DataFrame({"layer": layers, "head": heads, "change": delta[layers, heads]})


def pattern_correlation(patterns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Pearson correlation between every pair of patterns (flattened), as a named square table."""
    names = list(patterns)
    shapes = {np.shape(patterns[name]) for name in names}
    if len(shapes) > 1:
        raise ValueError(f"patterns have different shapes: {sorted(shapes)}")
    flat = np.array([np.asarray(patterns[name], dtype=float).ravel() for name in names])
    return pd.DataFrame(np.corrcoef(flat), index=names, columns=names)


class PatternShift:
    """Compare a base pattern with the pattern after fine-tuning (scikit-learn style).

    After :meth:`fit`: ``delta_`` (after − before), ``gini_before_``, ``gini_after_``, ``cv_before_``,
    ``cv_after_`` and ``top_gained_`` (the ``top_k`` heads with the largest increase).
    """

    def __init__(self, top_k: int = 10):
        self.top_k = top_k

    def fit(self, base_pattern, adapter_pattern) -> PatternShift:
        before, after = np.asarray(base_pattern, dtype=float), np.asarray(adapter_pattern, dtype=float)
        if before.shape != after.shape:
            raise ValueError(f"base pattern {before.shape} and adapter pattern {after.shape} differ in shape")
        self.delta_ = after - before
        self.gini_before_, self.gini_after_ = gini(before), gini(after)
        self.cv_before_, self.cv_after_ = coefficient_of_variation(before), coefficient_of_variation(after)
        self.top_gained_ = top_heads(self.delta_, self.top_k)
        return self

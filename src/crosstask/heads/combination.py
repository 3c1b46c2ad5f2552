"""A complex task's pattern change as a combination of basic tasks' changes (paper 2).

``ΔAP_complex ≈ Σ_i α_i ΔAP_i`` by least squares over all heads; paper 2 reports R² 0.97 for
math-with-code ≈ GSM8K + code. The weights, normalised to sum to one, are the proportions in which
to mix basic-task data before a scarce complex task's fine-tuning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import nnls


class HeadCombination:
    """Regress a complex task's pattern change on basic tasks' changes (scikit-learn style).

    ``non_negative=True`` solves with :func:`scipy.optimize.nnls` (a mixture cannot use a negative
    amount of data). After :meth:`fit`: ``weights_`` (``pd.Series`` by basic task), ``intercept_``
    (0 unless ``fit_intercept``), ``r2_`` (1 − SS_res / SS_tot around the mean, as
    ``sklearn.metrics.r2_score``) and ``residual_`` (the unexplained L×H change).

    With ``n_permutations`` > 0, R² is tested against a null of shuffled heads: each basic task's change
    is permuted over the heads independently (which keeps its distribution of values but breaks which
    head it belongs to) and the fit repeated; ``r2_null_`` holds those R², ``r2_p_value_`` the share at
    or above the observed one (with the +1 of a permutation p-value). Changes that all mirror the loss
    (every head less active after training) can give a large R² with any basic tasks; the null says how
    large.
    """

    def __init__(self, non_negative: bool = True, fit_intercept: bool = False, n_permutations: int = 0,
                 seed: int = 0):
        self.non_negative = non_negative
        self.fit_intercept = fit_intercept
        self.n_permutations = n_permutations
        self.seed = seed

    def fit(self, complex_delta, basic_deltas: dict[str, np.ndarray]) -> HeadCombination:
        target = np.asarray(complex_delta, dtype=float)
        if not basic_deltas:
            raise ValueError("HeadCombination needs at least one basic task")
        for name, delta in basic_deltas.items():
            if np.shape(delta) != target.shape:
                raise ValueError(f"basic task {name!r} has shape {np.shape(delta)}, the complex task {target.shape}")
        names = list(basic_deltas)
        design = np.column_stack([np.asarray(basic_deltas[name], dtype=float).ravel() for name in names])
        y = target.ravel()
        weights, intercept = self._solve(design, y)
        self.weights_ = pd.Series(weights, index=names, name="weight")
        self.intercept_ = intercept
        self.residual_ = (y - design @ weights - intercept).reshape(target.shape)
        self.r2_ = self._r2(y, design @ weights + intercept)
        self.r2_null_ = np.array([])
        self.r2_p_value_ = float("nan")
        if self.n_permutations > 0 and not np.isnan(self.r2_):
            rng = np.random.default_rng(self.seed)
            null = []
            for _ in range(self.n_permutations):
                shuffled = np.column_stack([rng.permutation(column) for column in design.T])
                weights, intercept = self._solve(shuffled, y)
                null.append(self._r2(y, shuffled @ weights + intercept))
            self.r2_null_ = np.array(null)
            self.r2_p_value_ = float((1 + (self.r2_null_ >= self.r2_ - 1e-12).sum()) / (1 + self.n_permutations))
        return self

    def _solve(self, design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        # With an intercept, centring both sides gives the same weights (the optimal intercept is
        # mean(y) - mean(X)·w for any w), so nnls never has to constrain the intercept's sign.
        x_mean = design.mean(axis=0) if self.fit_intercept else np.zeros(design.shape[1])
        y_mean = y.mean() if self.fit_intercept else 0.0
        centred_x, centred_y = design - x_mean, y - y_mean
        if self.non_negative:
            weights, _ = nnls(centred_x, centred_y)
        else:
            weights = np.linalg.lstsq(centred_x, centred_y, rcond=None)[0]
        return weights, float(y_mean - x_mean @ weights)

    @staticmethod
    def _r2(y: np.ndarray, fitted: np.ndarray) -> float:
        total = ((y - y.mean()) ** 2).sum()
        return float(1 - ((y - fitted) ** 2).sum() / total) if total > 0 else float("nan")

    def mixture_proportions(self) -> pd.Series:
        """The weights scaled to sum to one: how to mix the basic tasks' data."""
        weights = self.weights_
        if (weights < 0).any():
            raise ValueError("mixture proportions need non-negative weights; fit with non_negative=True")
        if weights.sum() <= 0:
            raise ValueError("all weights are zero: no basic task explains the complex task's change")
        return weights / weights.sum()

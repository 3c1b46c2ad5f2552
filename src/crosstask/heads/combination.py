"""A complex task's pattern change as a combination of basic tasks' changes (paper 2).

``ΔAP_complex ≈ Σ_i α_i ΔAP_i`` by least squares over all heads; paper 2 reports R² 0.97 for
math-with-code ≈ GSM8K + code. The weights, normalised to sum to one, are the proportions in which
to mix basic-task data before a scarce complex task's fine-tuning.

An R² measured on the probe items the weights were fitted on rewards fitting noise; crosstask fits α on
one half of the probe items and scores it on the other (:meth:`HeadCombination.held_out`), against
the same fit with every basic task's change shuffled over the heads.
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
        y, design = self._arrays(complex_delta, basic_deltas, list(basic_deltas))
        weights, intercept = self._solve(design, y)
        self.weights_ = pd.Series(weights, index=list(basic_deltas), name="weight")
        self.intercept_ = intercept
        self.residual_ = (y - design @ weights - intercept).reshape(np.shape(complex_delta))
        self.r2_ = self._r2(y, design @ weights + intercept)
        self._fitted_on = (y, design)
        self.r2_null_ = np.array([])
        self.r2_p_value_ = float("nan")
        if self.n_permutations > 0 and not np.isnan(self.r2_):
            null = []
            for permutation in self._head_permutations(design.shape):
                shuffled = np.take_along_axis(design, permutation, axis=0)
                weights, intercept = self._solve(shuffled, y)
                null.append(self._r2(y, shuffled @ weights + intercept))
            self.r2_null_ = np.array(null)
            self.r2_p_value_ = self._p_value(self.r2_, self.r2_null_)
        return self

    def predict(self, basic_deltas: dict[str, np.ndarray]) -> np.ndarray:
        """The complex change the fitted weights give for these basic changes (same shape as they have)."""
        shape = np.shape(next(iter(basic_deltas.values())))
        _, design = self._arrays(np.zeros(shape), basic_deltas, list(self.weights_.index))
        return (design @ self.weights_.to_numpy() + self.intercept_).reshape(shape)

    def score(self, complex_delta, basic_deltas: dict[str, np.ndarray]) -> float:
        """R² of the fitted weights on these changes (e.g. measured on other probe items); can be negative."""
        y = np.asarray(complex_delta, dtype=float).ravel()
        return self._r2(y, self.predict(basic_deltas).ravel())

    def held_out(self, complex_delta, basic_deltas: dict[str, np.ndarray]) -> HeadCombination:
        """Score the fit on changes measured on other probe items, and test that R² against shuffled heads.

        Sets ``held_out_r2_``; with ``n_permutations`` > 0 also ``held_out_null_`` (each permutation
        shuffles every basic change over the heads, the same way on both probe sets, refits on the first
        and scores on the second) and ``held_out_p_value_``.
        """
        y, design = self._arrays(complex_delta, basic_deltas, list(self.weights_.index))
        fit_y, fit_design = self._fitted_on
        if fit_design.shape != design.shape:
            raise ValueError(f"held-out changes have {design.shape[0]} heads, the fit had {fit_design.shape[0]}")
        self.held_out_r2_ = self.score(complex_delta, basic_deltas)
        self.held_out_null_ = np.array([])
        self.held_out_p_value_ = float("nan")
        if self.n_permutations > 0 and not np.isnan(self.held_out_r2_):
            null = []
            for permutation in self._head_permutations(design.shape):
                weights, intercept = self._solve(np.take_along_axis(fit_design, permutation, axis=0), fit_y)
                null.append(self._r2(y, np.take_along_axis(design, permutation, axis=0) @ weights + intercept))
            self.held_out_null_ = np.array(null)
            self.held_out_p_value_ = self._p_value(self.held_out_r2_, self.held_out_null_)
        return self

    @staticmethod
    def _arrays(complex_delta, basic_deltas: dict[str, np.ndarray], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        target = np.asarray(complex_delta, dtype=float)
        if not basic_deltas:
            raise ValueError("HeadCombination needs at least one basic task")
        missing = [name for name in names if name not in basic_deltas]
        if missing:
            raise ValueError(f"no change given for basic task {missing[0]!r}")
        for name in names:
            if np.shape(basic_deltas[name]) != target.shape:
                raise ValueError(f"basic task {name!r} has shape {np.shape(basic_deltas[name])}, "
                                 f"the complex task {target.shape}")
        return target.ravel(), np.column_stack([np.asarray(basic_deltas[name], dtype=float).ravel() for name in names])

    def _head_permutations(self, shape: tuple[int, int]):
        """One independent shuffle of the heads per basic task, ``n_permutations`` times (seeded)."""
        rng = np.random.default_rng(self.seed)
        for _ in range(self.n_permutations):
            yield np.column_stack([rng.permutation(shape[0]) for _ in range(shape[1])])

    def _p_value(self, observed: float, null: np.ndarray) -> float:
        return float((1 + (null >= observed - 1e-12).sum()) / (1 + self.n_permutations))

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


def unit_change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The change between two patterns each scaled to unit L2 norm: how activity moved between heads.

    A gradient pattern scales with the loss, so after training every head reads less active and the raw
    change ``after - before`` mostly mirrors ``-before``; scaling first removes that common factor."""
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    return after / np.linalg.norm(after) - before / np.linalg.norm(before)

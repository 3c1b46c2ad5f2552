"""Latent traits of a transfer matrix: PCA over the adapter rows (paper 1, section 3).

Each principal component is a *trait* (a direction in target-task space along which adapters
differ), its loadings say which targets move together, and each adapter's scores on the
components are its *ability profile*.

Note on ``input``: PCA centres the rows, so subtracting the base row ("delta") gives exactly
the same components and weights as the raw scores; the two options differ only in what is
recorded and shown. "standardized" differs: it gives every target equal variance, so tasks
with a wide score spread no longer dominate the first component.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BASE = "base"
INPUTS = ("delta", "raw", "standardized")
TOP_TASKS = 3


class LatentTraits:
    def __init__(self, n_components: int | None = None, input: str = "delta", random_state: int = 0):
        self.n_components = n_components
        self.input = input
        self.random_state = random_state

    def fit(self, matrix: pd.DataFrame) -> LatentTraits:
        data = self._prepare(matrix)
        n_adapters, n_tasks = data.shape
        if n_adapters < 2:
            raise ValueError(f"latent traits need at least 2 adapters, got {n_adapters}")
        if n_tasks < 2:
            raise ValueError(f"latent traits need at least 2 target tasks, got {n_tasks}")
        values = data.to_numpy(dtype=float)
        if np.allclose(values, values[0]):
            raise ValueError("all adapter rows are identical: there is no variance to explain")

        # Centred data of n adapters has rank <= n-1; a further component would be pure noise.
        limit = min(n_adapters - 1, n_tasks)
        k = limit if self.n_components is None else self.n_components
        if not 1 <= k <= limit:
            raise ValueError(
                f"n_components must be between 1 and {limit} for {n_adapters} adapters "
                f"and {n_tasks} tasks, got {k}"
            )

        from sklearn.decomposition import PCA  # imported here: it takes ~2 s, and the CLI imports this module

        pca = PCA(n_components=k, random_state=self.random_state).fit(values)
        # Orient each component so its largest-|loading| task is positive: PCA signs are arbitrary
        # and would otherwise flip between runs or library versions.
        components = pca.components_
        largest = components[np.arange(k), np.abs(components).argmax(axis=1)]
        components = components * np.sign(largest)[:, None]

        self.adapters_ = list(data.index)
        self.tasks_ = list(data.columns)
        self.data_ = data
        self.components_ = components
        self.explained_variance_ratio_ = pca.explained_variance_ratio_
        self.weights_ = (values - pca.mean_) @ components.T
        self.top_tasks_ = [
            [self.tasks_[j] for j in np.argsort(-np.abs(row), kind="stable")[:TOP_TASKS]]
            for row in components
        ]
        return self

    def _prepare(self, matrix: pd.DataFrame) -> pd.DataFrame:
        """The adapters x tasks data PCA runs on, per ``self.input``."""
        if self.input not in INPUTS:
            raise ValueError(f"input must be one of {', '.join(INPUTS)}, got {self.input!r}")
        if matrix.isna().to_numpy().any():
            missing = matrix.isna().stack()
            cells = [f"{row}/{col}" for row, col in missing[missing].index]
            raise ValueError(f"matrix has missing values at {', '.join(cells[:5])}")
        adapters = matrix.drop(index=BASE, errors="ignore").astype(float)
        if self.input == "raw":
            return adapters
        if BASE not in matrix.index:
            raise ValueError(f"input={self.input!r} needs a row named {BASE!r} in the matrix")
        delta = adapters - matrix.loc[BASE].astype(float)
        if self.input == "delta":
            return delta
        spread = delta.std(ddof=0)
        # A task on which every adapter scores the same carries no signal: map it to 0, not NaN.
        return ((delta - delta.mean()) / spread.where(spread > 0)).fillna(0.0)

    def _component_names(self) -> list[str]:
        return [f"PC{i + 1}" for i in range(len(self.components_))]

    def weights_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.weights_, index=self.adapters_, columns=self._component_names())

    def components_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.components_, index=self._component_names(), columns=self.tasks_)

    def to_dict(self) -> dict:
        return {
            "input": self.input,
            "adapters": [str(name) for name in self.adapters_],
            "tasks": [str(name) for name in self.tasks_],
            "components": self.components_.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio_.tolist(),
            "weights": self.weights_.tolist(),
            "top_tasks": [[str(name) for name in tasks] for tasks in self.top_tasks_],
        }

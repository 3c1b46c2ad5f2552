"""Asymmetry: for tasks that are both a source and a target, does i help j as much as j helps i?

On differences from the base model, ``asymmetry(i, j) = Δ[i → j] − Δ[j → i]`` where ``Δ[i → j]`` is
the gain of the adapter trained on i when evaluated on j. A source and a target are the same task
when the source's label equals the target's label.

The raw asymmetry is descriptive (no test): much of it is main effects — a target that every adapter
hurts (the math targets) makes every pair with it look one-way. ``interaction_`` is the same on the
double-centred matrix (each cell minus its source's and its target's average effect), the part of
the asymmetry that belongs to the pair itself.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import save_table
from ..sections import Figure, Section
from .base import RunData, diverging_heatmap
from .similarity import double_centred


class TransferAsymmetry:
    """``fit(delta)`` with ``delta`` adapters × targets (differences from base); sets ``table_``, ``matrix_``."""

    def fit(self, delta: pd.DataFrame) -> TransferAsymmetry:
        shared = [task for task in delta.index if task in delta.columns]
        if len(shared) < 2:
            raise ValueError("asymmetry needs at least two tasks that are both a source and a target")
        square = delta.loc[shared, shared].astype(float)
        self.matrix_ = square - square.T
        centred = pd.DataFrame(double_centred(delta.to_numpy(float), np.ones(delta.shape, bool)),
                               index=delta.index, columns=delta.columns).loc[shared, shared]
        rows = [{"task_a": a, "task_b": b, "a_to_b": square.at[a, b], "b_to_a": square.at[b, a],
                 "asymmetry": square.at[a, b] - square.at[b, a],
                 "pair_asymmetry": centred.at[a, b] - centred.at[b, a]} for a, b in combinations(shared, 2)]
        table = pd.DataFrame(rows)
        self.table_ = table.reindex(table["asymmetry"].abs().sort_values(ascending=False).index).reset_index(drop=True)
        return self


def analyze(run: RunData, out_dir: Path) -> Section:
    section = Section("asymmetry", "Asymmetry of transfer", reading="")
    try:
        asymmetry = TransferAsymmetry().fit(run.delta)
    except ValueError as reason:
        section.skipped = f"Not computed: {reason}."
        return section
    path = out_dir / "asymmetry.csv"
    save_table(asymmetry.table_, path, index=False, float_format="%.4f")
    section.tables = [path]
    section.figures = [_figure(out_dir / "asymmetry.png", asymmetry.matrix_ * 100)]
    top = asymmetry.table_.iloc[0]
    stronger, weaker = (top["task_a"], top["task_b"]) if top["asymmetry"] > 0 else (top["task_b"], top["task_a"])
    gain_forward = max(top["a_to_b"], top["b_to_a"]) * 100
    gain_back = min(top["a_to_b"], top["b_to_a"]) * 100
    mean_abs = float(asymmetry.table_["asymmetry"].abs().mean() * 100)
    pair = asymmetry.table_.loc[asymmetry.table_["pair_asymmetry"].abs().idxmax()]
    pair_mean = float(asymmetry.table_["pair_asymmetry"].abs().mean() * 100)
    section.reading = (f"The most asymmetric pair is {stronger} → {weaker}: {gain_forward:+.1f} pp one way against "
                       f"{gain_back:+.1f} pp back; over {len(asymmetry.table_)} pairs the mean absolute asymmetry is "
                       f"{mean_abs:.1f} pp (descriptive, not tested). With every source's and target's average "
                       f"effect removed (double-centred), {pair_mean:.1f} pp of it is left on average, most for "
                       f"{pair['task_a']} / {pair['task_b']} ({pair['pair_asymmetry'] * 100:+.1f} pp): the rest is "
                       "targets that every adapter helps or hurts.")
    return section


def _figure(path: Path, matrix_pp: pd.DataFrame) -> Figure:
    diverging_heatmap(path, matrix_pp, title="Transfer asymmetry", xlabel="target j", ylabel="source i",
                      colorbar="Δ[i→j] − Δ[j→i] (pp)", fmt="+.1f", square=True)
    caption = ("Row i, column j: how much more source i helps target j than source j helps target i, in percentage "
               "points of difference from base. The matrix is antisymmetric; strong colours mark one-way transfer.")
    return Figure("Asymmetry", caption, path)

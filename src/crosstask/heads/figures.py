"""Figures and one-sentence readings for pattern dynamics and pattern-guided mixing (report-ready).

Each ``*_figure`` writes a PNG (dpi 150) and returns a :class:`crosstask.analysis.base.Figure`; each
``*_reading`` returns one plain sentence computed from the same table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from ..files import new_figure, save_figure
from ..sections import Figure

DPI = 150
CLOSE_TO_FINAL = 0.9  # "the pattern has settled" once it correlates this well with its final state


def dynamics_figure(table: pd.DataFrame, path: str | Path, source: str, task: str) -> Figure:
    """Correlation with the final and base patterns (left), MSE to final and probe loss (right), per step."""
    path = Path(path)
    figure = new_figure(figsize=(9, 3.4), layout="constrained")
    left, right = figure.subplots(1, 2)
    palette = sns.color_palette("deep")
    left.plot(table["step"], table["corr_to_final"], marker="o", color=palette[0], label="to final pattern")
    left.plot(table["step"], table["corr_to_base"], marker="s", color=palette[1], label="to base pattern")
    left.axhline(CLOSE_TO_FINAL, color="grey", linestyle=":", linewidth=1)
    left.set(xlabel="optimizer step", ylabel="Pearson r over heads", title="Pattern similarity")
    left.legend(frameon=False, fontsize=8)
    right.plot(table["step"], table["mse_to_final"], marker="o", color=palette[0])
    right.set(xlabel="optimizer step", ylabel="MSE to final pattern", title="Distance and probe loss")
    loss_axes = right.twinx()
    loss_axes.plot(table["step"], table["probe_loss"], marker="^", color=palette[3], linestyle="--")
    loss_axes.set_ylabel("probe answer loss", color=palette[3])
    for axes in (left, right):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        sns.despine(ax=axes, right=axes is left)
    figure.suptitle(f"Head pattern on {task} while training on {source}")
    save_figure(figure, path, DPI)
    caption = (f"Activation pattern on {task} probe items at step 0 (base), every few optimizer steps and at the "
               f"last step of training on {source}. Dotted line: r = {CLOSE_TO_FINAL}.")
    return Figure(f"Pattern dynamics: {source} → {task}", caption, path)


def dynamics_reading(table: pd.DataFrame, source: str, task: str) -> str:
    """When the pattern settles (r ≥ 0.9 with its final state), how far it ends from the base, the loss drop."""
    last = table.iloc[-1]
    settled = table[table["corr_to_final"] >= CLOSE_TO_FINAL].iloc[0]
    return (f"Training on {source}, the head pattern on {task} reaches r ≥ {CLOSE_TO_FINAL} with its final state "
            f"at step {int(settled['step'])} of {int(last['step'])} ({int(settled['examples_seen'])} examples "
            f"seen) and ends at r = {last['corr_to_base']:.2f} with the base pattern, while the probe loss goes "
            f"from {table['probe_loss'].iloc[0]:.2f} to {last['probe_loss']:.2f}.")


def mixing_figure(table: pd.DataFrame, alpha: pd.DataFrame, path: str | Path, complex_task: str) -> Figure:
    """Mixture proportions α (left) and held-out accuracy per method, seeds as dots (right)."""
    path = Path(path)
    used = alpha[alpha["used"]]
    figure = new_figure(figsize=(10, 3.8), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.3])
    palette = sns.color_palette("deep")
    left.bar(used["basic"], used["proportion"], color=palette[0])
    left.set(title=f"α from {used['delta_on'].iloc[0]}-task ΔA (held-out R² = {used['r2'].iloc[0]:.2f})",
             ylabel="share of the warm-up", ylim=(0, 1))
    left.tick_params(axis="x", labelrotation=20)
    overall = table[table["seed"] == "all"].set_index("method")
    per_seed = table[table["seed"] != "all"]
    methods = [method for method in ("plain", "alpha", "uniform") if method in overall.index]
    names = {"plain": "plain SFT", "alpha": "α warm-up + SFT", "uniform": "uniform warm-up + SFT"}
    positions = np.arange(len(methods))
    right.bar(positions, overall.loc[methods, "accuracy"], color=[palette[i] for i in (7, 2, 1)][: len(methods)],
              alpha=0.8)
    for position, method in zip(positions, methods):
        seeds = per_seed[per_seed["method"] == method]["accuracy"]
        right.scatter(np.full(len(seeds), position), seeds, color="black", s=14, zorder=3)
        if method != "plain":
            row = overall.loc[method]
            right.annotate(f"{100 * row['difference']:+.1f} pp\n[{100 * row['low']:+.1f}, {100 * row['high']:+.1f}]",
                           (position, row["accuracy"]), textcoords="offset points", xytext=(0, 6), ha="center",
                           fontsize=8)
    if "base" in overall.index:
        right.axhline(overall.loc["base", "accuracy"], color="grey", linestyle="--", linewidth=1, label="base model")
        right.legend(frameon=False, fontsize=8, loc="lower right")
    right.set_xticks(positions, [names[method] for method in methods], fontsize=8)
    right.set(title=f"Held-out accuracy on {complex_task}", ylabel="accuracy", ylim=(0, 1.1))
    for axes in (left, right):
        sns.despine(ax=axes)
    save_figure(figure, path, DPI)
    n_seeds = per_seed["seed"].nunique()
    caption = (f"Left: non-negative weights of the basic tasks' head-pattern changes in {complex_task}'s change, "
               f"scaled to sum to one. Right: bars are the mean over {n_seeds} seed(s), dots single seeds; labels "
               "give the difference from plain SFT with its 95% paired bootstrap interval.")
    return Figure(f"Pattern-guided data mixing for {complex_task}", caption, path)


def mixing_reading(table: pd.DataFrame, alpha: pd.DataFrame, complex_task: str) -> str:
    """α warm-up against plain SFT and a uniform warm-up, the difference's interval, and what α chose."""
    overall = table[table["seed"] == "all"].set_index("method")
    n_seeds = table.loc[table["seed"] != "all", "seed"].nunique()
    n_items = int(overall.loc["plain", "n_items"]) // max(n_seeds, 1)
    alpha_row, uniform_row = overall.loc["alpha"], overall.loc["uniform"]
    used = alpha[alpha["used"]].sort_values("proportion", ascending=False)
    shares = ", ".join(f"{row.proportion:.2f} on {row.basic}" for row in used.itertuples())
    text = (f"α-weighted warm-up reaches {alpha_row['accuracy']:.2f} on {complex_task} against "
            f"{overall.loc['plain', 'accuracy']:.2f} for plain SFT and {uniform_row['accuracy']:.2f} for a uniform "
            f"mixture ({_pp(alpha_row)} vs plain; uniform {_pp(uniform_row)}; {n_seeds} seed(s) × {n_items} items")
    if "base" in overall.index:
        text += f", base model {overall.loc['base', 'accuracy']:.2f}"
    fit = used.iloc[0]
    return text + (f"); α puts {shares} ({fit['delta_on']}-task ΔA; R² = {fit['r2']:.2f} on held-out probe items "
                   f"against {fit['r2_null_median']:.2f} with the heads shuffled, p = {fit['r2_p_value']:.3f}).")


def _pp(row: pd.Series) -> str:
    return (f"{100 * row['difference']:+.1f} pp, 95% CI [{100 * row['low']:+.1f}, {100 * row['high']:+.1f}]")

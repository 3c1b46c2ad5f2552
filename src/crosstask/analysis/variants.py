"""Source variants: what balancing, skewing, mislabeling or shrinking a source does to its transfer.

Every variant adapter (``sources: [{task: x, variants: [...]}]``) is compared with the adapter of its
original source on every target: the difference of their scores with a paired bootstrap interval
over the shared evaluation items (both were scored on exactly the same items).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from ..files import new_figure, save_figure, save_table
from ..sections import Figure, Section
from .base import RunData
from .bootstrap import paired_bootstrap

DPI = 150


def compare_variants(items: pd.DataFrame, pairs: list[tuple[str, str]], n_resamples: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """One row per (variant, target): the variant's score minus its original source's, with a paired interval.

    ``items`` has columns model, target, item, correct and optionally replicate (the training seed: both
    sides' seeds are resampled); ``pairs`` lists (source, variant) model names.
    """
    tables = []
    columns = ["model", "target", "item", *(["replicate"] if "replicate" in items else []), "correct"]
    for source, variant in pairs:
        pair_items = items.loc[items["model"].isin([source, variant]), columns]
        compared = paired_bootstrap(pair_items, n_resamples=n_resamples, seed=seed, base=source)
        scores = pair_items.groupby(["model", "target"])["correct"].mean()
        compared = compared.rename(columns={"model": "variant", "delta": "difference"})
        compared["source"] = source
        compared["source_score"] = [scores[(source, target)] for target in compared["target"]]
        compared["variant_score"] = [scores[(variant, target)] for target in compared["target"]]
        tables.append(compared)
    table = pd.concat(tables, ignore_index=True)
    return table[["source", "variant", "target", "source_score", "variant_score", "difference", "low", "high",
                  "significant", "n_items"]]


def analyze(run: RunData, out_dir: Path) -> Section:
    section = Section("variants", "Source variants", reading="")
    pairs = run.experiment.variant_pairs()
    if not pairs:
        section.skipped = ("The run has no source variants; add e.g. `variants: [balanced, {mislabeled: 0.3}]` to a "
                           "source to compare balanced, imbalanced, mislabeled or subsampled copies of it.")
        return section
    table = compare_variants(run.items, pairs, run.experiment.eval.bootstrap_resamples, run.experiment.seed)
    path = out_dir / "variants.csv"
    save_table(table, path, index=False, float_format="%.4f")
    section.tables = [path]
    section.figures = [_figure(out_dir / "variants.png", table)]
    section.reading = _reading(table)
    return section


def _reading(table: pd.DataFrame) -> str:
    summary = table.groupby("variant", sort=False).agg(mean=("difference", "mean"), n=("difference", "size"),
                                                        significant=("significant", "sum"))
    parts = [f"{variant} {row['mean'] * 100:+.1f} pp ({int(row['significant'])} of {int(row['n'])} targets "
             "significant)" for variant, row in summary.iterrows()]
    largest = summary["mean"].abs().idxmax()
    return (f"Compared with the adapter of its original source, each variant moves the scores on average by: "
            f"{'; '.join(parts)}. The largest average effect is {largest}. (Significant: paired bootstrap over the "
            "shared items, and over both adapters' training seeds when the run has several, against 'the variant "
            "scores as its source does', Benjamini–Hochberg over each variant's targets.)")


def _figure(path: Path, table: pd.DataFrame) -> Figure:
    sources = list(pd.unique(table["source"]))
    targets = list(pd.unique(table["target"]))
    figure = new_figure(figsize=(max(5.0, 1.0 + 0.9 * len(targets)), 3.4 * len(sources)), layout="constrained")
    axes_column = figure.subplots(len(sources), 1, squeeze=False)[:, 0]
    for axes, source in zip(axes_column, sources):
        of_source = table[table["source"] == source]
        variants = list(pd.unique(of_source["variant"]))
        width = 0.8 / len(variants)
        colors = sns.color_palette("deep", len(variants))
        for index, (variant, color) in enumerate(zip(variants, colors)):
            rows = of_source[of_source["variant"] == variant].set_index("target").reindex(targets)
            x = np.arange(len(targets)) + (index - (len(variants) - 1) / 2) * width
            errors = np.vstack([rows["difference"] - rows["low"], rows["high"] - rows["difference"]]) * 100
            axes.bar(x, rows["difference"] * 100, width, yerr=errors, capsize=2, color=color,
                     label=variant.removeprefix(f"{source}+"), edgecolor=["black" if s else color
                                                                           for s in rows["significant"]])
        axes.axhline(0, color="black", linewidth=0.8)
        axes.set_xticks(np.arange(len(targets)), targets, rotation=35, ha="right", rotation_mode="anchor")
        axes.set(title=f"Variants of {source}", ylabel="variant − original (pp)")
        axes.legend(frameon=False, fontsize=8)
        sns.despine(ax=axes)
    save_figure(figure, path, DPI)
    caption = ("Score of each variant adapter minus the adapter of its original source, per target, with paired "
               "bootstrap intervals; bars outlined in black exclude zero.")
    return Figure("Variants against their original source", caption, path)

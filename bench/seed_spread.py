"""How much retraining moves a run's cells: the spread over training seeds of a multi-seed run.

    python bench/seed_spread.py RUN_DIR

RUN_DIR is a finished run with `seeds: [...]` (e.g. experiments/demo.yaml with `seeds: [0, 1, 2]`).
Prints, per cell, the difference from base for each seed, the standard deviation over seeds, and
how many cells each single seed's item-only bootstrap marks significant against the two-level
bootstrap over all seeds (Benjamini–Hochberg in both).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from crosstask.analysis.base import RunData
from crosstask.analysis.bootstrap import paired_bootstrap


def main(run_dir: str) -> None:
    run = RunData(Path(run_dir))
    items = run.items[["model", "target", "item", "replicate", "correct"]]
    resamples = run.experiment.eval.bootstrap_resamples
    pooled = paired_bootstrap(items, n_resamples=resamples).set_index(["model", "target"])
    seeds = sorted(items.loc[items["model"] != "base", "replicate"].unique())
    per_seed = {}
    for seed in seeds:
        one = items[(items["model"] == "base") | (items["replicate"] == seed)].assign(replicate=0)
        per_seed[seed] = paired_bootstrap(one, n_resamples=resamples).set_index(["model", "target"])
    table = pd.DataFrame({f"delta_seed{seed}": frame["delta"] * 100 for seed, frame in per_seed.items()})
    table["sd_pp"] = pooled["seed_sd"] * 100
    table["mean_pp"] = pooled["delta"] * 100
    table["significant_all_seeds"] = pooled["significant"]
    for seed, frame in per_seed.items():
        table[f"significant_seed{seed}"] = frame["significant"]
    pd.set_option("display.width", 200)
    print(table.round(1).to_string())
    sd = table["sd_pp"]
    print(f"\nseed spread of a cell's difference from base: median {sd.median():.1f} pp, "
          f"90th percentile {sd.quantile(0.9):.1f} pp, max {sd.max():.1f} pp ({sd.idxmax()})")
    per_seed = table[[f"delta_seed{s}" for s in seeds]]
    largest = per_seed.max(axis=1) - per_seed.min(axis=1)
    print(f"largest range between seeds: {largest.max():.1f} pp ({largest.idxmax()})")
    print(f"cells significant (BH, q = 0.05): all seeds {int(table['significant_all_seeds'].sum())} of {len(table)}; "
          + ", ".join(f"seed {s} alone {int(table[f'significant_seed{s}'].sum())}" for s in seeds))
    same_task = [(source, target) for source, target in table.index
                 if run.source_spec(source).name == run.target_spec(target).name]
    diagonal = table.loc[same_task]
    print("own-task cells (mean ± sd over seeds, significant across seeds):")
    for (source, target), row in diagonal.iterrows():
        print(f"  {source} on {target}: {row['mean_pp']:+.1f} ± {row['sd_pp']:.1f} pp, "
              f"{'significant' if row['significant_all_seeds'] else 'NOT significant'}")
    flips = sum((table[f"significant_seed{s}"] != table["significant_all_seeds"]).sum() for s in seeds)
    print(f"single-seed marks that disagree with the all-seeds mark: {flips} of {len(table) * len(seeds)}")


if __name__ == "__main__":
    main(sys.argv[1])

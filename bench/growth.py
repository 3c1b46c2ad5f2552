"""How a run's cost grows with the grid: time linear in I·N for evaluation and in I for training, memory flat in I.

Runs square grids of I sources × N = I targets of the built-in choice tasks on the embedded model, each
in a fresh process with a fresh run directory (so the model conversion cache is the only thing shared),
with few items so the whole sweep takes minutes. Reported per grid: training seconds (from the
adapters' own timings) per adapter, evaluation seconds (from the cells' timings) per model × target
cell, and the process's peak resident memory. Adapters are loaded for their cells and dropped, so
memory should not grow with I; per-adapter and per-cell times should stay flat as the grid grows.

    python bench/growth.py [--sizes 2 4 8] [--train 16] [--items 16]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

TASKS = ["sentiment_binary", "sentiment_3way", "rating_5star", "paraphrase", "nli", "toxicity",
         "arithmetic_sentiment", "sentiment_binary"]


def grid(size: int, train: int, items: int) -> dict:
    """Sources and targets: the built-in choice tasks in turn, each named by its position."""
    refs = [{"task": task, "name": f"{task}_{index}"} for index, task in enumerate(TASKS[:size])]
    return {"name": f"growth{size}", "sources": refs, "targets": refs, "train_examples": train, "eval_examples": items,
            "lora": {"lr": 1e-3, "batch_size": 8, "min_steps": None}, "eval": {"batch_size": 16}}


def run_one(size: int, train: int, items: int) -> dict:
    """One grid in this process (called through ``--child``): timings from the store, peak memory."""
    from crosstask import api
    from crosstask.store import Store

    settings = grid(size, train, items)
    with tempfile.TemporaryDirectory() as scratch:
        api.run(settings, out_dir=Path(scratch) / "run", progress=False)
        store = Store(Path(scratch) / "run" / "results.sqlite")
        adapters = store.adapters()
        training = sum(json.loads(metrics)["seconds"] for metrics in adapters["metrics"])
        cells = store.cells()
        evaluation = float(cells["seconds"].sum())
    return {"sources": size, "targets": size, "adapters": len(adapters), "cells": len(cells),
            "train_s": training, "eval_s": evaluation,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.train, args.items)))
        return
    print("| I × N | adapters | cells | training s | s per adapter | evaluation s | s per cell | peak memory MB |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        output = subprocess.run([sys.executable, __file__, "--child", str(size), "--train", str(args.train),
                                 "--items", str(args.items)], capture_output=True, text=True, check=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        print(f"| {size} × {size} | {row['adapters']} | {row['cells']} | {row['train_s']:.1f} | "
              f"{row['train_s'] / row['adapters']:.2f} | {row['eval_s']:.1f} | {row['eval_s'] / row['cells']:.2f} | "
              f"{row['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()

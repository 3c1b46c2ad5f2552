"""Gradient activation pattern vs ablating each attention head, on the embedded SmolLM2-135M-Instruct.

Both measure how much each of the L·H = 30 × 9 = 270 heads matters for the answer loss of the same
eval items in the same batches:

* gradient: :func:`crosstask.heads.activation_pattern` — one forward + backward per batch scores
  every head (first order: removing head (l, h) changes the loss by about ``-A_signed[l, h]``);
* ablation: :func:`crosstask.heads.ablation_effects` — one full forward pass per head with that
  head's gate at 0, plus one intact pass.

Reported: seconds of each (gradient: median of --repeats, half run before and half after the
ablation sweep; ablation: one sweep, extrapolated to all heads when only a random subset is
measured), the speed-up, and the Spearman rank correlation between ``-A_signed`` and the measured
ablation loss changes over the heads measured.

    python bench/heads_vs_ablation.py [--task sentiment_binary] [--items 32] [--heads 270] [--repeats 4]
    python bench/heads_vs_ablation.py --quick     # 8 items, 30 random heads, 2 repeats
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from crosstask import api
from crosstask.config import TaskRef
from crosstask.devices import planned_dtype
from crosstask.heads import ablation_effects, activation_pattern, find_attention_layout
from crosstask.heads.patterns import answer_batches, item_losses
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks.data import resolve

MODEL = "smollm2-135m-instruct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="sentiment_binary")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--heads", type=int, default=None, help="ablate a random subset of this many heads")
    parser.add_argument("--repeats", type=int, default=4,
                        help="gradient timing: median of this many runs, half before and half after the ablation")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="8 items, 30 random heads, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.items, args.heads, args.repeats = 8, args.heads or 30, 2

    dtype = planned_dtype(args.precision, "cpu")
    resolved = resolve_model(MODEL)
    model, tokenizer = load_model(resolved, dtype), load_tokenizer(resolved)
    spec = resolve(TaskRef(task=args.task)).spec
    examples = api.sample(args.task, args.items, seed=args.seed, split="eval")
    layers, heads_per_layer = find_attention_layout(model).shape
    all_heads = [(layer, head) for layer in range(layers) for head in range(heads_per_layer)]
    n_heads = len(all_heads) if args.heads is None else min(args.heads, len(all_heads))
    measured = sorted(random.Random(args.seed).sample(all_heads, n_heads))
    tokens = sum(len(batch["input_ids"][0]) * len(batch["input_ids"]) for batch in
                 answer_batches(tokenizer, spec, examples, args.batch_size))
    print(f"{MODEL} ({layers} layers x {heads_per_layer} heads, {str(dtype).removeprefix('torch.')}), "
          f"{args.task}: {len(examples)} items, {tokens} padded tokens, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads", flush=True)

    with torch.inference_mode():  # warm-up, untimed: first calls allocate and pick kernels
        item_losses(model, answer_batches(tokenizer, spec, examples[: args.batch_size], args.batch_size)[0])

    gradient_seconds = []

    def time_gradient() -> np.ndarray:
        started = time.perf_counter()
        pattern = activation_pattern(model, tokenizer, spec, examples, args.batch_size, mode="signed")
        gradient_seconds.append(time.perf_counter() - started)
        print(f"  gradient pattern: {gradient_seconds[-1]:.2f} s", flush=True)
        return pattern

    # Half the gradient runs before the ablation sweep and half after: the cores are shared, and
    # the load can change during a sweep of several minutes.
    for _ in range((args.repeats + 1) // 2):
        signed = time_gradient()

    done = {"heads": 0}

    def report_head(n: int) -> None:
        done["heads"] += n
        if done["heads"] % 10 == 0 or done["heads"] == n_heads:
            print(f"  ablation: {done['heads']}/{n_heads} heads, {time.perf_counter() - started:.0f} s", flush=True)

    started = time.perf_counter()
    effects = ablation_effects(model, tokenizer, spec, examples, args.batch_size, heads=measured, progress=report_head)
    ablation_measured = time.perf_counter() - started
    for _ in range(args.repeats // 2):
        time_gradient()
    gradient = statistics.median(gradient_seconds)
    # The sweep is one intact pass plus one pass per head; scale it to every head when a subset was run.
    ablation_all = ablation_measured * (len(all_heads) + 1) / (n_heads + 1)

    predicted = np.array([-signed[layer, head] for layer, head in measured])
    actual = np.array([effects[layer, head] for layer, head in measured])
    rho, pearson = spearmanr(predicted, actual)[0], pearsonr(predicted, actual)[0]
    same_sign = float(np.mean(np.sign(predicted) == np.sign(actual)))
    top = max(1, n_heads // 10)
    top_overlap = len(set(np.argsort(-predicted)[:top]) & set(np.argsort(-actual)[:top])) / top

    subset = n_heads < len(all_heads)
    ablation_note = (f"{ablation_measured:.1f} for {n_heads} heads -> {ablation_all:.0f} extrapolated to "
                     f"{len(all_heads)}" if subset else f"{ablation_all:.1f}")
    print()
    print(f"| task | items | heads ablated | gradient s (median of {args.repeats}) | ablation s | speed-up | "
          "Spearman(-A, ablation) | Pearson | same sign | top-10% overlap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.task} | {len(examples)} | {n_heads}{' (random subset)' if subset else ''} | {gradient:.2f} | "
          f"{ablation_note} | {ablation_all / gradient:.0f}x | {rho:.3f} | {pearson:.3f} | {same_sign:.0%} | "
          f"{top_overlap:.0%} |")
    print(f"\nTarget speed-up L*H/3 = {len(all_heads) / 3:.0f}x. Gradient runs: "
          + ", ".join(f"{seconds:.2f}" for seconds in gradient_seconds) + " s. Largest measured ablation effects: "
          + ", ".join(f"L{measured[i][0]}H{measured[i][1]} {actual[i]:+.4f} (pred {predicted[i]:+.4f})"
                      for i in np.argsort(-np.abs(actual))[:5]))


if __name__ == "__main__":
    main()

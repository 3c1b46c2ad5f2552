"""How close crosstask's LoRA training comes to this machine's matmul peak.

Trains the demo's sources with the demo's settings (experiments/demo.yaml) on the embedded model and
reports, per source, tokens/s and the useful FLOP/s they stand for, against the peak of a large matmul
measured in the same run, in the same dtype (median of --repeats runs each).

Useful FLOP per training token, counted from the model's shapes (matmuls only, 2 FLOP per multiply-add;
padding, norms, activations and the optimizer are not useful work):
  * the frozen linear layers of the decoder (N_body weights): 2·N_body forward, 2·N_body backward for the
    activation gradients (frozen weights need no weight gradient): 4·N_body;
  * LoRA's own matmuls (r ≪ d): 3 × 2·r·(d_in + d_out) per adapted layer;
  * attention over the causal prefix (T̄ = mean number of earlier tokens, L layers, H query heads of size
    d_h): 2·2·H·d_h·T̄ forward (scores and mixing), twice that backward: 12·L·H·d_h·T̄;
  * the output head (V × d) only at answer positions, forward and activation gradient: 4·V·d per answer
    token (crosstask skips it elsewhere; a plain causal-LM loss would pay it at every position).

crosstask runs the instruction that a step's examples share once per packed row
(``crosstask.training.pack_batch``), so it runs fewer tokens than the examples hold. Two shares of the
peak are printed: "run" counts the tokens that ran (the matmul work the machine did), "examples" all the
examples' tokens (the work a trainer without the shared prefix would do for the same training; it can
exceed 100 %).

    python bench/train_flops.py [--repeats 3] [--sources sentiment_binary nli] [--dtype auto|bf16|fp32] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from crosstask.config import load_experiment
from crosstask.devices import planned_dtype
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks import build_examples, get_family
from crosstask.training import tokenize_examples, train_adapter

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a size × size matmul in ``dtype`` (median of ``repeats`` timings of 10 products)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)  # warm-up
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(10):
            torch.mm(a, b)
        timings.append((time.perf_counter() - started) / 10)
    return 2 * size**3 / statistics.median(timings)


def flop_per_token(model, rows: list[dict], lora_r: int, target_modules: list[str]) -> float:
    """Useful FLOP per token of training on ``rows`` (formula in the module docstring)."""
    config = model.config
    hidden, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    body, lora = 0, 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith("model.layers."):
            body += module.in_features * module.out_features
            if name.rsplit(".", 1)[-1] in target_modules:
                lora += 3 * 2 * lora_r * (module.in_features + module.out_features)
    tokens = sum(len(row["input_ids"]) for row in rows)
    answer_tokens = sum(sum(label != -100 for label in row["labels"]) for row in rows)
    mean_prefix = sum(len(row["input_ids"]) * (len(row["input_ids"]) - 1) / 2 for row in rows) / tokens
    attention = 12 * layers * heads * head_dim * mean_prefix
    head = 4 * config.vocab_size * hidden * answer_tokens / tokens
    return 4 * body + lora + attention + head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sources", nargs="+", default=None, help="demo sources to train (default: all)")
    parser.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)

    experiment = load_experiment(DEMO)
    dtype_name = planned_dtype(args.dtype, "cpu")
    dtype = getattr(torch, dtype_name)
    peak = statistics.median(matmul_peak(dtype) for _ in range(args.repeats))
    print(f"threads {torch.get_num_threads()}, {dtype_name}: matmul peak {peak / 1e9:.0f} GFLOP/s (2048², median)")
    resolved = resolve_model(experiment.base_model)
    tokenizer = load_tokenizer(resolved)
    print("| source | examples | steps | tokens | tokens run | FLOP/token (M) | tokens/s | GFLOP/s run "
          "| share of peak: run | examples |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ref in experiment.source_refs:
        if args.sources and ref.label not in args.sources:
            continue
        lora = experiment.lora_for(ref)
        spec = get_family(ref.task).spec
        examples = build_examples(ref, "train", ref.examples or experiment.train_examples, experiment.seed)
        rows = tokenize_examples(tokenizer, spec, examples, lora.max_length).rows
        per_token = flop_per_token(load_model(resolved, dtype), rows, lora.r, lora.target_modules)
        speeds = []
        for _ in range(args.repeats):
            model = load_model(resolved, dtype)
            with tempfile.TemporaryDirectory() as scratch:
                metrics = train_adapter(model, tokenizer, spec, examples, lora, experiment.seed, Path(scratch))
            speeds.append(metrics["tokens_per_second"])
        speed = statistics.median(speeds)
        tokens = sum(len(row["input_ids"]) for row in rows) * lora.epochs
        run = metrics["tokens_run"] / tokens  # the same batches every repeat (seeded)
        print(f"| {ref.label} | {len(rows)} | {metrics['steps']} | {tokens:,.0f} | {metrics['tokens_run']:,} | "
              f"{per_token / 1e6:.0f} | {speed:.0f} | {speed * run * per_token / 1e9:.1f} | "
              f"{speed * run * per_token / peak:.0%} | {speed * per_token / peak:.0%} |")


if __name__ == "__main__":
    main()

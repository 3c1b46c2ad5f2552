"""The least time a finished run's training and evaluation could take on this machine: their matmul work,
counted from the model's shapes, at the machine's matmul peak measured in the same run.

Training: each adapter's ``tokens_run`` (its training metrics) × the useful FLOP per token that
``train_flops.py`` counts (its docstring has the formula). Evaluation: per cell, the tokens the ``hf``
backend runs — choice prompts after the prefix they all share, left-padded within length-sorted batches of
``eval.batch_size``; generate prompts after their shared prefix plus the tokens generated — × 2·N_body, the
forward matmuls of the decoder's linear layers. Attention and the output head at scored positions are left
out of evaluation, and decoding one token at a time is bound by memory, not matmul: a floor, not an
estimate. Per target it prints the median cell's seconds and the GFLOP/s that cell's counted work stands
for, then the totals against the run's measured seconds. The peak is the CPU's (``train_flops.matmul_peak``):
run it on the machine, and for a run, that trained and evaluated on the CPU.

    python bench/run_floor.py runs/demo
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from train_flops import flop_per_token, matmul_peak

from crosstask.backends.hf import shared_prefix
from crosstask.errors import CrosstaskError
from crosstask.jobs import EvalJob, TrainJob
from crosstask.models import load_model, load_tokenizer
from crosstask.pipeline import current_plan, open_store
from crosstask.tokenization import encode_continuation, encode_prompt
from crosstask.training import tokenize_examples


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    """Tokens run by length-sorted batches of ``batch_size``, each left-padded to its longest row."""
    ordered = sorted(lengths)
    return sum(max(batch) * len(batch) for batch in (ordered[i : i + batch_size] for i in range(0, len(ordered),
                                                                                                batch_size)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()

    plan = current_plan(args.run_dir)
    store = open_store(args.run_dir)
    dtype = getattr(torch, plan.dtype)
    model, tokenizer = load_model(plan.model, dtype), load_tokenizer(plan.model)
    body = sum(module.in_features * module.out_features for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name.startswith("model.layers."))
    peak = statistics.median(matmul_peak(dtype) for _ in range(3))
    print(f"{plan.dtype} matmul peak {peak / 1e9:.0f} GFLOP/s (2048², median of 3); decoder linear weights "
          f"{body / 1e6:.1f} M")

    metrics = {row.name: json.loads(row.metrics) for row in store.adapters().itertuples()}
    train_flop = train_seconds = 0.0
    for job in (job for job in plan.jobs if isinstance(job, TrainJob)):
        rows = tokenize_examples(tokenizer, job.spec, list(job.examples), job.lora.max_length).rows
        done = metrics[job.adapter]
        train_flop += done["tokens_run"] * flop_per_token(model, rows, job.lora.r, job.lora.target_modules)
        train_seconds += done["seconds"]

    cells = store.cells().set_index(["model", "target"])
    items = store.items()
    per_target: dict[tuple[str, str], list[tuple[float, int]]] = {}  # (target, answers) -> (s, tokens) per cell
    for job in (job for job in plan.jobs if isinstance(job, EvalJob)):
        prompts = [encode_prompt(tokenizer, job.spec.prompt(example)) for example in job.examples]
        shared = len(shared_prefix(prompts))
        own = [len(prompt) - shared for prompt in prompts]
        for cell in job.cells:
            if job.spec.answer_type == "choice":
                tokens = padded_tokens(own, job.backend.batch_size)
            else:
                generated = items[(items["model"] == cell.model) & (items["target"] == job.target)]["generated"]
                tokens = sum(own) + sum(len(encode_continuation(tokenizer, text or "")) + 1 for text in generated)
            seconds = float(cells.at[(cell.model, job.target), "seconds"])
            per_target.setdefault((job.target, job.spec.answer_type), []).append((seconds, tokens))
    print("| target | answers | cells | tokens per cell (median) | median cell s | its GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for (target, answer_type), measured in per_target.items():
        seconds, tokens = sorted(measured)[len(measured) // 2]
        print(f"| {target} | {answer_type} | {len(measured)} | {statistics.median(t for _, t in measured):,.0f} | "
              f"{seconds:.1f} | {2 * body * tokens / seconds / 1e9:.0f} |")
    eval_flop = sum(2 * body * tokens for measured in per_target.values() for _, tokens in measured)
    eval_seconds = sum(seconds for measured in per_target.values() for seconds, _ in measured)
    print(f"training {train_flop / 1e12:.1f} TFLOP in {train_seconds:.0f} s: {train_flop / peak:.0f} s at peak")
    print(f"evaluation {eval_flop / 1e12:.1f} TFLOP in {eval_seconds:.0f} s: {eval_flop / peak:.0f} s at peak")
    print(f"together {(train_flop + eval_flop) / peak / 60:.1f} min at peak, {(train_seconds + eval_seconds) / 60:.1f} "
          "min measured")


if __name__ == "__main__":
    try:
        main()
    except CrosstaskError as error:
        raise SystemExit(f"run_floor: {error}") from None

"""crosstask's choice scoring against lm-evaluation-harness on the same items, model and adapter.

For each built-in choice task, the same eval items are written as a local JSONL task for lm-eval
(`output_type: multiple_choice`, `target_delimiter: " "`), then scored by both tools on the
embedded SmolLM2-135M-Instruct, for the base model and for a LoRA adapter that crosstask trained
(loaded by lm-eval with `peft=`). Reported: wall time of each (median of --repeats runs), their
ratio, accuracy of each, and agreement of per-item predictions and log-likelihoods.

    python bench/vs_lm_eval.py [--items 100] [--repeats 3] [--tasks sentiment_3way nli]

Needs lm-eval (`pip install -e .[bench]`; not a dependency of crosstask).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from crosstask import api
from crosstask.backends.hf import HFBackend
from crosstask.config import LoraSettings, TaskRef
from crosstask.evaluation import evaluate
from crosstask.lmeval import write_task
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks import build_examples, get_family
from crosstask.training import train_adapter


def run_lm_eval(folder: Path, name: str, model_args: str, batch_size: int) -> tuple[float, dict, list]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    started = time.perf_counter()
    output = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=[name], batch_size=batch_size,
                                     task_manager=TaskManager(include_path=str(folder)), log_samples=True, device="cpu",
                                     bootstrap_iters=0)
    seconds = time.perf_counter() - started
    samples = sorted(output["samples"][name], key=lambda sample: sample["doc_id"])
    logliks = [[float(response[0]) for response in sample["filtered_resps"]] for sample in samples]
    return seconds, output["results"][name], logliks


def run_crosstask(resolved, adapter_dir, spec, examples, batch_size, dtype) -> tuple[float, list]:
    started = time.perf_counter()  # includes loading, as lm-eval's time does
    tokenizer = load_tokenizer(resolved)
    model = load_model(resolved, getattr(torch, dtype))
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
        model.eval()
    results = evaluate(HFBackend.wrap(model, tokenizer, batch_size), spec, examples)[0]
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tasks", nargs="+", default=["sentiment_3way", "nli"])
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="float32 makes per-item log-likelihoods comparable to ~1e-4; bf16 rounding moves them")
    args = parser.parse_args()

    resolved = resolve_model("smollm2-135m-instruct")
    folder = Path(tempfile.mkdtemp(prefix="ct-vs-lmeval-"))
    rows = []
    for task in args.tasks:
        spec = get_family(task).spec
        examples = build_examples(TaskRef(task=task), "eval", args.items, seed=0)
        adapter_dir = folder / f"adapter-{task}"
        train_adapter(load_model(resolved, torch.bfloat16), load_tokenizer(resolved), spec,
                      api.sample(task, 64, seed=1), LoraSettings(lr=1e-3, min_steps=None), 0, adapter_dir)
        name = f"ct_{task}"
        write_task(folder, name, spec, examples)
        for label, adapter in (("base", None), ("adapter", adapter_dir)):
            model_args = f"pretrained={resolved.location},dtype={args.dtype}"
            if adapter is not None:
                model_args += f",peft={adapter}"
            ours_times, theirs_times = [], []
            for _ in range(args.repeats):
                seconds, ours = run_crosstask(resolved, adapter, spec, examples, args.batch_size, args.dtype)
                ours_times.append(seconds)
                seconds, metrics, theirs = run_lm_eval(folder, name, model_args, args.batch_size)
                theirs_times.append(seconds)
            agree = sum(spec.labels.index(r.prediction) == max(range(len(t)), key=t.__getitem__)
                        for r, t in zip(ours, theirs)) / len(ours)
            max_gap = max(abs(r.logliks[label_] - t[i]) for r, t in zip(ours, theirs)
                          for i, label_ in enumerate(spec.labels))
            rows.append({
                "task": task, "model": label, "dtype": args.dtype, "items": len(examples),
                "crosstask_s": statistics.median(ours_times), "lm_eval_s": statistics.median(theirs_times),
                "speedup": statistics.median(theirs_times) / statistics.median(ours_times),
                "crosstask_acc": sum(r.correct for r in ours) / len(ours), "lm_eval_acc": metrics["acc,none"],
                "crosstask_acc_norm": sum(bool(r.correct_norm) for r in ours) / len(ours),
                "lm_eval_acc_norm": metrics["acc_norm,none"],
                "prediction_agreement": agree, "max_loglik_gap": max_gap,
            })
            print(json.dumps(rows[-1]), flush=True)
    print("\n| task | model | items | crosstask s | lm-eval s | speed-up | acc (ct / lm-eval) | "
          "acc_norm (ct / lm-eval) | same prediction | max log-lik gap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['task']} | {row['model']} | {row['items']} | {row['crosstask_s']:.1f} | {row['lm_eval_s']:.1f} "
              f"| {row['speedup']:.2f}× | {row['crosstask_acc']:.2f} / {row['lm_eval_acc']:.2f} "
              f"| {row['crosstask_acc_norm']:.2f} / {row['lm_eval_acc_norm']:.2f} "
              f"| {row['prediction_agreement']:.0%} | {row['max_loglik_gap']:.1e} |")


if __name__ == "__main__":
    main()

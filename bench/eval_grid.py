"""Evaluating a grid (the base model and I adapters on N targets): crosstask against the lm-eval loop.

The loop a user would write with lm-evaluation-harness runs ``lm_eval`` once per model (``peft=`` for
each adapter) on every target, each target written as an lm-eval task by :mod:`crosstask.lmeval` with
the exact prompts and items crosstask scores. crosstask evaluates the same grid through a backend
(``hf``, and ``vllm`` where vLLM is installed): the base model loaded once, adapters switched on it.
Same items, same dtype; the tools run interleaved, each timed from model loading to the last item,
and the medians of ``--repeats`` runs are reported with their ratio, every cell's accuracy from both
tools side by side, and how many predictions agree.

    python bench/eval_grid.py [--adapters 3] [--targets sentiment_3way nli rating_5star arithmetic_large]
                              [--items 100] [--repeats 3] [--backends hf vllm] [--no-lm-eval]

Needs lm-eval (``pip install -e .[bench]``; not a dependency of crosstask). The adapters are trained first by
crosstask on their own tasks (64 items, lr 1e-3: enough to move them off the base model; their
training time is not part of the figures). lm-eval runs in this process (no import cost counted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from crosstask.backends import backend_class
from crosstask.config import LoraSettings, TaskRef
from crosstask.devices import planned_dtype
from crosstask.evaluation import evaluate
from crosstask.lmeval import write_task
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks import build_examples, get_family
from crosstask.training import train_adapter

ADAPTER_TASKS = ["sentiment_3way", "nli", "arithmetic_large", "paraphrase", "sentiment_binary", "toxicity"]


def train_adapters(resolved, dtype: str, count: int, folder: Path) -> dict[str, Path]:
    tokenizer, adapters = load_tokenizer(resolved), {}
    for task in ADAPTER_TASKS[:count]:
        spec = get_family(task).spec
        out = folder / f"adapter-{task}"
        train_adapter(load_model(resolved, dtype), tokenizer, spec, build_examples(TaskRef(task=task), "train", 64, 1),
                      LoraSettings(lr=1e-3, min_steps=None), 0, out)
        adapters[task] = out
    return adapters


def run_crosstask(backend_name: str, resolved, dtype: str, adapters: dict, grid: dict, batch_size: int):
    """Seconds from loading the model to the last item, and {(model, target): per-item results}."""
    started = time.perf_counter()
    backend = backend_class(backend_name)(resolved, dtype=dtype, device="auto", batch_size=batch_size,
                                          **backend_class(backend_name).plan_options({}, [8] * len(adapters)))
    for name, path in adapters.items():
        backend.load_adapter(name, str(path))
    models = [None, *adapters]
    results = {}
    for target, (spec, examples) in grid.items():
        for model, items in zip(models, evaluate(backend, spec, examples, models)):
            results[(model or "base", target)] = items
    seconds = time.perf_counter() - started
    backend.close()
    return seconds, results


def run_lm_eval(folder: Path, resolved, dtype: str, adapters: dict, grid: dict, batch_size: int):
    import lm_eval
    from lm_eval.tasks import TaskManager

    started = time.perf_counter()
    results = {}
    for model, adapter in [("base", None), *adapters.items()]:
        model_args = f"pretrained={resolved.location},dtype={dtype}" + (f",peft={adapter}" if adapter else "")
        output = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=[f"ct_{t}" for t in grid],
                                         batch_size=batch_size, task_manager=TaskManager(include_path=str(folder)),
                                         log_samples=True, device="cpu", bootstrap_iters=0)
        for target, (spec, _) in grid.items():
            samples = sorted(output["samples"][f"ct_{target}"], key=lambda sample: sample["doc_id"])
            if spec.answer_type == "choice":
                picked = [max(range(len(s["filtered_resps"])), key=lambda i: float(s["filtered_resps"][i][0]))
                          for s in samples]
                results[(model, target)] = [spec.labels[i] for i in picked], [bool(s["acc"]) for s in samples]
            else:
                results[(model, target)] = ([s["filtered_resps"][0] for s in samples],
                                            [bool(s["exact_match"]) for s in samples])
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapters", type=int, default=3)
    parser.add_argument("--targets", nargs="+", default=["sentiment_3way", "nli", "rating_5star", "arithmetic_large"])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backends", nargs="+", default=["hf"])
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--no-lm-eval", action="store_true", help="time crosstask's backends only")
    args = parser.parse_args()

    resolved = resolve_model("smollm2-135m-instruct")
    dtype = planned_dtype(args.precision, "cpu")
    folder = Path(tempfile.mkdtemp(prefix="ct-eval-grid-"))
    adapters = train_adapters(resolved, dtype, args.adapters, folder)
    grid = {}
    for target in args.targets:
        spec = get_family(target).spec
        grid[target] = spec, build_examples(TaskRef(task=target), "eval", args.items, seed=0)
        write_task(folder, f"ct_{target}", *grid[target])
    tools = [f"crosstask-{name}" for name in args.backends] + ([] if args.no_lm_eval else ["lm-eval"])
    times: dict[str, list[float]] = {tool: [] for tool in tools}
    scored: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for tool in tools:  # interleaved: every repeat runs every tool once
            if tool == "lm-eval":
                seconds, scored[tool] = run_lm_eval(folder, resolved, dtype, adapters, grid, args.batch_size)
            else:
                seconds, results = run_crosstask(tool.removeprefix("crosstask-"), resolved, dtype, adapters, grid,
                                                 args.batch_size)
                scored[tool] = {cell: ([r.prediction for r in items], [r.correct for r in items])
                                for cell, items in results.items()}
            times[tool].append(seconds)
            print(json.dumps({"repeat": repeat, "tool": tool, "seconds": round(seconds, 2)}), flush=True)

    cells = len(grid) * (1 + len(adapters))
    print(f"\n{1 + len(adapters)} models x {len(grid)} targets x {args.items} items, {dtype}, medians of "
          f"{args.repeats}:\n")
    reference = tools[-1]
    print("| tool | seconds | per cell | speed-up vs " + reference + " |")
    print("|---|---|---|---|")
    for tool in tools:
        median = statistics.median(times[tool])
        print(f"| {tool} | {median:.1f} | {median / cells:.2f} | "
              f"{statistics.median(times[reference]) / median:.2f}× |")
    print("\n| model | target | " + " | ".join(f"acc {tool}" for tool in tools) + " | same predictions |")
    print("|---|---|" + "---|" * len(tools) + "---|")
    for model, target in scored[tools[0]]:
        accuracies = [sum(scored[tool][(model, target)][1]) / args.items for tool in tools]
        predictions = [scored[tool][(model, target)][0] for tool in tools]
        same = sum(all(str(p[i]) == str(predictions[0][i]) for p in predictions) for i in range(args.items))
        print(f"| {model} | {target} | " + " | ".join(f"{a:.2f}" for a in accuracies) + f" | {same}/{args.items} |")


if __name__ == "__main__":
    main()

"""GPU acceptance: a tiny grid on the CUDA device against the CPU, one line per check.

On a machine with a CUDA GPU it runs a tiny experiment (the embedded SmolLM2-135M-Instruct, one
source, three targets, 24 items each) twice, on the CPU and on the GPU, and checks:

- the GPU run trains and evaluates on the GPU (the store records the device of every cell) and its
  matrix is the CPU's within 0.10 per cell (the adapters were trained on different devices);
- each backend on the GPU (``hf``; ``vllm`` when it is installed), in fp32, scores the same items as
  the ``hf`` backend on the CPU with the same adapter: same predictions on at least 95 % of the items
  of each cell, choice log-likelihoods within 0.05, and the same generations on at least 90 %;
- ``hf`` in bf16 on the GPU (where the GPU supports it) still agrees on at least 85 % of the predictions;
- head activation patterns of the base model on the GPU equal the CPU's (correlation above 0.999).

Each check prints PASS or FAIL with its figures; the exit status is 1 if any failed. Without a CUDA
device it prints why it skipped and exits 0, so it can run anywhere:

    python bench/gpu_check.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from pathlib import Path

import numpy as np

SOURCE = "sentiment_3way"
TARGETS = ["sentiment_3way", "nli", "arithmetic_large"]
ITEMS = 24


def experiment(device: str) -> dict:
    return {
        "name": f"gpu-check-{device.replace(':', '')}", "base_model": "smollm2-135m-instruct",
        "sources": [SOURCE], "targets": TARGETS[:2] + [{"task": TARGETS[2], "fewshot": 1}],
        "train_examples": 48, "eval_examples": ITEMS, "seed": 0, "precision": "fp32", "device": device,
        "lora": {"epochs": 1, "lr": 1.0e-3, "batch_size": 8, "min_steps": None}, "eval": {"batch_size": 8},
    }


class Checks:
    def __init__(self):
        self.failed = 0

    def __call__(self, passed: bool, name: str, details: str) -> None:
        self.failed += not passed
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {details}", flush=True)


def grid(run_dir: Path):
    """The run's targets as (spec, examples), and its adapter's name and folder."""
    from crosstask.analysis.base import RunData
    from crosstask.workspace import adapter_folder

    run = RunData(run_dir)
    targets = {target: (run.evaluated_spec(target), run.eval_examples(target)) for target in run.targets}
    return targets, SOURCE, adapter_folder(run_dir, SOURCE)


def evaluate_grid(backend, targets: dict, adapter: str, folder: Path) -> dict:
    from crosstask.evaluation import evaluate

    backend.load_adapter(adapter, str(folder))
    results = {}
    for target, (spec, examples) in targets.items():
        for model, items in zip(["base", adapter], evaluate(backend, spec, examples, [None, adapter])):
            results[(model, target)] = (spec, items)
    backend.close()
    return results


def compare(check: Checks, name: str, ours: dict, reference: dict, min_same: float) -> None:
    for cell, (spec, items) in ours.items():
        expected = reference[cell][1]
        same = sum(a.prediction == b.prediction for a, b in zip(items, expected)) / len(items)
        if spec.answer_type == "choice":
            gap = max(abs(a.logliks[label] - b.logliks[label])
                      for a, b in zip(items, expected) for label in spec.labels)
            check(same >= min_same and (min_same < 0.95 or gap < 0.05), f"{name} {cell[1]}/{cell[0]}",
                  f"{same:.0%} same predictions, max |d log-lik| {gap:.1e}")
        else:
            texts = sum(a.generated == b.generated for a, b in zip(items, expected)) / len(items)
            check(same >= min_same and texts >= min_same - 0.05, f"{name} {cell[1]}/{cell[0]}",
                  f"{same:.0%} same predictions, {texts:.0%} same generations")


def release_gpu() -> None:
    import torch

    gc.collect()
    torch.cuda.empty_cache()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="keep the two runs in this folder (default: a temporary one)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU build)"
        print(f"SKIP  gpu_check: torch {torch.__version__} sees no CUDA device (its CUDA: {built}); nothing run")
        return 0

    from crosstask import api
    from crosstask.backends import backend_class
    from crosstask.backends.vllm import installed_version
    from crosstask.heads.run import compute_run_patterns
    from crosstask.models import resolve_model

    folder = args.keep or Path(tempfile.mkdtemp(prefix="ct-gpu-check-"))
    check = Checks()
    print(f"gpu_check on {torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})")

    runs = {device: folder / device.replace(":", "") for device in ("cpu", "cuda")}
    for device, out in runs.items():
        api.run(experiment(device), out_dir=out, progress=False)
    cells = api.load_cells(runs["cuda"])
    devices = sorted(set(cells["device"]))
    check(all(d.startswith("cuda") for d in devices), "run on cuda: cells evaluated on", ", ".join(devices))
    gap = (api.load_matrix(runs["cuda"]) - api.load_matrix(runs["cpu"])).abs().max().max()
    check(gap <= 0.10, "run on cuda: matrix against the CPU run's", f"max |d accuracy| {gap:.2f}")

    targets, adapter, adapter_dir = grid(runs["cpu"])
    resolved = resolve_model("smollm2-135m-instruct")
    reference = evaluate_grid(backend_class("hf")(resolved, dtype="float32", device="cpu", batch_size=8),
                              targets, adapter, adapter_dir)
    names = ["hf"] + (["vllm"] if installed_version() else [])
    if "vllm" not in names:
        print("SKIP  vllm backend: vLLM is not installed (pip install 'crosstask[vllm]')")
    for name in names:
        cls = backend_class(name)
        options = cls.plan_options({"gpu_memory_utilization": 0.5} if name == "vllm" else {}, [8])
        ours = evaluate_grid(cls(resolved, dtype="float32", device="cuda", batch_size=8, **options),
                             targets, adapter, adapter_dir)
        release_gpu()
        compare(check, f"{name} cuda fp32 vs hf cpu fp32", ours, reference, min_same=0.95)
    if torch.cuda.is_bf16_supported():
        ours = evaluate_grid(backend_class("hf")(resolved, dtype="bfloat16", device="cuda", batch_size=8),
                             targets, adapter, adapter_dir)
        release_gpu()
        compare(check, "hf cuda bf16 vs hf cpu fp32", ours, reference, min_same=0.85)

    patterns = {device: compute_run_patterns(run, ["base"], TARGETS[:1], n_items=8) for device, run in runs.items()}
    cpu, gpu = (np.load(patterns[device]["npy"].iloc[0]).ravel() for device in ("cpu", "cuda"))
    correlation = float(np.corrcoef(cpu, gpu)[0, 1])
    check(correlation > 0.999, "head patterns on cuda vs cpu (base model)", f"correlation {correlation:.5f}")
    print(f"{check.failed} check(s) failed" if check.failed else "all checks passed", f"(runs in {folder})")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())

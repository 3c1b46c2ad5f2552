"""crosstask's LoRA training against TRL's SFTTrainer on the same examples, model and settings.

Both train one LoRA adapter (r=8, alpha 16, q/k/v/o) on the same prompt/answer pairs of a built-in
task with the same optimisation (epochs, lr, cosine schedule, batch size, seed), starting from the
embedded SmolLM2-135M-Instruct loaded in the dtype crosstask picks for this CPU (``--dtype auto``: bf16
where the CPU multiplies bf16 natively, else fp32), with the loss on the answer tokens only (TRL: a
prompt/completion dataset, whose default is completion-only loss). TRL runs with its own defaults
otherwise (gradient checkpointing, bf16 autocast, no packing), except that in fp32 its bf16 autocast is
switched off: a CPU without bf16 matmuls runs it many times slower. Reported: training wall time and
tokens/s of each (median of --repeats runs), their ratio, and each adapter's accuracy on the task's
eval items, scored by the same code, to show the two adapters learned alike.

    python bench/training_vs_trl.py [--tasks sentiment_3way nli] [--repeats 3] [--train 200] [--items 100]
                                    [--dtype auto|bf16|fp32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from crosstask.backends.hf import HFBackend
from crosstask.config import LoraSettings, TaskRef
from crosstask.devices import planned_dtype
from crosstask.evaluation import evaluate
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks import build_examples, get_family
from crosstask.training import tokenize_examples, train_adapter


def train_with_trl(resolved, tokenizer, spec, examples, settings: LoraSettings, seed: int, out_dir: Path,
                   dtype: torch.dtype):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    model = load_model(resolved, dtype)
    dataset = Dataset.from_list([{"prompt": spec.prompt(example), "completion": spec.completion(example)}
                                 for example in examples])
    config = SFTConfig(output_dir=str(out_dir / "trainer"), per_device_train_batch_size=settings.batch_size,
                       num_train_epochs=settings.epochs, learning_rate=settings.lr,
                       lr_scheduler_type=settings.scheduler, seed=seed, data_seed=seed, max_length=settings.max_length,
                       save_strategy="no", report_to=[], disable_tqdm=True, logging_steps=1000, use_cpu=True,
                       bf16=dtype == torch.bfloat16)
    lora = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=list(settings.target_modules), task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.eval()
    return trainer.model, seconds


def train_with_crosstask(resolved, tokenizer, spec, examples, settings: LoraSettings, seed: int, out_dir: Path,
                         dtype: torch.dtype):
    model = load_model(resolved, dtype)
    metrics = train_adapter(model, tokenizer, spec, examples, settings, seed, out_dir)
    model.eval()
    return model, metrics["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sentiment_3way", "nli"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto")
    args = parser.parse_args()
    dtype_name = planned_dtype(args.dtype, "cpu")
    dtype = getattr(torch, dtype_name)
    print(f"{dtype_name}, {torch.get_num_threads()} threads")

    resolved = resolve_model("smollm2-135m-instruct")
    tokenizer = load_tokenizer(resolved)
    settings = LoraSettings(lr=args.lr, epochs=args.epochs, batch_size=8, min_steps=None)
    print("| task | train items | tokens | crosstask s | TRL s | speed-up | crosstask tokens/s | TRL tokens/s "
          "| acc base | acc crosstask | acc TRL |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for task in args.tasks:
        spec = get_family(task).spec
        train = build_examples(TaskRef(task=task), "train", args.train, 0)
        held_out = frozenset(example.input for example in train)
        evaluated = build_examples(TaskRef(task=task), "eval", args.items, 0, held_out)
        rows = tokenize_examples(tokenizer, spec, train, settings.max_length).rows
        tokens = sum(len(row["input_ids"]) for row in rows) * settings.epochs
        base = load_model(resolved, dtype)
        scored = evaluate(HFBackend.wrap(base, tokenizer, 32), spec, evaluated)[0]
        base_acc = sum(r.correct for r in scored) / len(evaluated)
        times = {"crosstask": [], "trl": []}
        accuracy = {}
        for _ in range(args.repeats):
            for tool, trainer in (("crosstask", train_with_crosstask), ("trl", train_with_trl)):
                with tempfile.TemporaryDirectory() as scratch:
                    model, seconds = trainer(resolved, tokenizer, spec, train, settings, 0, Path(scratch), dtype)
                times[tool].append(seconds)
                if tool not in accuracy:
                    results = evaluate(HFBackend.wrap(model, tokenizer, 32), spec, evaluated)[0]
                    accuracy[tool] = sum(r.correct for r in results) / len(results)
        ours, theirs = statistics.median(times["crosstask"]), statistics.median(times["trl"])
        print(f"| {task} | {len(train)} | {tokens:.0f} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.2f}× "
              f"| {tokens / ours:.0f} | {tokens / theirs:.0f} | {base_acc:.2f} | {accuracy['crosstask']:.2f} "
              f"| {accuracy['trl']:.2f} |", flush=True)


if __name__ == "__main__":
    main()

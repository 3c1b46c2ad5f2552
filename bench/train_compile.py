"""Does torch.compile pay for LoRA training on this machine? Compile time counted.

Trains one fresh adapter per mode on a demo source (experiments/demo.yaml's settings: its examples,
batch size, LoRA shape, rate) with the loop crosstask's training runs under the Trainer: batches of
similar lengths packed into rows that share their instruction, the answer-only loss
(``crosstask.training.answer_loss``), eager attention on CPU, AdamW. ``plain`` runs the PEFT model as
it is; ``compiled`` wraps it in ``torch.compile(dynamic=True)`` (inductor; batch shapes vary). Both
start from the same seed and see the same batches. Reported per mode: the first epoch (for ``compiled``
it includes compiling) and the median of the later ones, and the last loss of each epoch (the two
modes should agree closely).

Inductor keeps compiled kernels on disk (``TORCHINDUCTOR_CACHE_DIR``, by default under /tmp); the
report says whether that cache was empty, since a second process compiles faster.

    python bench/train_compile.py [--source sentiment_binary] [--epochs 3] [--dtype auto|bf16|fp32]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
from torch._inductor.runtime.cache_dir_utils import cache_dir
from train_flops import DEMO  # bench/ is the script's own folder, so on sys.path

from crosstask.config import load_experiment
from crosstask.devices import planned_dtype
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks import build_examples, get_family
from crosstask.training import answer_loss, eager_attention_on_cpu, new_adapter, pack_batch, tokenize_examples


def epochs_of_training(model, batches: list[dict], epochs: int, lr: float) -> list[tuple[float, float]]:
    """(seconds, last loss) of each epoch over ``batches``."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    timings = []
    for _ in range(epochs):
        started = time.perf_counter()
        for batch in batches:
            loss = answer_loss(model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        timings.append((time.perf_counter() - started, loss.item()))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="sentiment_binary")
    parser.add_argument("--epochs", type=int, default=3, help="at least 2: the first one compiles")
    parser.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto")
    args = parser.parse_args()
    experiment = load_experiment(DEMO)
    sources = {ref.label: ref for ref in experiment.source_refs}
    if args.source not in sources:
        parser.error(f"--source {args.source!r} is not a demo source; choose from {', '.join(sources)}")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch compiles; the later ones are compared)")

    ref = sources[args.source]
    lora = experiment.lora_for(ref)
    dtype_name = planned_dtype(args.dtype, "cpu")
    resolved = resolve_model(experiment.base_model)
    tokenizer = load_tokenizer(resolved)
    examples = build_examples(ref, "train", ref.examples or experiment.train_examples, experiment.seed)
    rows = tokenize_examples(tokenizer, get_family(ref.task).spec, examples, lora.max_length).rows
    rows.sort(key=lambda row: len(row["input_ids"]))
    batches = [pack_batch(rows[start:start + lora.batch_size], tokenizer.pad_token_id)
               for start in range(0, len(rows), lora.batch_size)]
    random.Random(experiment.seed).shuffle(batches)
    tokens = sum(len(row["input_ids"]) for row in rows)
    cache = cache_dir()
    cold = not any(Path(cache).glob("*"))
    print(f"{args.source}: {len(rows)} examples, {len(batches)} batches, {tokens:,} tokens an epoch; {dtype_name}, "
          f"{torch.get_num_threads()} threads; inductor cache {cache} {'empty' if cold else 'already filled'}")
    print("| mode | first epoch s | later epochs s (median) | tokens/s later | last loss per epoch |")
    print("|---|---|---|---|---|")
    for mode in ("plain", "compiled"):
        model = new_adapter(load_model(resolved, getattr(torch, dtype_name)), lora, experiment.seed)
        with eager_attention_on_cpu(model):
            runnable = torch.compile(model, dynamic=True) if mode == "compiled" else model
            timings = epochs_of_training(runnable, batches, args.epochs, lora.lr)
        later = statistics.median(seconds for seconds, _ in timings[1:])
        losses = ", ".join(f"{loss:.4f}" for _, loss in timings)
        print(f"| {mode} | {timings[0][0]:.1f} | {later:.1f} | {tokens / later:.0f} | {losses} |", flush=True)


if __name__ == "__main__":
    main()

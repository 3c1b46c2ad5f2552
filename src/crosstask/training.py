"""Train one LoRA adapter on one source with PEFT and the transformers Trainer; loss on the answer only.

We use the Trainer rather than TRL's SFTTrainer so that a training example is tokenized exactly as
evaluation tokenizes it (prompt encoded alone, then ``" " + target`` encoded alone, then end of
sequence): the answer-only loss mask then covers precisely the tokens that evaluation scores. TRL's
CPU defaults (gradient checkpointing on) were also measured slower here.

A step's examples run packed end to end into a few rows (:func:`pack_batch`): no padding, and the
instruction every example starts with runs once per row, as TRL's ``padding_free`` packs without the
shared prefix; a block mask keeps each example to its own tokens, so the loss is the padded batch's.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import LoraSettings
from .models import lr_for_width
from .tasks.base import Example, TaskSpec
from .tokenization import encode_continuation, encode_prompt

IGNORE_INDEX = -100
# The Trainer itself calls this deprecated transformers property; the warning is not the user's to act on.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


MIN_PROMPT_TAIL = 16  # prompt tokens kept before the answer when a long example is cut; fewer: the example is dropped


@dataclass
class Tokenized:
    """Training rows, and how many examples did not fit ``max_length``: ``truncated`` had their prompt
    shortened, ``dropped`` could not keep even a short prompt before their whole answer."""

    rows: list[dict]
    truncated: int = 0
    dropped: int = 0


def tokenize_examples(tokenizer, spec: TaskSpec, examples: list[Example], max_length: int) -> Tokenized:
    """Token ids with labels masked on the prompt. The answer is never cut: a sequence longer than
    ``max_length`` loses the start of its input (the instruction and the input's end, which leads into
    the answer, stay), and an example whose answer leaves fewer than ``MIN_PROMPT_TAIL`` prompt tokens
    besides the instruction is dropped. (Cutting the end of the sequence, as plain truncation does,
    removes the ``#### n`` line of a long GSM8K solution: the one thing the task scores.)"""
    instruction = encode_prompt(tokenizer, spec.instruction)
    tokenized = Tokenized([])
    for example in examples:
        prompt = encode_prompt(tokenizer, spec.prompt(example))
        answer = encode_continuation(tokenizer, spec.completion(example)) + [tokenizer.eos_token_id]
        room = max_length - len(answer)
        if len(prompt) > room:
            head = _common_prefix(prompt, instruction)
            if room - head < MIN_PROMPT_TAIL:
                tokenized.dropped += 1
                continue
            prompt = prompt[:head] + prompt[len(prompt) - (room - head):]
            tokenized.truncated += 1
        tokenized.rows.append({"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer})
    return tokenized


def _common_prefix(tokens: list[int], prefix: list[int]) -> int:
    """How many leading tokens ``tokens`` shares with ``prefix`` (the instruction, special tokens included)."""
    length = 0
    for token, other in zip(tokens, prefix):
        if token != other:
            break
        length += 1
    return length


# Tokens per packed training row (see pack_batch). Measured on the demo's sources (SmolLM2-135M, CPU,
# fp32, eager attention): rows of up to 192 tokens ran a step's forward and backward 1.1-1.3x faster
# than one padded row per example; one row of 340-590 tokens ran slower, its attention over the whole
# row growing with the square of its length.
PACKED_ROW_TOKENS = 192


def pad_batch(rows: list[dict], pad_id: int, device=None) -> dict[str, torch.Tensor]:
    """Right-padded ids, labels and mask on ``device`` (default the CPU, where the Trainer's collator
    builds batches before moving them to the model's device)."""
    width = max(len(row["input_ids"]) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for index, row in enumerate(rows):
        length = len(row["input_ids"])
        ids[index, :length] = torch.tensor(row["input_ids"], device=device)
        labels[index, :length] = torch.tensor(row["labels"], device=device)
        mask[index, :length] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def pack_batch(rows: list[dict], pad_id: int, share_prefix: bool = True, row_tokens: int = PACKED_ROW_TOKENS,
               device=None) -> dict[str, torch.Tensor]:
    """One training step's examples packed end to end into a few rows, without padding between them.

    The tokens every example starts with (the task's instruction) are run once per packed row instead
    of once per example, when ``share_prefix``: with a causal mask they do not depend on what follows.
    Examples are spread over as few rows as keep each under ``row_tokens`` (an example longer than that
    gets a row of its own); rows are then right-padded to the widest. Each token keeps the position it
    has in its own example, and ``segments`` says what it may attend to (:func:`packed_attention_mask`):
    0 the row's shared prefix, k > 0 the k-th example of the row, -1 padding. ``targets`` holds, at each
    position, the answer token it predicts, else ``IGNORE_INDEX``.
    """
    prefix = _prefix_before_answers(rows) if share_prefix else 0
    first = rows[0]["input_ids"][:prefix]
    packed = []
    for group in _balanced_groups([len(row["input_ids"]) - prefix for row in rows], row_tokens - prefix):
        ids, positions, segments, targets = list(first), list(range(prefix)), [0] * prefix, [IGNORE_INDEX] * prefix
        for segment, index in enumerate(group, start=1):
            row = rows[index]
            length = len(row["input_ids"])
            ids += row["input_ids"][prefix:]
            positions += range(prefix, length)
            segments += [segment] * (length - prefix)
            targets += row["labels"][prefix + 1 :] + [IGNORE_INDEX]
        packed.append((ids, positions, segments, targets))
    width = max(len(ids) for ids, *_ in packed)

    def column(field: int, fill: int) -> torch.Tensor:
        return torch.tensor([row[field] + [fill] * (width - len(row[field])) for row in packed], device=device)

    return {"input_ids": column(0, pad_id), "position_ids": column(1, 0), "segments": column(2, -1),
            "targets": column(3, IGNORE_INDEX)}


def attention_window(model) -> int | None:
    """How many tokens back the model's most restricted attention layer can see (a sliding window or an
    attention chunk; the smallest, whichever layers use it), or None when every layer sees everything."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config()
    windows = [getattr(config, name, None) for name in ("sliding_window", "attention_chunk_size")]
    return min((window for window in windows if window), default=None)


def training_batch(rows: list[dict], pad_id: int, window: int | None, share_prefix: bool) -> dict[str, torch.Tensor]:
    """A training step's batch for :func:`answer_loss`: packed (:func:`pack_batch`) when every example fits
    in the model's attention ``window`` (:func:`attention_window`), else padded (:func:`pad_batch`).

    A packed batch's block mask replaces the model's own masks, sliding windows included, which differ
    from full attention only past the window; padded rows keep the model's masks.
    """
    if window is not None and max(len(row["input_ids"]) for row in rows) > window:
        return pad_batch(rows, pad_id)
    return pack_batch(rows, pad_id, share_prefix=share_prefix)


def _prefix_before_answers(rows: list[dict]) -> int:
    """How many leading tokens all rows share, stopping before any position that predicts an answer
    token (position t predicts token t + 1), so that every prediction is made in a row's own part."""
    first_answers = [next(t for t, label in enumerate(row["labels"]) if label != IGNORE_INDEX) for row in rows]
    shared = [_common_prefix(row["input_ids"], rows[0]["input_ids"]) for row in rows]
    return min(*shared, min(first_answers) - 1)


def _balanced_groups(lengths: list[int], room: int) -> list[list[int]]:
    """Indices split into as few groups as keep every group's total length within ``room`` (or a single
    index per group, whatever its length), the longest first into the emptiest group; indices keep
    their order within a group."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    for count in range(1, len(lengths)):
        groups, totals = [[] for _ in range(count)], [0] * count
        for index in order:
            emptiest = totals.index(min(totals))
            groups[emptiest].append(index)
            totals[emptiest] += lengths[index]
        if max(totals) <= room:
            return [sorted(group) for group in groups]
    return [[index] for index in range(len(lengths))]


def packed_attention_mask(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive ``(R, 1, W, W)`` attention mask of a packed batch: each token sees the earlier
    tokens of its own example and of its row's shared prefix; padding sees only padding."""
    width = segments.shape[1]
    causal = torch.ones((width, width), dtype=torch.bool, device=segments.device).tril()
    query, key = segments.unsqueeze(2), segments.unsqueeze(1)
    visible = causal & ((key == query) | (key == 0))
    mask = torch.zeros(visible.shape, dtype=dtype, device=segments.device)
    return mask.masked_fill(~visible, torch.finfo(dtype).min).unsqueeze(1)


def logits_at(model, inputs: dict, keep: torch.Tensor) -> torch.Tensor:
    """``(N, V)`` logits at the ``N`` positions where the boolean ``(B, T)`` mask ``keep`` is true.

    Only those positions go through the output head (49k wide for SmolLM2), via ``logits_to_keep``: a
    short answer after a long prompt needs a handful of the head's rows instead of one per prompt
    token. transformers from 5.2x takes the boolean mask itself; older 5.x releases (the ones vLLM
    pins) take positions shared by the batch, so there the head runs at every position where any row
    keeps one, and the mask picks each row's own.
    """
    if _HEAD_TAKES_A_MASK:
        logits = model(**inputs, logits_to_keep=keep).logits
    else:
        positions = keep.any(dim=0).nonzero().squeeze(1)
        logits = model(**inputs, logits_to_keep=positions).logits[keep[:, positions]]
    return logits.reshape(int(keep.sum()), -1)


def answer_token_logits(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a padded batch (:func:`pad_batch`): logits at the positions that predict an answer token,
    flattened to ``(N, V)``, with their ``(N,)`` target ids and the ``(N,)`` batch row each came from."""
    labels = batch["labels"]
    predicts_answer = torch.zeros_like(labels, dtype=torch.bool)
    predicts_answer[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][predicts_answer[:, :-1]]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
    return logits_at(model, inputs, predicts_answer), targets, predicts_answer.nonzero()[:, 0]


def _head_takes_a_mask() -> bool:
    from transformers import modeling_utils

    return hasattr(modeling_utils, "slice_logits_to_keep")


_HEAD_TAKES_A_MASK = _head_takes_a_mask()


def answer_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over every answer token of a batch from :func:`training_batch`: what the
    causal-LM loss on the answer tokens computes, without the output head at prompt positions, and when
    packed without padding and without running the shared prefix once per example."""
    if "segments" not in batch:
        logits, targets, _ = answer_token_logits(model, batch)
        return F.cross_entropy(logits.float(), targets)
    dtype = model.get_input_embeddings().weight.dtype
    keep = batch["targets"] != IGNORE_INDEX
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False,
              "attention_mask": packed_attention_mask(batch["segments"], dtype)}
    return F.cross_entropy(logits_at(model, inputs, keep).float(), batch["targets"][keep])


@contextmanager
def eager_attention_on_cpu(model) -> Iterator[None]:
    """Train with the plain matmul-softmax attention on CPU; the model's own choice is restored after.

    Measured here on SmolLM2-135M in bf16 (LoRA q/k/v/o, 8 x 66-token batches): the backward pass of
    torch's CPU flash attention took a third of each step, and "eager" attention trained at 375
    tokens/s against 300 for "sdpa". For generation "sdpa" stays faster (8 s against 10 s), so
    evaluation keeps it; on GPU nothing changes.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    previous = base.config._attn_implementation
    switch = base.device.type == "cpu" and previous != "eager"
    if switch:
        base.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            base.set_attn_implementation(previous)


def count_steps(n_examples: int, settings: LoraSettings) -> int:
    """Optimizer steps: ``epochs`` over the examples, and at least ``min_steps``."""
    steps = max(1, math.ceil(math.ceil(n_examples / settings.batch_size) * settings.epochs))
    return max(steps, settings.min_steps or 0)


def new_adapter(model, settings: LoraSettings, seed: int):
    """``model`` wrapped in a fresh LoRA adapter (a ``PeftModel``), initialised from ``seed``.

    :func:`train_adapter` makes its adapters with this; call it directly to keep a handle on the
    ``PeftModel`` that training will update in place.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    set_seed(seed)
    lora = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=list(settings.target_modules), task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as error:
        raise ValueError(f"LoRA target_modules {settings.target_modules}: {str(error).splitlines()[0]}") from None


def train_adapter(model, tokenizer, spec: TaskSpec, examples: list[Example], settings: LoraSettings, seed: int,
                  out_dir: Path, on_step: Callable[[int], None] = lambda step: None,
                  callbacks: Sequence = ()) -> dict:
    """Wrap ``model`` (a freshly loaded base) in a LoRA adapter, train it, and save it in PEFT format.

    A ``model`` that is already a ``PeftModel`` keeps its active adapter, which trains further (e.g. a
    warm-up adapter continued on scarce data); ``settings`` then only sets the optimisation, not the
    adapter's shape. ``callbacks`` are extra ``transformers.TrainerCallback`` objects (e.g. snapshots
    of head patterns during training).
    """
    from peft import PeftModel
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed

    set_seed(seed)
    if settings.lr == "auto":
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        settings = settings.model_copy(update={"lr": lr_for_width(base.config.hidden_size)})
    tokenized = tokenize_examples(tokenizer, spec, examples, settings.max_length)
    rows = tokenized.rows
    if not rows:
        raise ValueError(f"{spec.name}: no training example fits lora.max_length {settings.max_length} with its "
                         "whole answer; raise max_length")
    peft_model = model if isinstance(model, PeftModel) else new_adapter(model, settings, seed)
    steps = count_steps(len(rows), settings)
    per_epoch = math.ceil(len(rows) / settings.batch_size)
    arguments = TrainingArguments(
        output_dir=str(out_dir / "trainer"), per_device_train_batch_size=settings.batch_size,
        num_train_epochs=settings.epochs, learning_rate=settings.lr, lr_scheduler_type=settings.scheduler,
        # min_steps raises the step count past `epochs`; the Trainer then repeats the data to reach it.
        max_steps=steps if steps > math.ceil(per_epoch * settings.epochs) else -1,
        warmup_steps=round(settings.warmup_ratio * steps) if settings.warmup_steps is None else settings.warmup_steps,
        weight_decay=settings.weight_decay,
        # The precision is the base weights' own: bf16 weights with fp32 LoRA parameters (PEFT keeps
        # adapters in fp32) ran 251 tokens/s here, against 212 for fp32 weights under bf16 autocast.
        bf16=False, seed=seed, data_seed=seed, save_strategy="no", report_to=[], disable_tqdm=True,
        logging_steps=max(1, steps // 20), train_sampling_strategy="group_by_length", remove_unused_columns=False,
        use_cpu=peft_model.device.type == "cpu", dataloader_num_workers=0,
    )

    class AnswerOnlyTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = answer_loss(model, inputs)
            return (loss, None) if return_outputs else loss

    class StepReporter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            on_step(state.global_step)

    window = attention_window(peft_model)
    tokens_run, packed_steps = [], []  # per step: tokens run but padding (a packed row's prefix once)

    def collate(batch: list[dict]) -> dict:
        # LoRA dropout draws a mask per token: a prefix run once would give the examples one draw.
        inputs = training_batch(batch, tokenizer.pad_token_id, window, share_prefix=settings.dropout == 0)
        packed = "segments" in inputs
        tokens_run.append(int((inputs["segments"] >= 0).sum() if packed else inputs["attention_mask"].sum()))
        packed_steps.append(packed)
        return inputs

    started = time.perf_counter()
    trainer = AnswerOnlyTrainer(model=peft_model, args=arguments, train_dataset=rows,
                                data_collator=collate,
                                callbacks=[StepReporter(), *callbacks])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; our progress bar shows the steps
    with eager_attention_on_cpu(peft_model):
        result = trainer.train()
    seconds = time.perf_counter() - started
    curve = [(entry["step"], entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    losses = [loss for _, loss in curve]
    shutil.rmtree(arguments.output_dir, ignore_errors=True)
    peft_model.save_pretrained(out_dir)
    tokens = sum(len(row["input_ids"]) for row in rows) * result.global_step / per_epoch
    metrics = {
        "examples": len(rows), "truncated": tokenized.truncated, "dropped": tokenized.dropped,
        "max_length": settings.max_length, "steps": result.global_step,
        "train_loss": result.training_loss, "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None, "loss_curve": curve, "seconds": seconds,
        "tokens_per_second": tokens / seconds, "tokens_run": sum(tokens_run),
        "packed_steps": sum(packed_steps),
    }
    (out_dir / "training_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics

"""Train one LoRA adapter on one source with PEFT and the transformers Trainer; loss on the answer only.

We use the Trainer rather than TRL's SFTTrainer so that a training example is tokenized exactly as
evaluation tokenizes it (prompt encoded alone, then ``" " + target`` encoded alone, then end of
sequence): the answer-only loss mask then covers precisely the tokens that evaluation scores. TRL's
CPU defaults (gradient checkpointing on) were also measured slower here.
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


def answer_token_logits(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict an answer token, flattened to ``(N, V)``, with their
    ``(N,)`` target ids and the ``(N,)`` batch row each came from.

    Only those positions go through the output head (49k wide for SmolLM2), via ``logits_to_keep``: a
    short answer after a long prompt needs a handful of the head's rows instead of one per prompt
    token. transformers from 5.2x takes a boolean ``(B, T)`` mask; older 5.x releases (the ones vLLM
    pins) take positions shared by the batch, so there the head runs at every position where any row
    has an answer token, and the mask picks each row's own.
    """
    labels = batch["labels"]
    predicts_answer = torch.zeros_like(labels, dtype=torch.bool)
    predicts_answer[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][predicts_answer[:, :-1]]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
    if _HEAD_TAKES_A_MASK:
        logits = model(**inputs, logits_to_keep=predicts_answer).logits
    else:
        positions = predicts_answer.any(dim=0).nonzero().squeeze(1)
        logits = model(**inputs, logits_to_keep=positions).logits[predicts_answer[:, positions]]
    return logits.reshape(len(targets), -1), targets, predicts_answer.nonzero()[:, 0]


def _head_takes_a_mask() -> bool:
    from transformers import modeling_utils

    return hasattr(modeling_utils, "slice_logits_to_keep")


_HEAD_TAKES_A_MASK = _head_takes_a_mask()


def answer_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over every answer token in the batch (what the Trainer's causal-LM loss
    computes, without the output head at prompt positions)."""
    logits, targets, _ = answer_token_logits(model, batch)
    return F.cross_entropy(logits.float(), targets)


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

    started = time.perf_counter()
    trainer = AnswerOnlyTrainer(model=peft_model, args=arguments, train_dataset=rows,
                                data_collator=lambda batch: pad_batch(batch, tokenizer.pad_token_id),
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
        "tokens_per_second": tokens / seconds,
    }
    (out_dir / "training_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics

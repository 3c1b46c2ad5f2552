"""Score a model on a task: label log-likelihoods for ``choice`` tasks, greedy generation for ``generate``.

Choice scoring follows lm-evaluation-harness ``multiple_choice``: the continuation is
``" " + label``; ``acc`` picks the label with the highest summed log-likelihood, ``acc_norm`` divides
by the label's length in characters. The prompt is run once per item with its key/value cache, and
only the label tokens are run per label: logits are computed only where a label token is scored,
which skips most of the 49k-wide output head.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .tasks.base import TARGET_DELIMITER, Example, TaskSpec

# Part of every cell's content key: bump it when a change to scoring would change stored results.
SCORING_VERSION = 2


@dataclass
class ItemResult:
    index: int
    prompt: str
    gold: str
    prediction: str
    correct: bool
    prediction_norm: Optional[str] = None  # choice: argmax of length-normalised log-likelihood
    correct_norm: Optional[bool] = None
    logliks: dict[str, float] = field(default_factory=dict)  # choice: label -> summed log-likelihood
    generated: Optional[str] = None  # generate: the text the model wrote
    generated_tokens: Optional[int] = None


Progress = Callable[[int], None]


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    return tokenizer(prompt)["input_ids"]


def encode_continuation(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


def _left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(sequence) for sequence in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, width - len(sequence) :] = torch.tensor(sequence)
        mask[row, width - len(sequence) :] = 1
    return ids, mask


@torch.inference_mode()
def score_choice(model, tokenizer, spec: TaskSpec, examples: list[Example], batch_size: int,
                 progress: Progress = lambda n: None) -> list[ItemResult]:
    prompts = [spec.prompt(example) for example in examples]
    prompt_ids = [encode_prompt(tokenizer, prompt) for prompt in prompts]
    label_ids = [encode_continuation(tokenizer, TARGET_DELIMITER + label) for label in spec.labels]
    label_width = max(len(ids) for ids in label_ids)
    label_matrix = torch.full((len(label_ids), label_width), tokenizer.pad_token_id, dtype=torch.long)
    label_mask = torch.zeros_like(label_matrix)
    for row, ids in enumerate(label_ids):
        label_matrix[row, : len(ids)] = torch.tensor(ids)
        label_mask[row, : len(ids)] = 1
    n_labels = len(spec.labels)
    label_chars = torch.tensor([len(TARGET_DELIMITER + label) for label in spec.labels], dtype=torch.float32)

    results: list[Optional[ItemResult]] = [None] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(prompt_ids[i]))
    for batch in _batches(order, batch_size):
        ids, mask = _left_pad([prompt_ids[i] for i in batch], tokenizer.pad_token_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): scores each label's first token
        logliks = first[:, label_matrix[:, 0]]  # (B, K)
        if label_width > 1:
            cache = out.past_key_values
            cache.batch_repeat_interleave(n_labels)
            continuation = label_matrix.repeat(len(batch), 1)
            continuation_mask = label_mask.repeat(len(batch), 1)
            full_mask = torch.cat([mask.repeat_interleave(n_labels, 0), continuation_mask], dim=1)
            start = mask.sum(-1).repeat_interleave(n_labels).unsqueeze(1)
            continuation_positions = start + torch.arange(label_width).unsqueeze(0)
            rest = model(input_ids=continuation, attention_mask=full_mask, position_ids=continuation_positions,
                         past_key_values=cache, use_cache=False, logits_to_keep=label_width)
            logprobs = torch.log_softmax(rest.logits[:, :-1].float(), dim=-1)  # predicts label tokens 1..
            picked = logprobs.gather(-1, continuation[:, 1:].unsqueeze(-1)).squeeze(-1)
            picked = (picked * continuation_mask[:, 1:]).sum(-1).view(len(batch), n_labels)
            logliks = logliks + picked
        for row, index in enumerate(batch):
            scores = logliks[row].tolist()
            best = spec.labels[int(logliks[row].argmax())]
            best_norm = spec.labels[int((logliks[row] / label_chars).argmax())]
            gold = examples[index].answer
            results[index] = ItemResult(
                index=index, prompt=prompts[index], gold=gold, prediction=best, correct=best == gold,
                prediction_norm=best_norm, correct_norm=best_norm == gold,
                logliks=dict(zip(spec.labels, scores)),
            )
        progress(len(batch))
    return results  # type: ignore[return-value]


class _StopWhenAnswered(StoppingCriteria):
    """Generation stopping criterion: a row is done once its text reaches a stop string or the answer's end.

    transformers' ``stop_strings`` handles plain strings only; tasks such as word problems end with a
    pattern (``#### 42`` then a newline), and an untrained model otherwise rambles to the token limit.
    """

    def __init__(self, tokenizer, spec: TaskSpec, prompt_width: int):
        self.tokenizer, self.spec, self.prompt_width = tokenizer, spec, prompt_width

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :], skip_special_tokens=True)
        return torch.tensor([self.spec.cut(text) != text for text in texts], device=input_ids.device)


def shared_prefix(sequences: list[list[int]], keep: int = 1) -> list[int]:
    """The longest token prefix common to every sequence, leaving each at least ``keep`` tokens of its own."""
    shortest = min(len(sequence) for sequence in sequences) - keep
    length = 0
    while length < shortest and all(sequence[length] == sequences[0][length] for sequence in sequences):
        length += 1
    return sequences[0][:length]


# Below this many shared tokens, the prefix cache's copy per batch costs about what it saves.
MIN_SHARED_PREFIX = 32


@torch.inference_mode()
def generate_answers(model, tokenizer, spec: TaskSpec, examples: list[Example], batch_size: int,
                     progress: Progress = lambda n: None) -> list[ItemResult]:
    """Greedy answers, batch by batch. Prompts that share a long prefix (few-shot examples and the
    instruction) run it once: its key/value cache is copied into every batch, the items' own tokens
    follow it, left-padded in the middle (positions come from the attention mask, so each item's
    tokens sit exactly where they would without padding).
    """
    prompts = [spec.prompt(example) for example in examples]
    prompt_ids = [encode_prompt(tokenizer, prompt) for prompt in prompts]
    prefix = shared_prefix(prompt_ids)
    if len(prefix) < MIN_SHARED_PREFIX:
        prefix = []
    prefix_cache = None
    if prefix:
        prefix_cache = model(input_ids=torch.tensor([prefix]), use_cache=True, logits_to_keep=1).past_key_values
    results: list[Optional[ItemResult]] = [None] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(prompt_ids[i]))
    for batch in _batches(order, batch_size):
        own, own_mask = _left_pad([prompt_ids[i][len(prefix) :] for i in batch], tokenizer.pad_token_id)
        ids = torch.cat([torch.tensor([prefix], dtype=torch.long).expand(len(batch), -1), own], dim=1)
        mask = torch.cat([torch.ones((len(batch), len(prefix)), dtype=torch.long), own_mask], dim=1)
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(batch))
        output = model.generate(
            input_ids=ids, attention_mask=mask, past_key_values=cache, max_new_tokens=spec.max_new_tokens,
            do_sample=False, pad_token_id=tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([_StopWhenAnswered(tokenizer, spec, ids.shape[1])]),
        )
        for row, index in enumerate(batch):
            text = spec.cut(tokenizer.decode(output[row, ids.shape[1] :], skip_special_tokens=True))
            results[index] = ItemResult(
                index=index, prompt=prompts[index], gold=examples[index].answer, prediction=spec.extract(text),
                correct=spec.check(text, examples[index]), generated=text,
                generated_tokens=len(encode_continuation(tokenizer, text)),
            )
        progress(len(batch))
    return results  # type: ignore[return-value]


def evaluate(model, tokenizer, spec: TaskSpec, examples: list[Example], batch_size: int,
             progress: Progress = lambda n: None) -> list[ItemResult]:
    scorer = score_choice if spec.answer_type == "choice" else generate_answers
    return scorer(model, tokenizer, spec, examples, batch_size, progress)

"""The ``hf`` backend: a transformers causal LM with PEFT adapters switched on it, on any device.

Choice items follow lm-evaluation-harness ``multiple_choice``: each continuation's summed
log-likelihood after the prompt. The prompt runs once per item and its key/value cache is shared by
every continuation; logits are computed only where a continuation token is scored, which skips most
of the output head (49k wide for SmolLM2). Greedy generation stops each row once its text reaches a
stop string or the answer's end. When every prompt of a batch group starts with the same long prefix
(few-shot examples and the instruction), the prefix runs once and its cache is copied into each batch.

The model is placed once on the backend's device and every tensor is created there; adapters are
loaded onto the same base model and switched per request group, never reloaded with the base.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Optional

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ..devices import resolve_device
from ..keys import SCORING_VERSION
from ..models import ResolvedModel, load_model, load_tokenizer
from ..requests import ChoiceRequest, GenerateRequest, Generation
from ..tokenization import encode_continuation, encode_prompt
from .base import Backend, Progress, no_progress

# Below this many shared tokens, the prefix cache's copy per batch costs about what it saves.
MIN_SHARED_PREFIX = 32


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: ResolvedModel, dtype: str = "float32", device: str = "auto", batch_size: int = 16):
        placed = resolve_device(device)
        self._setup(load_model(model, dtype, placed), load_tokenizer(model), batch_size)

    @classmethod
    def wrap(cls, module, tokenizer, batch_size: int = 16) -> HFBackend:
        """A backend around a model you already loaded (plain or PEFT), running where that model is.

        Requests for the base model (``model=None``) run ``module`` as given, so a wrapped PeftModel
        answers with its active adapter.
        """
        backend = cls.__new__(cls)
        backend._setup(module, tokenizer, batch_size)
        return backend

    def _setup(self, module, tokenizer, batch_size: int) -> None:
        self.base, self.tokenizer, self.batch_size = module, tokenizer, batch_size
        self.peft_model = None  # created by the first load_adapter
        self._adapters: dict[str, str] = {}  # adapter name -> PEFT's name for it

    @classmethod
    def version(cls) -> str:
        return f"hf-{SCORING_VERSION}"

    @property
    def device(self) -> str:
        return str(self.model_device)

    @property
    def model_device(self) -> torch.device:
        return next(self.base.parameters()).device

    # --- adapters ----------------------------------------------------------------------------------
    def load_adapter(self, name: str, path: str) -> None:
        from peft import PeftModel

        if isinstance(self.base, PeftModel):
            raise ValueError("a backend that wraps a PeftModel answers with it as is; it loads no adapters")
        peft_name = _peft_name(name)
        if self.peft_model is None:
            self.peft_model = PeftModel.from_pretrained(self.base, path, adapter_name=peft_name, is_trainable=False)
        else:
            if name in self._adapters:
                self.peft_model.delete_adapter(peft_name)
            self.peft_model.load_adapter(path, adapter_name=peft_name, is_trainable=False)
        self.peft_model.eval()  # adapter weights follow their base layer's device
        self._adapters[name] = peft_name

    def adapters(self) -> list[str]:
        return list(self._adapters)

    @contextmanager
    def activated(self, model: Optional[str]) -> Iterator[torch.nn.Module]:
        """The module that answers for ``model`` (None: the base) while the block runs.

        Head gates hook into this module, so it is the real model, not a wrapper around it.
        """
        if model is None:
            if self.peft_model is None:
                yield self.base
            else:
                with self.peft_model.disable_adapter():
                    yield self.peft_model
            return
        if model not in self._adapters:
            raise KeyError(f"adapter {model!r} is not loaded; loaded: {self.adapters()}")
        self.peft_model.set_adapter(self._adapters[model])
        self.peft_model.eval()  # set_adapter can make the adapter trainable again
        yield self.peft_model

    # --- requests ----------------------------------------------------------------------------------
    def loglikelihoods(self, requests: Sequence[ChoiceRequest], progress: Progress = no_progress
                       ) -> list[tuple[float, ...]]:
        results: list[Optional[tuple[float, ...]]] = [None] * len(requests)
        for (model, continuations), indices in _groups(requests, lambda r: (r.model, r.continuations)).items():
            with self.activated(model) as module:
                scores = self._score(module, [requests[i].prompt for i in indices], continuations, progress)
            for index, score in zip(indices, scores):
                results[index] = score
        return results  # type: ignore[return-value]

    def generate(self, requests: Sequence[GenerateRequest], progress: Progress = no_progress) -> list[Generation]:
        results: list[Optional[Generation]] = [None] * len(requests)
        settings = lambda r: (r.model, r.max_new_tokens, r.stop, r.answer_end)  # noqa: E731
        for _, indices in _groups(requests, settings).items():
            first = requests[indices[0]]
            with self.activated(first.model) as module:
                texts = self._generate(module, [requests[i].prompt for i in indices], first, progress)
            for index, text in zip(indices, texts):
                results[index] = Generation(text, len(encode_continuation(self.tokenizer, text)))
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _score(self, module, prompts: list[str], continuations: tuple[str, ...], progress: Progress
               ) -> list[tuple[float, ...]]:
        device, pad_id = self.model_device, self.tokenizer.pad_token_id
        prompt_ids = [encode_prompt(self.tokenizer, prompt) for prompt in prompts]
        label_ids = [encode_continuation(self.tokenizer, text) for text in continuations]
        label_width = max(len(ids) for ids in label_ids)
        label_matrix = torch.full((len(label_ids), label_width), pad_id, dtype=torch.long, device=device)
        label_mask = torch.zeros_like(label_matrix)
        for row, ids in enumerate(label_ids):
            label_matrix[row, : len(ids)] = torch.tensor(ids, device=device)
            label_mask[row, : len(ids)] = 1
        n_labels = len(label_ids)

        results: list[Optional[tuple[float, ...]]] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]))
        for batch in _batches(order, self.batch_size):
            ids, mask = _left_pad([prompt_ids[i] for i in batch], pad_id, device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = module(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): each label's first token
            logliks = first[:, label_matrix[:, 0]]  # (B, K)
            if label_width > 1:
                cache = returned_cache(out)
                cache.batch_repeat_interleave(n_labels)
                continuation = label_matrix.repeat(len(batch), 1)
                continuation_mask = label_mask.repeat(len(batch), 1)
                full_mask = torch.cat([mask.repeat_interleave(n_labels, 0), continuation_mask], dim=1)
                start = mask.sum(-1).repeat_interleave(n_labels).unsqueeze(1)
                continuation_positions = start + torch.arange(label_width, device=device).unsqueeze(0)
                rest = module(input_ids=continuation, attention_mask=full_mask, position_ids=continuation_positions,
                              use_cache=False, logits_to_keep=label_width, **{cache_argument(module): cache})
                logprobs = torch.log_softmax(rest.logits[:, :-1].float(), dim=-1)  # predicts label tokens 1..
                picked = logprobs.gather(-1, continuation[:, 1:].unsqueeze(-1)).squeeze(-1)
                picked = (picked * continuation_mask[:, 1:]).sum(-1).view(len(batch), n_labels)
                logliks = logliks + picked
            for row, score in zip(batch, logliks.cpu().tolist()):
                results[row] = tuple(score)
            progress(len(batch))
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate(self, module, prompts: list[str], rule: GenerateRequest, progress: Progress) -> list[str]:
        """Greedy answers, batch by batch. Prompts that share a long prefix run it once: its key/value
        cache is copied into every batch and the items' own tokens follow it, left-padded in the middle
        (positions come from the attention mask, so each token sits where it would without padding).
        """
        device, pad_id = self.model_device, self.tokenizer.pad_token_id
        prompt_ids = [encode_prompt(self.tokenizer, prompt) for prompt in prompts]
        prefix = shared_prefix(prompt_ids)
        if len(prefix) < MIN_SHARED_PREFIX:
            prefix = []
        prefix_cache = None
        if prefix:
            prefix_cache = returned_cache(module(input_ids=torch.tensor([prefix], device=device), use_cache=True,
                                                 logits_to_keep=1))
        texts: list[Optional[str]] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]))
        for batch in _batches(order, self.batch_size):
            own, own_mask = _left_pad([prompt_ids[i][len(prefix) :] for i in batch], pad_id, device)
            shared = torch.tensor([prefix], dtype=torch.long, device=device).expand(len(batch), -1)
            ids = torch.cat([shared, own], dim=1)
            mask = torch.cat([torch.ones((len(batch), len(prefix)), dtype=torch.long, device=device), own_mask], dim=1)
            cache = None
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(batch))
            output = module.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=rule.max_new_tokens, do_sample=False,
                pad_token_id=pad_id, **({cache_argument(module): cache} if cache is not None else {}),
                stopping_criteria=StoppingCriteriaList([_StopWhenAnswered(self.tokenizer, rule, ids.shape[1])]),
            )
            for row, index in enumerate(batch):
                texts[index] = rule.cut(self.tokenizer.decode(output[row, ids.shape[1] :], skip_special_tokens=True))
            progress(len(batch))
        return texts  # type: ignore[return-value]


class _StopWhenAnswered(StoppingCriteria):
    """A row is done once its text reaches a stop string or the answer's end.

    transformers' ``stop_strings`` handles plain strings only; tasks such as word problems end with a
    pattern (``#### 42`` then a newline), and an untrained model otherwise rambles to the token limit.
    """

    def __init__(self, tokenizer, rule: GenerateRequest, prompt_width: int):
        self.tokenizer, self.rule, self.prompt_width = tokenizer, rule, prompt_width

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :], skip_special_tokens=True)
        return torch.tensor([self.rule.cut(text) != text for text in texts], device=input_ids.device)


def cache_argument(module) -> str:
    """The keyword that passes a key/value cache to this model: transformers 5.2x renamed
    ``past_key_values`` to ``cache`` (the old name still works there, with a deprecation warning)."""
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def returned_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def shared_prefix(sequences: list[list[int]], keep: int = 1) -> list[int]:
    """The longest token prefix common to every sequence, leaving each at least ``keep`` tokens of its own."""
    shortest = min(len(sequence) for sequence in sequences) - keep
    length = 0
    while length < shortest and all(sequence[length] == sequences[0][length] for sequence in sequences):
        length += 1
    return sequences[0][:length]


def _groups(requests: Sequence, key) -> dict:
    """Request indices grouped by ``key(request)``, groups in order of first appearance."""
    groups: dict = defaultdict(list)
    for index, request in enumerate(requests):
        groups[key(request)].append(index)
    return groups


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


def _left_pad(sequences: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(sequence) for sequence in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(sequences), width), dtype=torch.long, device=device)
    for row, sequence in enumerate(sequences):
        ids[row, width - len(sequence) :] = torch.tensor(sequence, device=device)
        mask[row, width - len(sequence) :] = 1
    return ids, mask


def _peft_name(adapter: str) -> str:
    """PEFT adapter names become module names, which cannot contain '.' (e.g. ``x+mislabeled0.3``)."""
    return adapter.replace(".", "_") + "_" + hashlib.sha256(adapter.encode()).hexdigest()[:8]

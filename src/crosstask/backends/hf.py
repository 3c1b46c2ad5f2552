"""The ``hf`` backend: a transformers causal LM with PEFT adapters switched on it, on any device.

Choice items follow lm-evaluation-harness ``multiple_choice``: each continuation's summed
log-likelihood after the prompt. The prompt runs once per item, with the continuations' common first
tokens; its key/value cache serves the labels that are longer than one token of their own. Logits are
computed only where a continuation token is scored, which skips most of the output head (49k wide
for SmolLM2). Greedy generation decodes token by token, drops each row once it ends (end of
sequence, a stop string, the answer's end) and gives its place to a waiting prompt (continuous
batching). When every prompt of a request group starts with the same
prefix (the instruction, few-shot examples), the prefix runs once and its cache is copied into each
batch. All of this is exact: each score equals the one of the whole sequence run alone (tests).

The model is placed once on the backend's device and every tensor is created there; adapters are
loaded onto the same base model and switched per request group, never reloaded with the base.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import warnings
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import torch

from ..devices import resolve_device
from ..keys import SCORING_VERSION
from ..models import ResolvedModel, load_model, load_tokenizer
from ..requests import ChoiceRequest, GenerateRequest, Generation
from ..tokenization import encode_continuation, encode_prompt
from .base import Backend, Progress, no_progress
from .decoding import Decoding, returned_cache

# Below this many shared tokens, the prefix cache's copy per batch costs about what it saves. Built-in
# instructions are 14-22 tokens: running them once made choice scoring 1.3-2x faster (SmolLM2, CPU).
MIN_SHARED_PREFIX = 8


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: ResolvedModel, dtype: str = "float32", device: str = "auto", batch_size: int = 16,
                 generate_batch_size: Optional[int] = None):
        placed = resolve_device(device)
        self._setup(load_model(model, dtype, placed), load_tokenizer(model), batch_size, generate_batch_size)

    @classmethod
    def wrap(cls, module, tokenizer, batch_size: int = 16, generate_batch_size: Optional[int] = None) -> HFBackend:
        """A backend around a model you already loaded (plain or PEFT), running where that model is.

        Requests for the base model (``model=None``) run ``module`` as given, so a wrapped PeftModel
        answers with its active adapter.
        """
        backend = cls.__new__(cls)
        backend._setup(module, tokenizer, batch_size, generate_batch_size)
        return backend

    def _setup(self, module, tokenizer, batch_size: int, generate_batch_size: Optional[int]) -> None:
        self.base, self.tokenizer, self.batch_size = module, tokenizer, batch_size
        self.generate_batch_size = generate_batch_size  # answers decoded together; None: batch_size
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

    def unload_adapter(self, name: str) -> None:
        peft_name = self._adapters.pop(name)
        if self._adapters:
            with warnings.catch_warnings():  # "... was active, setting another active": activated() picks anyway
                warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")
                self.peft_model.delete_adapter(peft_name)
        else:  # PEFT keeps empty LoRA layers around the last adapter: restore the plain base model instead
            self.base = self.peft_model.unload()
            self.peft_model = None

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
        """Per prompt, each continuation's summed log-likelihood.

        The continuations' common first tokens (e.g. the space before " 1" ... " 5") run with the prompt,
        and so does every label's first own token: its log-probability comes from the prompt pass. Only
        labels with more tokens than that need a second pass, over the prompt's cache (copied once per
        such label, not at all when there is just one).
        """
        device = self.model_device
        label_ids = [encode_continuation(self.tokenizer, text) for text in continuations]
        common = shared_prefix(label_ids, keep=1)
        remainders = [ids[len(common) :] for ids in label_ids]
        first_tokens = torch.tensor([ids[0] for ids in remainders], device=device)
        longer = [k for k, ids in enumerate(remainders) if len(ids) > 1]
        sequences = [encode_prompt(self.tokenizer, prompt) + common for prompt in prompts]
        prefix = self._prefix(module, [ids[: len(ids) - len(common)] for ids in sequences])

        results: list[Optional[tuple[float, ...]]] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(sequences[i]))
        for batch in _batches(order, self.batch_size):
            inputs = prefix.inputs([sequences[i] for i in batch])
            out = module(**inputs.arguments(cache_argument(module)), use_cache=bool(longer),
                         logits_to_keep=len(common) + 1)
            logprobs = torch.log_softmax(out.logits.float(), dim=-1)  # (B, len(common) + 1, V)
            logliks = logprobs[:, -1, first_tokens]  # (B, K): each label's first own token
            if common:
                targets = torch.tensor(common, device=device).expand(len(batch), -1).unsqueeze(-1)
                logliks = logliks + logprobs[:, :-1].gather(-1, targets).squeeze(-1).sum(-1, keepdim=True)
            if longer:
                logliks[:, longer] += self._rest_of_labels(module, returned_cache(out), inputs.mask,
                                                           [remainders[k] for k in longer])
            for row, score in zip(batch, logliks.cpu().tolist()):
                results[row] = tuple(score)
            progress(len(batch))
        return results  # type: ignore[return-value]

    def _rest_of_labels(self, module, cache, mask: torch.Tensor, labels: list[list[int]]) -> torch.Tensor:
        """(B, L): the log-likelihood of each label's tokens after its first, given the prompt's cache."""
        device, rows, n_labels = self.model_device, mask.shape[0], len(labels)
        width = max(len(ids) for ids in labels) - 1
        inputs = torch.full((n_labels, width), self.tokenizer.pad_token_id, dtype=torch.long, device=device)
        targets, target_mask = torch.zeros_like(inputs), torch.zeros_like(inputs)
        for k, ids in enumerate(labels):  # feed tokens 0..n-2, predict tokens 1..n-1
            inputs[k, : len(ids) - 1] = torch.tensor(ids[:-1], device=device)
            targets[k, : len(ids) - 1] = torch.tensor(ids[1:], device=device)
            target_mask[k, : len(ids) - 1] = 1
        if n_labels > 1:
            cache.batch_repeat_interleave(n_labels)
        full_mask = torch.cat([mask.repeat_interleave(n_labels, 0), target_mask.repeat(rows, 1)], dim=1)
        start = mask.sum(-1).repeat_interleave(n_labels).unsqueeze(1)
        positions = start + torch.arange(width, device=device).unsqueeze(0)
        out = module(input_ids=inputs.repeat(rows, 1), attention_mask=full_mask, position_ids=positions,
                     use_cache=False, logits_to_keep=width, **{cache_argument(module): cache})
        logprobs = torch.log_softmax(out.logits.float(), dim=-1)
        picked = logprobs.gather(-1, targets.repeat(rows, 1).unsqueeze(-1)).squeeze(-1)
        return (picked * target_mask.repeat(rows, 1)).sum(-1).view(rows, n_labels)

    @torch.inference_mode()
    def _generate(self, module, prompts: list[str], rule: GenerateRequest, progress: Progress) -> list[str]:
        """Greedy answers, decoded token by token on one batch's cache, with continuous batching.

        A row leaves the batch (and its cache) as soon as it ends: at the end-of-sequence token, a stop
        string, the answer's end or ``max_new_tokens``, and waiting prompts take the free rows at once:
        they run on their own and their cache is joined to the batch's. A batch therefore never runs
        at a few rows until its longest answer ends: one decoding step costs about as much at 2 rows
        as at 16 on a CPU (SmolLM2-135M, fp32: 90 against 120 ms), and GSM8K answers run from 0 to 320
        tokens (100 GSM8K items: 231 s with batches that only shrink, 111 s refilled at once, 122 s
        refilled when half the rows are free; same answers). The rows and their cache are a
        :class:`~.decoding.Decoding`, whose cache writes each step's token in place. Where the cache
        cannot be joined (another cache type), a new batch starts when the last one is done, as
        ``generate`` does it.
        """
        prompt_ids = [encode_prompt(self.tokenizer, prompt) for prompt in prompts]
        prefix = self._prefix(module, prompt_ids)
        stops = set(_end_of_sequence_ids(module, self.tokenizer))
        cache_key = cache_argument(module)
        texts: list[Optional[str]] = [None] * len(prompts)
        tokens: list[list[int]] = [[] for _ in prompts]
        waiting = deque(sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i])))  # least padding
        decoding_rows = self.generate_batch_size or self.batch_size
        batch: Optional[Decoding] = None
        while waiting or batch is not None:
            free = decoding_rows - (len(batch.rows) if batch else 0)
            while waiting and free and (batch is None or batch.joinable):
                # Prompts run batch_size at a time (the padding of a wider batch costs more than it saves);
                # their rows then decode together, up to generate_batch_size of them.
                admitted = [waiting.popleft() for _ in range(min(free, self.batch_size, len(waiting)))]
                inputs = prefix.inputs([prompt_ids[i] for i in admitted])
                arguments = inputs.arguments(cache_key)
                out = module(**arguments, use_cache=True, logits_to_keep=1)
                started = Decoding(admitted, returned_cache(out), inputs.mask, arguments["position_ids"][:, -1:],
                                   out.logits[:, -1].argmax(-1), rule.max_new_tokens)
                batch = started if batch is None else batch.join(started)
                free -= len(admitted)
            going = []
            for row, (index, token) in enumerate(zip(batch.rows, batch.next_tokens.cpu().tolist())):
                if token not in stops:
                    tokens[index].append(token)
                text = self.tokenizer.decode(tokens[index], skip_special_tokens=True)
                if token in stops or rule.cut(text) != text or len(tokens[index]) == rule.max_new_tokens:
                    texts[index] = rule.cut(text)
                    progress(1)
                else:
                    going.append(row)
            if not going:
                batch = None
                continue
            if len(going) < len(batch.rows):
                batch.select(going)
            batch.step(module, cache_key)
        return texts  # type: ignore[return-value]

    def _prefix(self, module, sequences: list[list[int]]) -> _PrefixCache:
        """The prefix every sequence starts with (few-shot examples, the instruction), run once, when it
        is long enough to be worth copying its cache into each batch."""
        prefix = shared_prefix(sequences)
        if len(prefix) < MIN_SHARED_PREFIX:
            return _PrefixCache([], None, self.model_device, self.tokenizer.pad_token_id)
        out = module(input_ids=torch.tensor([prefix], device=self.model_device), use_cache=True, logits_to_keep=1)
        return _PrefixCache(prefix, returned_cache(out), self.model_device, self.tokenizer.pad_token_id)


@dataclass
class _BatchInputs:
    ids: torch.Tensor  # (B, T): the tokens after the shared prefix, left-padded
    mask: torch.Tensor  # (B, P + T): the attention mask over the prefix and these tokens
    cache: object  # the prefix's cache for this batch, or None

    def arguments(self, cache_key: str) -> dict:
        """Keyword arguments of the model's forward; ``cache_key`` is :func:`cache_argument`'s answer."""
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)[:, -self.ids.shape[1] :]
        cache = {cache_key: self.cache} if self.cache is not None else {}
        return {"input_ids": self.ids, "attention_mask": self.mask, "position_ids": positions, **cache}


@dataclass
class _PrefixCache:
    """A prefix shared by a group's sequences and its key/value cache (``None`` when there is no prefix).

    Each batch gets its own copy of the cache, its rows' own tokens after it, left-padded in the middle:
    positions come from the attention mask, so every token sits where it would without padding.
    """

    ids: list[int]
    cache: object
    device: torch.device
    pad_id: int

    def inputs(self, sequences: list[list[int]]) -> _BatchInputs:
        device, rows = self.device, len(sequences)
        own, own_mask = _left_pad([sequence[len(self.ids) :] for sequence in sequences], self.pad_id, device)
        mask = torch.cat([torch.ones((rows, len(self.ids)), dtype=torch.long, device=device), own_mask], dim=1)
        cache = None
        if self.cache is not None:
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(rows)
        return _BatchInputs(own, mask, cache)


def _end_of_sequence_ids(module, tokenizer) -> list[int]:
    """The tokens that end a generation, as ``generate`` reads them: the model's generation config, else
    the tokenizer's end-of-sequence token."""
    config = getattr(module, "generation_config", None)
    ids = getattr(config, "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    return [ids] if isinstance(ids, int) else list(ids)


def cache_argument(module) -> str:
    """The keyword that passes a key/value cache to this model: transformers 5.2x renamed
    ``past_key_values`` to ``cache`` (the old name still works there, with a deprecation warning)."""
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


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

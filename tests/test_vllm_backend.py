"""The vllm backend against the hf backend, on the same items, for the base model and a LoRA adapter.

Two levels: (1) at the vLLM API boundary, with a stand-in engine that answers ``LLM.generate`` the way
vLLM does (prompt logprobs, greedy text cut before a stop string, one LoRARequest per prompt) from a
transformers model, so the backend's requests and its reading of the answers are checked in every
environment; (2) on vLLM's real CPU build, where it is installed (``scripts/setup_vllm.sh`` makes
``.venv-vllm``; ``scripts/test.sh`` runs this file there too).
"""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass

import pytest
import torch

from crosstask.backends.hf import HFBackend
from crosstask.evaluation import evaluate
from crosstask.keys import BASE
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks.base import Example, TaskSpec

CHOICE = TaskSpec("toy", "Pick one.", "Answer", "choice", labels=("yes", "no", "not sure at all"))
GENERATE = TaskSpec("gen", "Continue the list.", "Answer", "generate", max_new_tokens=12, stop=("\n",),
                    answer_end=r"7")
EXAMPLES = [Example(f"Item {i}: {'one two ' * (i % 3)}three?", "yes", "yes") for i in range(6)]


def _lora_folder(model_dir, out, seed: int = 0):
    """A LoRA adapter with non-zero weights (its outputs differ from the base model's), saved by PEFT."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = load_model(resolve_model(str(model_dir)), "float32")
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(out)
    return out


def _compare(vllm_backend, hf_backend, adapter: str, atol: float) -> None:
    for spec in (CHOICE, GENERATE):
        ours = evaluate(vllm_backend, spec, EXAMPLES, [None, adapter])  # every model in one call
        theirs = [evaluate(hf_backend, spec, EXAMPLES, [model])[0] for model in (None, adapter)]
        for mine, other in zip(ours, theirs):
            for a, b in zip(mine, other):
                assert a.prediction == b.prediction and a.generated == b.generated
                assert a.generated_tokens == b.generated_tokens
                for label in a.logliks:
                    assert math.isclose(a.logliks[label], b.logliks[label], abs_tol=atol), (label, a, b)
    by_model = evaluate(hf_backend, CHOICE, EXAMPLES, [None, adapter])
    assert by_model[0][0].logliks != by_model[1][0].logliks  # the adapter changes the scores: the routing matters


# --- (1) the vLLM API boundary ---------------------------------------------------------------------

@dataclass
class _Logprob:
    logprob: float


class _FakeLLM:
    """Answers ``LLM.generate`` like vLLM from a transformers model (and PEFT for a LoRARequest)."""

    def __init__(self, model_dir):
        from peft import PeftModel

        resolved = resolve_model(str(model_dir))
        self.tokenizer = load_tokenizer(resolved)
        self.base = load_model(resolved, "float32")
        self.peft, self.PeftModel, self.calls = None, PeftModel, []

    def _model(self, lora):
        if lora is None:
            return self.base if self.peft is None else _Disabled(self.peft)
        if self.peft is None:
            self.peft = self.PeftModel.from_pretrained(self.base, lora.lora_path, adapter_name=lora.lora_name)
        elif lora.lora_name not in self.peft.peft_config:
            self.peft.load_adapter(lora.lora_path, adapter_name=lora.lora_name)
        self.peft.set_adapter(lora.lora_name)
        return self.peft

    @torch.no_grad()
    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        self.calls.append(len(prompts))
        params = params if isinstance(params, list) else [params] * len(prompts)
        loras = lora_request if isinstance(lora_request, list) else [lora_request] * len(prompts)
        return [self._one(prompt["prompt_token_ids"], param, lora) for prompt, param, lora in zip(prompts, params, loras)]

    def _one(self, ids, param, lora):
        model = self._model(lora)
        if param.prompt_logprobs:
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
            entries = [None] + [{ids[i]: _Logprob(float(logprobs[i - 1, ids[i]])),
                                 int(logprobs[i - 1].argmax()): _Logprob(float(logprobs[i - 1].max()))}
                                for i in range(1, len(ids))]
            return types.SimpleNamespace(prompt_logprobs=entries, outputs=[types.SimpleNamespace(text="")])
        tokens = list(ids)
        for _ in range(param.max_tokens):
            token = int(model(torch.tensor([tokens])).logits[0, -1].argmax())
            if token == self.tokenizer.eos_token_id:
                break
            tokens.append(token)
            text = self.tokenizer.decode(tokens[len(ids):], skip_special_tokens=True)
            if any(stop in text for stop in param.stop):
                break
        text = self.tokenizer.decode(tokens[len(ids):], skip_special_tokens=True)
        for stop in param.stop:  # vLLM leaves the stop string out
            text = text.split(stop)[0]
        return types.SimpleNamespace(prompt_logprobs=None, outputs=[types.SimpleNamespace(text=text)])


class _Disabled:
    def __init__(self, peft):
        self.peft = peft

    def __call__(self, *args, **kwargs):
        with self.peft.disable_adapter():
            return self.peft(*args, **kwargs)


@pytest.fixture
def fake_vllm(monkeypatch):
    """``vllm.SamplingParams`` and ``vllm.lora.request.LoRARequest`` as plain records."""
    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = lambda **kwargs: types.SimpleNamespace(**{"stop": [], "prompt_logprobs": None, **kwargs})
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, id_, path: types.SimpleNamespace(lora_name=name, lora_int_id=id_, lora_path=path)
    for name, module in {"vllm": vllm, "vllm.lora": lora, "vllm.lora.request": request}.items():
        monkeypatch.setitem(sys.modules, name, module)


def test_requests_and_answers_at_the_vllm_api_boundary(fake_vllm, tiny_model_dir, tiny_model, tmp_path):
    from crosstask.backends.vllm import VLLMBackend

    adapter = _lora_folder(tiny_model_dir, tmp_path / "adapter")
    engine = _FakeLLM(tiny_model_dir)
    backend = VLLMBackend(resolve_model(str(tiny_model_dir)), engine=engine)
    backend.load_adapter("ad", str(adapter))
    hf = HFBackend.wrap(load_model(resolve_model(str(tiny_model_dir)), "float32"), tiny_model[1], batch_size=4)
    hf.load_adapter("ad", str(adapter))
    _compare(backend, hf, "ad", atol=1e-4)
    assert max(engine.calls) == len(EXAMPLES) * 2 * len(CHOICE.labels)  # both models and every label: one call


def test_engine_lora_slots_follow_the_run(fake_vllm, monkeypatch):
    from crosstask.backends import vllm as module

    monkeypatch.setattr(module, "installed_version", lambda: "0.32.0")
    assert module.VLLMBackend.plan_options({}, [2, 8]) == {"max_lora_rank": 8, "max_loras": 2}
    assert module.VLLMBackend.plan_options({"max_loras": 3}, [64] * 10) == {"max_lora_rank": 64, "max_loras": 3}
    with pytest.raises(ValueError, match="max_lora_rank must be one of"):
        module.VLLMBackend.check_options({"max_lora_rank": 12})
    with pytest.raises(Exception, match="no_such_option"):
        module.VLLMBackend.check_options({"no_such_option": 1})


def test_without_vllm_the_backend_fails_in_one_line_before_anything_is_written(tiny_model_dir, tmp_path, monkeypatch):
    from crosstask import api
    from crosstask.backends import vllm as module
    from crosstask.errors import CrosstaskError

    monkeypatch.setattr(module, "installed_version", lambda: None)
    settings = {"name": "x", "base_model": str(tiny_model_dir), "sources": ["nli"], "targets": ["nli"],
                "backend": "vllm"}
    with pytest.raises(CrosstaskError, match=r"backend 'vllm': needs vLLM: pip install 'crosstask\[vllm\]'"):
        api.run(settings, out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# --- (2) vLLM's CPU build ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_vllm():
    pytest.importorskip("vllm", reason="vLLM is not installed here (scripts/setup_vllm.sh makes .venv-vllm)")


def test_real_vllm_cpu_engine_matches_the_hf_backend(real_vllm, tmp_path_factory):
    """The embedded SmolLM2-135M in fp32: base and adapter answered in one call per task."""
    from crosstask.backends.vllm import VLLMBackend

    resolved = resolve_model("smollm2-135m-instruct")
    adapter = _lora_folder(resolved.location, tmp_path_factory.mktemp("adapter") / "adapter", seed=1)
    backend = VLLMBackend(resolved, dtype="float32", device="auto", **VLLMBackend.plan_options({}, [4]))
    try:
        assert backend.device == "cpu" and backend.cpu_lora_workarounds  # the CPU build's LoRA faults
        backend.load_adapter("ad", str(adapter))
        hf = HFBackend(resolved, "float32", "cpu", batch_size=4)
        hf.load_adapter("ad", str(adapter))
        _compare(backend, hf, "ad", atol=2e-3)
    finally:
        backend.close()


def test_a_run_with_the_vllm_backend_stores_its_version_in_every_cell(real_vllm, tmp_path):
    from crosstask import api
    from crosstask.backends.vllm import VLLMBackend
    from crosstask.store import Store

    api.run({"name": "vllm-run", "sources": ["sentiment_binary"], "targets": ["sentiment_binary", "arithmetic_large"],
             "train_examples": 8, "eval_examples": 4, "precision": "fp32", "backend": "vllm",
             "lora": {"batch_size": 8, "lr": 5e-3, "min_steps": None}}, out_dir=tmp_path / "run", progress=False)
    cells = Store(tmp_path / "run" / "results.sqlite").cells()
    assert len(cells) == 4 and set(cells["backend"]) == {VLLMBackend.version()} and set(cells["device"]) == {"cpu"}
    assert set(cells["model"]) == {BASE, "sentiment_binary"}

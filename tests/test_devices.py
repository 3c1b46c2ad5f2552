"""Device correctness: the setting, its errors, and every tensor following the model's device.

No GPU here: the CPU tests make the *default* device "meta", so any tensor crosstask created without
naming a device would land on "meta" and the first operation mixing it with the model's CPU tensors
would fail ("Tensor on device meta is not on the expected device cpu"). On a CUDA machine the same
paths run for real on the GPU.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crosstask import api
from crosstask.backends.hf import HFBackend
from crosstask.config import ConfigError, parse_experiment
from crosstask.devices import DeviceError, resolve_device
from crosstask.evaluation import evaluate
from crosstask.heads.dynamics import probe_loss
from crosstask.heads.patterns import activation_pattern
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks.base import Example, TaskSpec
from crosstask.training import answer_loss, pack_batch, tokenize_examples

SOURCE = Path(__file__).resolve().parents[1] / "src" / "crosstask"
CHOICE = TaskSpec("toy", "Pick one.", "Answer", "choice", labels=("yes", "no", "not sure at all"))
FEW_SHOT = TaskSpec("gen", "Example: 1, 2, 3.\n" * 12 + "Continue.", "Answer", "generate", max_new_tokens=4)
EXAMPLES = [Example(f"Item {i}: {'word ' * i}?", "yes", "yes") for i in range(4)]
FACTORIES = {"tensor", "zeros", "ones", "full", "arange", "empty", "randn", "rand", "randint", "eye", "linspace"}


def _model_paths(model, tokenizer) -> None:
    backend = HFBackend.wrap(model, tokenizer, batch_size=2)
    assert evaluate(backend, CHOICE, EXAMPLES)[0][0].logliks
    assert evaluate(backend, FEW_SHOT, EXAMPLES)[0][0].generated is not None  # shared-prefix cache path
    assert activation_pattern(model, tokenizer, CHOICE, EXAMPLES, batch_size=2, mode="abs").shape == (2, 4)
    assert probe_loss(model, tokenizer, CHOICE, EXAMPLES, batch_size=2) > 0


def test_no_tensor_is_created_off_the_model_device(tiny_model):
    model, tokenizer = tiny_model
    with torch.device("meta"):
        _model_paths(model, tokenizer)
        rows = tokenize_examples(tokenizer, CHOICE, EXAMPLES, 64).rows
        assert answer_loss(model, pack_batch(rows, tokenizer.pad_token_id, device="cpu")) > 0


def test_the_meta_trick_catches_a_tensor_made_without_a_device(tiny_model, monkeypatch):
    """The check above can fail: a head gate created without its device is caught."""
    from crosstask.heads import gates

    model, tokenizer = tiny_model
    monkeypatch.setattr(gates, "_device_of", lambda module: None)
    with torch.device("meta"), pytest.raises(RuntimeError, match="meta"):
        activation_pattern(model, tokenizer, CHOICE, EXAMPLES, batch_size=2)


def test_every_tensor_factory_in_crosstask_names_its_device():
    """A review of every tensor construction, kept: each torch factory call passes ``device=``."""
    missing = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FACTORIES
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and not any(keyword.arg == "device" for keyword in node.keywords)):
                missing.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    assert not missing, missing


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_on_the_gpu_everything_runs_there(tiny_model_dir, tmp_path):
    resolved = resolve_model(str(tiny_model_dir))
    device = resolve_device("cuda")
    model = load_model(resolved, "float32", device)
    assert next(model.parameters()).device.type == "cuda"
    _model_paths(model, load_tokenizer(resolved))
    api.run({"name": "gpu", "base_model": str(tiny_model_dir), "precision": "fp32", "device": "cuda",
             "sources": ["sentiment_binary"], "targets": ["sentiment_binary", "arithmetic_large"],
             "train_examples": 8, "eval_examples": 4, "lora": {"r": 2, "batch_size": 4, "min_steps": None}},
            out_dir=tmp_path / "run", progress=False)
    assert set(api.load_cells(tmp_path / "run")["device"]) == {"cuda:0"}


def test_device_settings_are_checked():
    with pytest.raises(ConfigError, match="device"):
        parse_experiment({"name": "x", "sources": ["nli"], "targets": ["nli"], "device": "gpu"})
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device is visible"):
            resolve_device("cuda:1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cli_device_without_a_gpu_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(f"name: x\nbase_model: {tiny_model_dir}\nsources: [nli]\ntargets: [nli]\n")
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "crosstask.cli", "run", str(config), "--out", str(out),
                             "--device", "cuda"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no CUDA device is visible" in result.stderr and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine run bench/gpu_check.py itself")
def test_gpu_check_skips_cleanly_without_a_gpu():
    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SKIP") and "no CUDA device" in done.stdout

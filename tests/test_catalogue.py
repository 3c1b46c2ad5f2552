"""The catalogue of real datasets: every entry is a valid task, and the sample-backed ones read real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from crosstask.config import TaskRef
from crosstask.tasks import build_examples, get_family
from crosstask.tasks.real import FOLDER, entries, load_entry

PAPER_SOURCES = {"gsm8k", "metamath", "goat", "magicoder", "flipkart", "amazon_reviews", "imdb", "paws", "mnli",
                 "pile_toxicity", "cot"}
# The shared samples, read through the catalogue's own field mapping (only the Amazon sample, which is
# Amazon's Alexa reviews, names its fields differently).
SAMPLES = {
    "gsm8k": {"path": "gsm8k_test.jsonl"},
    "paws": {"path": "paws_dev.jsonl"},
    "mnli": {"path": "mnli_dev_matched.jsonl"},
    "sst2": {"path": "sst2_dev.jsonl"},
    "amazon_reviews": {"path": "amazon_reviews.jsonl", "input": "verified_reviews", "target": "rating",
                       "label_map": {}},
}


def test_every_paper_dataset_has_an_entry_that_says_where_it_comes_from():
    catalogue = {entry.name: entry for entry in entries()}
    assert PAPER_SOURCES <= set(catalogue) and "sst2" in catalogue
    assert {name for name, entry in catalogue.items() if entry.in_paper} == PAPER_SOURCES
    for entry in catalogue.values():
        assert entry.url.startswith("https://huggingface.co/datasets/") and entry.reference and entry.license
        assert entry.data.hf_dataset in entry.url  # the id the card was read for is the one loaded
        assert entry.target_delimiter == "\n"  # paper 1's layout: instruction, input, "<Trigger>:", then the target
        family = get_family(entry.name)
        assert family.about["dataset"] == entry.dataset and family.spec.trigger == entry.trigger
        if entry.answer_type == "choice":
            mapped = set((entry.data.label_map or {}).values()) | {label for _, label in entry.data.bins or []}
            assert mapped <= set(entry.labels), entry.name
            assert set(entry.label_meanings) == set(entry.labels), entry.name  # the label-prior analysis maps them
        assert not FOLDER.joinpath(f"{entry.name}.yaml").read_text().startswith("name")  # a header comment first


def test_a_malformed_entry_is_named_in_one_line(tmp_path: Path):
    broken = yaml.safe_load((FOLDER / "imdb.yaml").read_text()) | {"trigger": None, "colour": "red"}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(Exception) as caught:
        load_entry(path)
    assert str(caught.value).startswith(f"{path}: ") and "colour: unknown key" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("task", sorted(SAMPLES))
def test_sample_backed_entries_read_the_shared_samples(shared_data: Path, task: str):
    ref = TaskRef(task=task, data=SAMPLES[task])
    spec = get_family(task).spec
    held_out = build_examples(ref, "eval", 40, seed=0, data_dir=shared_data)
    train = build_examples(ref, "train", 10, seed=0, exclude=frozenset(e.input for e in held_out),
                           data_dir=shared_data)
    assert not {e.input for e in train} & {e.input for e in held_out}
    records = [json.loads(line) for line in (shared_data / SAMPLES[task]["path"]).read_text().splitlines()]
    if spec.answer_type == "choice":
        assert {e.answer for e in held_out} <= set(spec.labels) and len({e.answer for e in held_out}) > 1
    prompt = spec.prompt(held_out[0]) + spec.completion(held_out[0])
    assert prompt.startswith(spec.instruction + "\n") and f"\n{spec.trigger}:\n" in prompt
    if task == "gsm8k":  # the number after "####" of the dataset's own solution
        gold = {r["question"]: r["answer"].rsplit("####", 1)[1].strip().replace(",", "") for r in records}
        assert all(e.answer == gold[e.input] for e in held_out)
    if task == "paws":
        gold = {f"Sentence 1: {r['sentence1'].strip()}\nSentence 2: {r['sentence2'].strip()}": r["label"]
                for r in records}
        assert all(e.answer == {0: "no", 1: "yes"}[gold[e.input]] for e in held_out)
    if task == "mnli":  # the sample's labels are words already; label_map leaves them alone
        assert Counter(e.answer for e in build_examples(ref, "eval", 51, 0, data_dir=shared_data)) == {
            "contradiction": 18, "entailment": 17, "neutral": 16}
    if task == "amazon_reviews":
        # 296 distinct reviews in the 300 rows (four repeat an earlier one word for word)
        assert {e.answer for e in build_examples(ref, "eval", 296, 0, data_dir=shared_data)} == set("12345")


def test_a_catalogue_task_offline_without_a_local_copy_fails_in_one_line(tmp_path: Path):
    config = tmp_path / "real.yaml"
    config.write_text("name: real\nsources: [sst2]\ntargets: [paws]\n")
    existing = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "crosstask.cli", "run", str(config), "--out", str(existing),
                             "--data-dir", str(tmp_path / "empty")], capture_output=True, text=True,
                            env=os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    message = result.stderr
    assert message.startswith("crosstask: error: eval data of 'paws': Hugging Face dataset "
                              "'google-research-datasets/paws' is not in the local cache and HF_HUB_OFFLINE is set")
    assert "paws_test.jsonl" in message and "data: {path: FILE}" in message
    assert not existing.exists()


def test_magicoder_is_a_training_source_only(tiny_model_dir, tmp_path: Path):
    from crosstask import api
    from crosstask.errors import CrosstaskError

    settings = {"name": "x", "base_model": str(tiny_model_dir), "sources": ["nli"], "targets": ["magicoder"]}
    with pytest.raises(CrosstaskError, match="'magicoder' is a training source only"):
        api.run(settings, out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_tasks_lists_the_catalogue_with_offline_availability(shared_data: Path, tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "crosstask.cli", "tasks", "--data-dir", str(shared_data)],
                            capture_output=True, text=True,
                            env=os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr
    blocks = {block.split(" ", 1)[0]: block for block in result.stdout.split("== ")[1:]}
    assert PAPER_SOURCES | {"sst2"} <= set(blocks)
    assert f"local copy: test split {shared_data / 'gsm8k_test.jsonl'}" in blocks["gsm8k"]
    assert "#### " in blocks["gsm8k"] and "\n   Answer:\n" in blocks["gsm8k"]  # an example, in paper 1's layout
    assert "offline: not available offline" in blocks["goat"] and "tiedong/goat" in blocks["goat"]
    assert "cannot read it" in blocks["amazon_reviews"]  # the Alexa sample names its fields differently


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_the_papers_experiment_file_validates():
    from crosstask.config import load_experiment
    from crosstask.tasks.data import resolve

    experiment = load_experiment(EXPERIMENTS / "paper1.yaml")
    assert experiment.base_model == "meta-llama/Llama-3.2-3B"
    sources = [ref.task for ref in experiment.source_refs]
    assert len(sources) == 10 and set(sources) <= PAPER_SOURCES
    lora = experiment.lora
    assert (lora.r, lora.alpha, lora.lr, lora.scheduler, lora.warmup_steps) == (64, 32, 5e-5, "cosine", 100)
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    for ref in experiment.source_refs + experiment.target_refs:
        resolve(ref).options(ref.options)  # every task exists and takes these options
    assert all((resolve(ref).about or {}).get("as_target", True) for ref in experiment.target_refs)


def test_dry_run_checks_everything_and_writes_nothing(shared_data: Path, tmp_path: Path):
    before = sorted(path.name for path in EXPERIMENTS.iterdir())
    result = subprocess.run([sys.executable, "-m", "crosstask.cli", "run", str(EXPERIMENTS / "paper1_cpu.yaml"),
                             "--dry-run", "--data-dir", str(shared_data), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "3 adapters to train" in result.stdout and "4 models x 5 targets = 20 cells" in result.stdout
    assert "mnli: 50 items (mnli, choice)" in result.stdout and "nothing was trained" in result.stdout
    assert not (tmp_path / "out").exists() and sorted(path.name for path in EXPERIMENTS.iterdir()) == before

"""The store never loses or mixes results: another experiment is refused, readers check the stored cells
against the run's settings, data paths resolve as the run resolved them, and bad input (an unknown LoRA
module, a hub model that is not available offline) fails in one line before anything is written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from crosstask import api
from crosstask.analysis.base import RunData
from crosstask.errors import CrosstaskError
from crosstask.workspace import Workspace


@pytest.fixture
def settings(tiny_settings) -> dict:
    return tiny_settings | {"sources": ["sentiment_binary", "toxicity"], "targets": ["sentiment_binary", "toxicity"]}


@pytest.fixture
def finished_run(settings, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    api.run(settings, out_dir=run_dir, progress=False)
    return run_dir


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "crosstask.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_another_experiment_is_refused_and_replace_discards_the_old_results(settings, finished_run):
    before = snapshot(finished_run)
    other = settings | {"name": "other", "sources": ["nli"]}
    with pytest.raises(CrosstaskError, match="holds the results of experiment 'tiny', not 'other'.*--replace"):
        api.run(other, out_dir=finished_run, progress=False)
    assert snapshot(finished_run) == before
    api.run(other, out_dir=finished_run, progress=False, replace=True)
    assert sorted(p.name for p in (finished_run / "adapters").iterdir()) == ["nli"]
    assert sorted(set(api.load_cells(finished_run)["model"])) == ["base", "nli"]


def test_readers_refuse_a_store_whose_cells_are_not_the_runs(settings, finished_run, monkeypatch):
    from crosstask.jobs import Worker

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Worker, "_evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):  # a rerun with changed settings, killed before it evaluated anything
        api.run(settings | {"eval_examples": 5}, out_dir=finished_run, progress=False)
    monkeypatch.undo()
    message = "6 of 6 cells were made with other settings than the run's"
    for read in (api.report, lambda run: api.analyze(run, only=["asymmetry"], progress=False),
                 lambda run: api.predict(run, "nli"), lambda run: api.export_lm_eval(run, run.parent / "x")):
        with pytest.raises(CrosstaskError, match=message):
            read(finished_run)
    result = cli("report", str(finished_run))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_analyses_resolve_data_paths_against_the_experiment_files_folder(settings, tmp_path, monkeypatch):
    study = tmp_path / "study"
    (study / "data").mkdir(parents=True)
    records = [{"text": f"review number {i} was {'great' if i % 2 else 'awful'}", "label": i % 2} for i in range(40)]
    (study / "data" / "reviews.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    source = {"task": "sentiment_binary", "name": "reviews",
              "data": {"path": "data/reviews.jsonl", "input": "text", "target": "label", "eval_split": "train",
                       "label_map": {"0": "negative", "1": "positive"}}}
    (study / "experiment.yaml").write_text(yaml.safe_dump(settings | {"sources": [source]}))
    run_dir = tmp_path / "run"
    api.run(study / "experiment.yaml", out_dir=run_dir, progress=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a relative data.path must not be read from the current directory
    examples = RunData(run_dir).train_examples("reviews")
    assert len(examples) == 8 and all(example.input.startswith("review number") for example in examples)


def test_an_unknown_lora_module_is_one_line_and_leaves_the_run_untouched(settings, finished_run, tmp_path):
    before = snapshot(finished_run)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(settings | {"lora": settings["lora"] | {"target_modules": ["q_proj", "qq_proj"]}}))
    result = cli("run", str(config), "--out", str(finished_run), "--quiet")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "lora.target_modules: 'qq_proj' is not a module of" in result.stderr and "q_proj" in result.stderr
    assert snapshot(finished_run) == before


@pytest.mark.parametrize("env, message", [
    ({"HF_HUB_OFFLINE": "1"}, "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
    ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "is unreachable"),
], ids=["offline", "unreachable hub"])
def test_a_hub_model_not_available_offline_is_one_line_and_leaves_the_run_untouched(
        settings, finished_run, tmp_path, env, message):
    before = snapshot(finished_run)
    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump(settings | {"base_model": "nobody-here/no-such-model"}))
    result = cli("run", str(config), "--out", str(finished_run), "--quiet", env={"HF_HUB_OFFLINE": "0", **env})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert "hf download nobody-here/no-such-model" in result.stderr
    assert snapshot(finished_run) == before


def test_run_outputs_are_written_through_one_atomic_helper(finished_run):
    """No file of a run directory is left half written: every writer goes through crosstask.files, except
    the files put into a scratch folder that is renamed into place whole (adapters)."""
    import re

    direct = re.compile(r"\.savefig\((?!stream)|\.to_csv\((?!\)|index=|float_format=|\*\*)|\.write_(text|bytes)\(|"
                        r"np\.save\((?!buffer|stream|handle)")
    scratch_writers = {"training.py", "workspace.py", "jobs.py"}  # into scratch folders renamed whole
    source = Path(api.__file__).parent
    offenders = [f"{path.relative_to(source)}:{number}" for path in sorted(source.rglob("*.py"))
                 if path.name != "files.py" and path.name not in scratch_writers
                 for number, line in enumerate(path.read_text().splitlines(), 1) if direct.search(line)]
    assert offenders == []
    assert not list(finished_run.glob(".*.png.*")) and not list(finished_run.glob(".report.html.*"))
    matrix = pd.read_csv(finished_run / "matrix.csv", index_col="model")
    assert list(matrix.index) == ["base", "sentiment_binary", "toxicity"]
    assert Workspace(finished_run).store.latest_run()["base_dir"] == str(Path(".").resolve())

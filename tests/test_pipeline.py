"""End to end on a tiny random model: files, resumability, content keys, and bad input."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from crosstask import api
from crosstask.config import ConfigError, parse_experiment
from crosstask.errors import CrosstaskError
from crosstask.pipeline import plan
from crosstask.workspace import Workspace


@pytest.fixture
def settings(tiny_settings) -> dict:
    return tiny_settings | {
        "sources": ["sentiment_binary", {"task": "nli", "name": "nli_noisy", "noise": 0.5},
                    {"task": "toxicity", "balance": {"toxic": 1, "neutral": 0}}],
        "targets": ["sentiment_binary", {"task": "toxicity", "balance": {"toxic": 2, "neutral": 1}},
                    "arithmetic_large"],
        # A high rate so that each adapter of the random tiny model drifts to its own source's labels.
        "lora": tiny_settings["lora"] | {"epochs": 2},
    }


def _cells(run_dir: Path) -> pd.DataFrame:
    return api.load_cells(run_dir).set_index(["model", "target"]).sort_index()


def test_run_writes_matrix_traits_and_report_then_resumes_with_no_work(settings, tmp_path):
    run_dir = tmp_path / "run"
    report = api.run(settings, out_dir=run_dir, progress=False)
    assert report == run_dir / "report.html" and report.is_file()
    matrix = pd.read_csv(run_dir / "matrix.csv")
    assert list(matrix.columns) == ["model", "sentiment_binary", "toxicity", "arithmetic_large"]
    assert list(matrix["model"]) == ["base", "sentiment_binary", "nli_noisy", "toxicity"]
    assert matrix.drop(columns="model").stack().between(0, 1).all()
    traits = json.loads((run_dir / "traits.json").read_text())
    assert set(traits) == {"input", "adapters", "tasks", "components", "explained_variance_ratio", "weights", "top_tasks"}
    assert traits["adapters"] == ["sentiment_binary", "nli_noisy", "toxicity"]
    for name in ["sentiment_binary", "nli_noisy", "toxicity"]:
        assert (run_dir / "adapters" / name / "adapter_model.safetensors").is_file()
    items = api.load_items(run_dir)
    assert len(items) == 4 * 3 * 6
    choice = items[items["target"] == "sentiment_binary"].iloc[0]
    assert set(choice["logliks"]) == {"positive", "negative"}
    generated = items[items["target"] == "arithmetic_large"].iloc[0]
    assert generated["generated_tokens"] >= 0 and isinstance(generated["generated"], str)
    intervals = pd.read_csv(run_dir / "intervals.csv")
    assert len(intervals) == 3 * 3 and (intervals["low"] <= intervals["delta"]).all()

    before = _cells(run_dir)
    experiment = parse_experiment(settings)
    assert Workspace(run_dir).pending(plan(experiment, root=run_dir).jobs) == []
    started = time.perf_counter()
    api.run(settings, out_dir=run_dir, progress=False)
    assert time.perf_counter() - started < 30
    pd.testing.assert_frame_equal(_cells(run_dir), before)


def test_a_changed_setting_reruns_only_the_work_it_affects(settings, tmp_path):
    run_dir = tmp_path / "run"
    api.run(settings, out_dir=run_dir, progress=False)
    before = _cells(run_dir)
    keys_before = Workspace(run_dir).store.adapters().set_index("name")["key"]

    settings["targets"][2] = {"task": "arithmetic_large", "examples": 4}
    api.run(settings, out_dir=run_dir, progress=False)
    after = _cells(run_dir)
    untouched = after.index.get_level_values("target") != "arithmetic_large"
    assert (after.loc[untouched, "created"] == before.loc[untouched, "created"]).all()
    assert (after.loc[(slice(None), "arithmetic_large"), "n_items"] == 4).all()
    assert (Workspace(run_dir).store.adapters().set_index("name")["key"] == keys_before).all()

    settings["sources"][2] = {"task": "toxicity", "seed": 7}
    api.run(settings, out_dir=run_dir, progress=False)
    final = _cells(run_dir)
    changed = final["created"] != after["created"]
    assert set(changed[changed].index.get_level_values("model")) == {"toxicity"}

    settings["sources"][0] = {"task": "sentiment_binary", "lora": {"epochs": 1}}  # its own training only
    api.run(settings, out_dir=run_dir, progress=False)
    retrained = _cells(run_dir)["created"] != final["created"]
    assert set(retrained[retrained].index.get_level_values("model")) == {"sentiment_binary"}


def test_interrupted_run_keeps_finished_cells_and_resumes(settings, tmp_path, monkeypatch):
    from crosstask.jobs import Worker

    run_dir = tmp_path / "run"
    real = Worker._evaluate
    calls = {"n": 0}

    def interrupt_after_three(*args, **kwargs):
        if calls["n"] == 3:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(Worker, "_evaluate", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        api.run(settings, out_dir=run_dir, progress=False)
    kept = _cells(run_dir)
    assert len(kept) == 3
    monkeypatch.setattr(Worker, "_evaluate", real)
    api.run(settings, out_dir=run_dir, progress=False)
    resumed = _cells(run_dir)
    assert len(resumed) == 12
    assert (resumed.loc[kept.index, "created"] == kept["created"]).all()


def test_kill_9_mid_run_loses_nothing(settings, tmp_path):
    run_dir = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    settings["eval_examples"] = 12
    config.write_text(yaml.safe_dump(settings))
    command = [sys.executable, "-m", "crosstask.cli", "run", str(config), "--out", str(run_dir), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = run_dir / "results.sqlite"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if database.is_file():
            try:
                with sqlite3.connect(database) as connection:
                    if connection.execute("SELECT count(*) FROM cells").fetchone()[0] >= 2:
                        break
            except sqlite3.OperationalError:  # the schema is not written yet
                pass
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with sqlite3.connect(database) as connection:
        cells = connection.execute("SELECT model, target, n_items, created FROM cells").fetchall()
        for model, target, n_items, _ in cells:
            stored = connection.execute("SELECT count(*) FROM items WHERE model=? AND target=?",
                                        (model, target)).fetchone()[0]
            assert stored == n_items == 12
    assert subprocess.run(command, capture_output=True).returncode == 0
    resumed = _cells(run_dir)
    assert len(resumed) == 12
    for model, target, _, created in cells:
        assert resumed.loc[(model, target), "created"] == created


@pytest.mark.parametrize("change, message", [
    ({"sources": ["no_such_task"]}, "unknown task 'no_such_task'"),
    ({"base_model": "./no/such/folder"}, "unknown model"),
    ({"targets": [{"task": "nli", "options": {"hardness": 1}}]}, "hardness"),
])
def test_bad_input_writes_nothing(settings, tmp_path, change, message):
    fresh = tmp_path / "fresh"
    with pytest.raises(CrosstaskError, match=message):
        api.run({**settings, **change}, out_dir=fresh, progress=False)
    assert not fresh.exists()


def test_bad_input_on_an_existing_run_leaves_its_store_untouched(settings, tmp_path):
    run_dir = tmp_path / "run"
    api.run(settings, out_dir=run_dir, progress=False)
    before = (run_dir / "results.sqlite").read_bytes(), sorted(p.name for p in run_dir.rglob("*"))
    data = tmp_path / "labels.jsonl"
    data.write_text('{"text": "fine", "label": "maybe"}\n')
    bad = {**settings, "targets": [{"task": "sentiment_binary", "data": {"path": str(data), "input": "text",
                                                                        "target": "label"}}]}
    with pytest.raises(CrosstaskError, match="label 'maybe', not one of"):
        api.run(bad, out_dir=run_dir, progress=False)
    assert ((run_dir / "results.sqlite").read_bytes(), sorted(p.name for p in run_dir.rglob("*"))) == before


def test_report_rebuilds_from_the_store(settings, tmp_path):
    run_dir = tmp_path / "run"
    api.run(settings, out_dir=run_dir, progress=False)
    for name in ["report.html", "matrix.csv", "traits.json", "matrix_delta.png"]:
        (run_dir / name).unlink()
    api.report(run_dir)
    assert (run_dir / "report.html").is_file() and (run_dir / "matrix_delta.png").is_file()
    with pytest.raises(CrosstaskError, match="not a crosstask run directory"):
        api.report(tmp_path)


def test_fewshot_targets_show_solved_train_examples_before_each_item(settings):
    settings["targets"] = [{"task": "word_problems", "fewshot": 2}, "sentiment_binary"]
    the_plan = plan(parse_experiment(settings))
    jobs = {target: the_plan.eval_cell("base", target)[0] for target in the_plan.columns}
    prompt = jobs["word_problems"].spec.prompt(jobs["word_problems"].examples[0])
    assert prompt.count("\n#### ") == 2 and prompt.count("\n\n") == 2
    assert prompt.endswith(jobs["word_problems"].examples[0].input + "\nAnswer:")
    evaluated = {example.input for example in jobs["word_problems"].examples}
    assert not any(example_input in prompt.split("\n\n")[0] for example_input in evaluated)
    assert "\n\n" not in jobs["sentiment_binary"].spec.prompt(jobs["sentiment_binary"].examples[0])
    with pytest.raises(ConfigError, match="applies to targets only"):
        parse_experiment({**settings, "sources": [{"task": "nli", "fewshot": 1}]})


def test_seed_replicates_train_one_adapter_per_seed_and_the_matrix_is_their_mean(settings, tmp_path):
    run_dir = tmp_path / "run"
    one_seed = settings | {"sources": ["sentiment_binary", "toxicity"], "targets": ["sentiment_binary", "toxicity"]}
    api.run(one_seed, out_dir=run_dir, progress=False)
    first = Workspace(run_dir).store.adapters().set_index("name")["key"]
    api.run(one_seed, out_dir=run_dir, progress=False, seeds=[0, 1])  # as `crosstask run --seeds 0 1`
    adapters = Workspace(run_dir).store.adapters().set_index("name")["key"]
    assert sorted(adapters.index) == ["sentiment_binary", "sentiment_binary@seed1", "toxicity", "toxicity@seed1"]
    assert adapters["sentiment_binary"] == first["sentiment_binary"]  # seed 0's adapter was kept, not retrained
    weights = [(run_dir / "adapters" / name / "adapter_model.safetensors").read_bytes()
               for name in ["sentiment_binary", "sentiment_binary@seed1"]]
    assert weights[0] != weights[1]
    matrix = pd.read_csv(run_dir / "matrix.csv", index_col="model")
    by_seed = pd.read_csv(run_dir / "matrix_by_seed.csv", index_col=["model", "seed"])
    assert list(by_seed.index) == [("base", 0), ("sentiment_binary", 0), ("sentiment_binary", 1), ("toxicity", 0),
                                   ("toxicity", 1)]
    mean = by_seed.groupby(level="model", sort=False).mean()
    pd.testing.assert_frame_equal(matrix, mean.loc[matrix.index], atol=1e-4, check_names=False)
    intervals = pd.read_csv(run_dir / "intervals.csv")
    assert (intervals["n_seeds"] == 2).all() and intervals["seed_sd"].notna().all()
    html = (run_dir / "report.html").read_text()
    assert "over 2 training seeds and the items" in html and "Benjamini–Hochberg-corrected across the 4 cells" in html


def test_seeds_must_be_distinct_and_names_may_not_mark_a_seed(settings):
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        parse_experiment(settings | {"seeds": [1, 1]})
    with pytest.raises(ConfigError, match="may not contain '@seed'"):
        parse_experiment(settings | {"sources": [{"task": "nli", "name": "nli@seed2"}]})


def test_a_worker_holds_few_adapters_and_loads_each_once(settings, tmp_path, monkeypatch):
    from crosstask import jobs
    from crosstask.backends.hf import HFBackend

    roomy = tmp_path / "roomy"
    api.run(settings, out_dir=roomy, progress=False)

    loads, held = [], []
    load, ensure = HFBackend.load_adapter, jobs.Worker._ensure_adapter

    def counting_load(self, name, path):
        loads.append(name)
        load(self, name, path)

    def recording_ensure(self, backend, adapter, needed=frozenset()):
        ensure(self, backend, adapter, needed)
        held.append(len(backend.adapters()))

    monkeypatch.setattr(jobs, "MAX_RESIDENT_ADAPTERS", 1)
    monkeypatch.setattr(HFBackend, "load_adapter", counting_load)
    monkeypatch.setattr(jobs.Worker, "_ensure_adapter", recording_ensure)
    tight = tmp_path / "tight"
    api.run(settings, out_dir=tight, progress=False)
    assert sorted(loads) == ["nli_noisy", "sentiment_binary", "toxicity"]  # cells come adapter by adapter
    assert held and max(held) == 1
    pd.testing.assert_frame_equal(api.load_items(tight), api.load_items(roomy))


def test_generate_batch_size_reaches_the_backend_and_changes_no_answer(settings, tmp_path, monkeypatch):
    from crosstask.backends.hf import HFBackend

    decoded_with = []  # (batch_size, generate_batch_size) of every generate call
    generate = HFBackend._generate
    monkeypatch.setattr(HFBackend, "_generate", lambda self, *args: decoded_with.append(
        (self.batch_size, self.generate_batch_size)) or generate(self, *args))
    small = settings | {"sources": ["sentiment_binary"], "targets": ["arithmetic_large"]}
    api.run(small, out_dir=tmp_path / "plain", progress=False)
    plain_calls = len(decoded_with)
    api.run(small | {"eval": small["eval"] | {"generate_batch_size": 5}}, out_dir=tmp_path / "wide", progress=False)
    assert set(decoded_with[:plain_calls]) == {(4, None)} and set(decoded_with[plain_calls:]) == {(4, 5)}
    plain, wide = (api.load_items(tmp_path / name).sort_values(["model", "item"]) for name in ("plain", "wide"))
    assert list(plain["generated"]) == list(wide["generated"]) and len(plain) == 2 * 6

"""arithmetic_sentiment, pattern dynamics during training, and pattern-guided data mixing (tiny random Llama)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from crosstask.config import ConfigError, LoraSettings, TaskRef
from crosstask.heads import activation_pattern
from crosstask.heads.dynamics import examples_seen, pattern_dynamics
from crosstask.heads.figures import dynamics_figure, dynamics_reading
from crosstask.mixing import load_mixing_study, run_mixing, warmup_counts
from crosstask.models import load_model, resolve_model
from crosstask.store import Store
from crosstask.tasks.base import TaskError
from crosstask.tasks.data import build_examples, resolve
from crosstask.tasks.generators.composite import ArithmeticSentimentOptions, make_story

TASK = TaskRef(task="arithmetic_sentiment")
TINY_LORA = {"r": 2, "alpha": 4, "batch_size": 4, "max_length": 192, "lr": 0.05, "min_steps": None}


# --- the complex task ---------------------------------------------------------------------------------

def test_arithmetic_sentiment_is_deterministic_per_seed_and_split():
    first = build_examples(TASK, "train", 40, seed=3)
    assert first == build_examples(TASK, "train", 40, seed=3)
    assert [e.input for e in first] != [e.input for e in build_examples(TASK, "train", 40, seed=4)]
    assert [e.input for e in first] != [e.input for e in build_examples(TASK, "eval", 40, seed=3)]
    assert Counter(e.answer for e in first) == {"positive": 20, "negative": 20}


@pytest.mark.parametrize("form", ["net", "periods", "goal"])
def test_labels_follow_the_arithmetic(form):
    options = ArithmeticSentimentOptions(forms=(form,))
    for seed in range(300):
        good = seed % 2 == 0
        story = make_story(random.Random(seed), good, options)
        assert story.good == good and story.outcome != story.reference
        # Recompute from the numbers written in the story: every term and the reference appear in it.
        written = [int(number) for number in re.findall(r"\d+", story.text)]
        assert sorted(written) == sorted([abs(term) for term in story.terms] + [story.reference] * (form != "net"))
        if form == "net":  # start, a gain and a loss: good iff the gain is larger
            start, gained, lost = story.terms
            assert lost < 0 < gained and (gained > -lost) == good and start == story.reference
        if form == "goal":
            assert (sum(story.terms) > story.reference) == good and story.higher_is_better


def test_unwelcome_counts_reverse_the_sentiment():
    stories = [make_story(random.Random(seed), True, ArithmeticSentimentOptions(forms=("periods",)))
               for seed in range(200)]
    unwelcome = [story for story in stories if not story.higher_is_better]
    assert unwelcome and all(story.outcome < story.reference for story in unwelcome)  # fewer accidents: good
    assert all(story.outcome > story.reference for story in stories if story.higher_is_better)


def test_train_and_eval_items_are_disjoint_and_dials_work():
    held_out = build_examples(TASK, "eval", 100, seed=0)
    train = build_examples(TASK, "train", 300, seed=0, exclude=frozenset(e.input for e in held_out))
    assert not {e.input for e in held_out} & {e.input for e in train}
    skewed = build_examples(TASK.model_copy(update={"balance": {"positive": 0.75, "*": 0.25}}), "train", 40, seed=0)
    assert Counter(e.answer for e in skewed) == {"positive": 30, "negative": 10}
    noisy = build_examples(TASK.model_copy(update={"noise": 0.25}), "train", 40, seed=0)
    clean = build_examples(TASK, "train", 40, seed=0)
    assert sum(a.answer != b.answer for a, b in zip(noisy, clean)) == 10


def test_bad_options_fail_with_their_name():
    with pytest.raises(TaskError, match="max_number"):
        resolve(TASK).options({"max_number": 5})


# --- dynamics -----------------------------------------------------------------------------------------

def test_examples_seen_counts_short_last_batches():
    assert [examples_seen(step, 10, 4) for step in range(7)] == [0, 4, 8, 10, 14, 18, 20]


def test_dynamics_snapshots_at_the_configured_steps(tiny_model_dir, tmp_path):
    source_spec = resolve(TaskRef(task="sentiment_binary")).spec
    source = build_examples(TaskRef(task="sentiment_binary"), "train", 20, seed=0)  # 5 steps of 4
    probe = build_examples(TASK, "eval", 4, seed=0)
    lora = LoraSettings(**TINY_LORA)
    result = pattern_dynamics(str(tiny_model_dir), source_spec, source, resolve(TASK).spec, probe, lora, every=2,
                              dtype="float32", batch_size=4)
    table = result.table
    assert table["step"].tolist() == [0, 2, 4, 5] and table["examples_seen"].tolist() == [0, 8, 16, 20]
    assert result.snapshots.shape == (4, 2, 4)
    assert table["corr_to_final"].iloc[-1] == pytest.approx(1.0) and table["mse_to_final"].iloc[-1] == 0
    assert table["corr_to_base"].iloc[0] == pytest.approx(1.0) and table["mse_to_base"].iloc[0] == 0
    assert table["mse_to_base"].iloc[-1] > 0  # training moved the pattern
    # Step 0 is the base model: the LoRA update starts at zero.
    base = load_model(resolve_model(str(tiny_model_dir)), torch.float32)
    np.testing.assert_allclose(result.snapshots[0], activation_pattern(base, _tokenizer(tiny_model_dir),
                                                                      resolve(TASK).spec, probe, 4), rtol=1e-4)
    csv_path, npy_path = result.save(tmp_path, "sentiment_binary", "arithmetic_sentiment")
    assert csv_path.name == "dynamics_sentiment_binary__arithmetic_sentiment.csv"
    assert np.load(npy_path).shape == (4, 2, 4) and len(pd.read_csv(csv_path)) == 4
    figure = dynamics_figure(table, tmp_path / "dynamics.png", "sentiment_binary", "arithmetic_sentiment")
    assert figure.path.is_file() and "step" in dynamics_reading(table, "sentiment_binary", "arithmetic_sentiment")


def _tokenizer(folder):
    from crosstask.models import load_tokenizer

    return load_tokenizer(resolve_model(str(folder)))


# --- mixing -------------------------------------------------------------------------------------------

def _study(tiny_model_dir, **changes) -> dict:
    settings = {
        "name": "tiny-mix", "base_model": str(tiny_model_dir), "precision": "fp32",
        "complex": "arithmetic_sentiment",
        "basics": ["sentiment_binary", {"task": "arithmetic_large", "options": {"max_digits": 2}}, "nli"],
        "scarce_examples": 8, "warmup_examples": 8, "basic_examples": 8, "probe_examples": 4, "eval_examples": 8,
        "seeds": [0], "lora": TINY_LORA, "heads": {"batch_size": 4}, "eval": {"batch_size": 8,
                                                                           "bootstrap_resamples": 100},
    }
    return settings | changes


def test_warmup_counts_follow_the_proportions():
    counts = warmup_counts(pd.Series({"a": 0.5, "b": 0.3, "c": 0.2}), 7)
    assert counts.sum() == 7 and counts.to_dict() == {"a": 4, "b": 2, "c": 1}
    assert warmup_counts(pd.Series({"a": 1.0, "b": 0.0}), 5).to_dict() == {"a": 5, "b": 0}


def test_mixing_runs_end_to_end_and_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "mix"
    outcome = run_mixing(_study(tiny_model_dir), out)
    mixing, alpha = pd.read_csv(out / "mixing.csv"), pd.read_csv(out / "alpha.csv")
    assert {"plain", "alpha", "uniform", "base"} == set(mixing["method"])
    assert list(mixing.columns) == ["method", "seed", "accuracy", "n_items", "difference", "low", "high"]
    assert (mixing.loc[mixing["seed"] == "0", "n_items"] == 8).all()
    for _, fit in alpha.groupby("delta_on"):
        assert set(fit["basic"]) == {"sentiment_binary", "arithmetic_large", "nli"}
        if fit["weight"].sum() > 0:
            assert fit["proportion"].sum() == pytest.approx(1.0)
            np.testing.assert_allclose(fit["proportion"], fit["weight"] / fit["weight"].sum(), rtol=1e-5)
    assert alpha.loc[alpha["used"], "delta_on"].unique().tolist() == ["own"]
    assert alpha["r2_p_value"].between(0, 1).all() and alpha["r2_null_median"].notna().all()
    assert alpha["r2"].notna().all() and alpha["r2_fit"].notna().all()
    store = Store(out / "results.sqlite")
    adapters = store.adapters().set_index("name")
    assert json.loads(adapters.loc["alpha_s0_warmup", "metrics"])["examples"] == 8
    # α's complex adapter trains on the scarce set without its 4 probe items.
    assert json.loads(adapters.loc["probe_heldout_s0", "metrics"])["examples"] == 4
    assert set(store.cells()["model"]) == {"base", "plain_s0", "alpha_s0", "uniform_s0"}
    patterns = store.patterns()
    # Each pattern on both halves of its probe items: base on 4 tasks, each basic adapter on 2, the complex one on 1.
    assert len(patterns) == 2 * (4 + 2 * 3 + 1) and set(patterns["items"]) == {2}
    assert set(patterns["task"]) == {f"{half}{task}" for half in ("fit:", "held-out:") for task in
                                     ("arithmetic_sentiment", "sentiment_binary", "arithmetic_large", "nli")}
    used = alpha[alpha["used"]].set_index("basic")["proportion"]
    assert warmup_counts(used, 8).sum() == 8
    for adapter in ("plain_s0", "alpha_s0", "uniform_s0", "basic_nli"):
        assert (out / "adapters" / adapter / "adapter_model.safetensors").is_file()
    assert outcome.figure.path.is_file() and "α-weighted warm-up reaches" in outcome.reading
    report = (out / "report.html").read_text()
    assert "Pattern-guided data mixing" in report and "data:image/png;base64" in report
    # A second call finds every piece in the store: nothing is trained, measured or evaluated again.
    again = run_mixing(_study(tiny_model_dir), out)
    assert json.loads((out / "summary.json").read_text())["jobs_run"] == 0
    pd.testing.assert_frame_equal(again.table, outcome.table)


def test_mixing_probes_are_never_training_items_of_the_adapter_measured(tiny_model_dir, tmp_path):
    from crosstask.mixing import _Runner

    for complex_probe, complex_adapter in [("held_out", "probe_heldout_s0"), ("training", "plain_s0")]:
        study = load_mixing_study(_study(tiny_model_dir, heads={"batch_size": 4, "complex_probe": complex_probe}))
        runner = _Runner(study, tmp_path / complex_probe)
        runner.open()
        trained = {job.adapter: {example.input for example in job.examples} for job in runner.alpha_jobs()
                   if job.kind == "train"}
        assert runner.complex_alpha_adapter == complex_adapter and complex_adapter in trained
        for basic in ("sentiment_binary", "arithmetic_large", "nli"):
            probes = {example.input for example in runner.probes[basic]}
            assert len(probes) == 4 and not probes & trained[f"basic_{basic}"]
        complex_probes = {example.input for example in runner.probes["arithmetic_sentiment"]}
        assert bool(complex_probes & trained[complex_adapter]) == (complex_probe == "training")
        assert complex_probes <= {example.input for example in runner.scarce[0]}


@pytest.mark.parametrize("change, message", [
    ({"basics": []}, "basics: List should have at least 1 item"),
    ({"probe_examples": 8}, "probe_examples (8) must be below scarce_examples (8)"),
    ({"probe_examples": 20, "heads": {"complex_probe": "training"}}, "probe_examples (20) must not exceed"),
    ({"probe_examples": 1}, "probe_examples: Input should be greater than or equal to 2"),
    ({"lora": {"rank": 4}}, "lora.rank: unknown key"),
    ({"basics": ["sentiment_binary", "nope"]}, "unknown task 'nope'"),
    ({"seeds": [1, 1]}, "seeds must be distinct"),
])
def test_bad_study_is_a_one_line_config_error(tiny_model_dir, change, message):
    with pytest.raises(Exception) as caught:
        load_mixing_study(_study(tiny_model_dir, **change))
    assert isinstance(caught.value, (ConfigError, TaskError))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_cli_mix_reports_bad_input_in_one_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("name: x\ncomplex: arithmetic_sentiment\nbasics: [nli]\nwarmup: 3\n")
    result = subprocess.run([sys.executable, "-m", "crosstask.cli", "mix", str(config), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "warmup: unknown key" in result.stderr and not (tmp_path / "o").exists()


def test_mixing_intervals_over_seeds_are_clustered_by_item():
    from crosstask.mixing import mixing_table

    rng = np.random.default_rng(0)
    n = 120
    plain = rng.random(n) < 0.5
    rows = []
    for seed, better in [(0, True), (1, False)]:  # the warm-up helps with one seed and hurts with the other
        alpha = plain | (rng.random(n) < 0.4) if better else plain & (rng.random(n) < 0.6)
        for method, correct in [("base", plain), ("plain", plain), ("alpha", alpha), ("uniform", plain)]:
            rows += [{"method": method, "seed": seed, "item": i, "correct": bool(c)} for i, c in enumerate(correct)]
    table = mixing_table(pd.DataFrame(rows), n_resamples=4000).set_index(["method", "seed"])
    per_seed = [table.loc[("alpha", str(seed))] for seed in (0, 1)]
    overall = table.loc[("alpha", "all")]
    assert per_seed[0]["low"] > 0 and per_seed[1]["high"] < 0  # each seed alone looks decisive
    assert overall["difference"] == pytest.approx((per_seed[0]["difference"] + per_seed[1]["difference"]) / 2)
    assert overall["low"] < 0 < overall["high"]  # drawing seeds keeps their disagreement in the interval
    assert overall["high"] - overall["low"] > max(s["high"] - s["low"] for s in per_seed)
    assert overall["n_items"] == 2 * n

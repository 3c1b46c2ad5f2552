"""Length, label and asymmetry analyses on hand-built inputs with known answers, and `crosstask analyze` on a run."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape

from crosstask import api
from crosstask.analysis.asymmetry import TransferAsymmetry
from crosstask.analysis.labels import LabelShift, PriorInheritance, inheritance_tests, js_divergence, map_prior
from crosstask.analysis.lengths import LengthShift, interpolation_coefficient
from crosstask.analysis.suite import analyze_run, register_analysis
from crosstask.analysis.variants import compare_variants
from crosstask.cli import main
from crosstask.tasks.catalog import get_family


def test_interpolation_is_zero_at_base_one_at_source_and_half_between():
    rng = np.random.default_rng(0)
    base, source = rng.normal(10, 2, 400), rng.normal(60, 5, 300)
    assert interpolation_coefficient(base, base, source) == pytest.approx(0, abs=0.03)
    assert interpolation_coefficient(source, base, source) == pytest.approx(1, abs=0.03)
    halfway = np.concatenate([np.quantile(base, q := np.linspace(0, 1, 200)) * 0.5 + np.quantile(source, q) * 0.5])
    assert interpolation_coefficient(halfway, base, source) == pytest.approx(0.5, abs=0.03)
    assert np.isnan(interpolation_coefficient(base, source, source))


def test_length_shift_distance_is_zero_for_an_adapter_that_writes_gold_lengths():
    gold = np.array([5, 6, 7, 8])
    shift = LengthShift().fit({"good": gold, "long": gold + 40}, gold, base=np.array([30, 30, 31, 32]),
                              source_lengths={"good": gold, "long": np.array([45, 46, 47, 48])},
                              scores={"good": 0.9, "long": 0.1})
    table = shift.table_.set_index("model")
    assert table.at["good", "wasserstein_to_gold"] == 0
    assert table.at["long", "wasserstein_to_gold"] == pytest.approx(40)
    assert table.at["long", "interpolation"] > 0.9  # wrote like its source
    assert table.at["good", "score"] == 0.9


def test_a_model_that_always_predicts_one_class():
    labels = ("positive", "negative")
    gold = ["positive", "negative"] * 5
    shift = LabelShift(labels).fit(gold, {"base": gold, "stuck": ["negative"] * 10},
                                   {"stuck": np.array([0.0, 1.0])})
    table = shift.table_.set_index("model")
    assert table.at["base", "js_to_gold"] == 0 and table.at["base", "accuracy"] == 1
    assert table.at["stuck", "accuracy"] == 0.5
    assert json.loads(table.at["stuck", "predicted"]) == {"positive": 0.0, "negative": 1.0}
    assert table.at["stuck", "js_to_source"] == 0  # exactly its source's all-negative prior
    assert table.at["stuck", "toward_source"] == pytest.approx(js_divergence(np.array([.5, .5]), np.array([0, 1.])))
    confusion = shift.confusion_["stuck"]
    assert confusion.loc["positive", "negative"] == 5 and confusion["positive"].sum() == 0


def test_source_priors_map_across_tasks_by_label_meaning():
    binary, rating = get_family("sentiment_binary").spec, get_family("rating_5star").spec
    prior = map_prior(["positive"] * 3 + ["negative"], binary, rating)
    assert dict(zip(rating.labels, prior)) == pytest.approx({"1": .125, "2": .125, "3": 0, "4": .375, "5": .375})
    assert map_prior(["positive"], binary, get_family("nli").spec) is None


def test_asymmetry_of_a_known_matrix():
    delta = pd.DataFrame([[0.3, 0.2, 0.0], [-0.1, 0.4, 0.1]], index=["a", "b"], columns=["a", "b", "c"])
    fitted = TransferAsymmetry().fit(delta)
    row = fitted.table_.iloc[0]
    assert (row["task_a"], row["task_b"]) == ("a", "b") and row["asymmetry"] == pytest.approx(0.3)
    assert np.allclose(fitted.matrix_, -fitted.matrix_.T)
    with pytest.raises(ValueError, match="at least two"):
        TransferAsymmetry().fit(delta.loc[["a"]])


def test_asymmetry_made_by_a_target_everyone_hurts_is_not_left_for_the_pair():
    # "math" is hurt by every adapter (a column effect): raw, every pair with it looks one-way.
    tasks = ["math", "s1", "s2", "s3"]
    delta = pd.DataFrame(0.0, index=tasks, columns=tasks)
    delta["math"] = -0.3
    table = TransferAsymmetry().fit(delta).table_.set_index(["task_a", "task_b"])
    assert table.loc[("math", "s1"), "asymmetry"] == pytest.approx(0.3)
    assert table["pair_asymmetry"].abs().max() == pytest.approx(0.0, abs=1e-12)


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    return shutil.copytree(tiny_run, tmp_path / "run")


def test_analyze_writes_tables_figures_and_report_sections(run_copy):
    sections = analyze_run(run_copy, only=["lengths", "labels", "asymmetry"])
    assert [section.name for section in sections] == ["lengths", "labels", "asymmetry"]
    out = run_copy / "analysis"
    lengths = pd.read_csv(out / "lengths.csv")
    assert set(lengths["target"]) == {"word_problems"}
    assert set(lengths["model"]) == {"sentiment_binary", "word_problems", "nli"}
    labels = pd.read_csv(out / "labels.csv")
    assert set(labels["target"]) == {"sentiment_binary", "sentiment_3way", "nli"}
    assert len(labels) == 3 * 4
    assert len(pd.read_csv(out / "asymmetry.csv")) == 3  # pairs of sentiment_binary, word_problems, nli
    for section in sections:
        assert section.reading and all(figure.path.is_file() for figure in section.figures)
    assert not list(out.glob(".partial-*"))
    report = api.report(run_copy).read_text()
    for title in ("Generation length", "Label distribution", "Asymmetry of transfer"):
        assert title in report
    assert str(escape(sections[0].reading)) in report


def test_sections_go_stale_when_the_cells_change(run_copy):
    analyze_run(run_copy, only=["asymmetry"])
    assert "Asymmetry of transfer" in api.report(run_copy).read_text()
    from crosstask.pipeline import stored_experiment

    changed = stored_experiment(run_copy).model_dump() | {"eval_examples": 6}  # re-evaluates every cell
    report = api.run(changed, out_dir=run_copy, progress=False).read_text()
    assert "Asymmetry of transfer" not in report and "run `crosstask analyze` again" in report


def test_a_failing_analysis_names_itself_and_leaves_earlier_results(run_copy, capsys):
    def broken(run, out_dir):
        (out_dir / "half.csv").write_text("a,b\n1")
        raise ZeroDivisionError("boom")

    register_analysis("broken", broken)
    try:
        analyze_run(run_copy, only=["asymmetry"])
        assert main(["analyze", str(run_copy), "--only", "broken", "--quiet"]) == 2
    finally:
        from crosstask.analysis import suite

        suite.ANALYSES.unregister("broken")
    assert "analysis 'broken' failed: ZeroDivisionError: boom" in capsys.readouterr().err
    out = run_copy / "analysis"
    assert not (out / "half.csv").exists() and not list(out.glob(".partial-*"))
    recorded = json.loads((out / "sections.json").read_text())
    assert [entry["name"] for entry in recorded["sections"]] == ["asymmetry"]


def test_analyze_errors_are_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path), "--quiet"]) == 2
    assert "not a crosstask run directory" in capsys.readouterr().err


def test_compare_variants_gives_the_paired_difference():
    rows = []
    for item in range(20):
        rows.append(("src", "t", item, 1))
        rows.append(("src+mislabeled0.5", "t", item, int(item < 10)))  # wrong on half the items
    items = pd.DataFrame(rows, columns=["model", "target", "item", "correct"])
    table = compare_variants(items, [("src", "src+mislabeled0.5")], n_resamples=500)
    row = table.iloc[0]
    assert (row["source_score"], row["variant_score"], row["difference"]) == (1.0, 0.5, -0.5)
    assert row["high"] < 0 and row["significant"]


def test_variants_become_adapters_and_get_compared(tiny_model_dir, tmp_path):
    settings = {
        "name": "variants", "base_model": str(tiny_model_dir), "precision": "fp32",
        "sources": [{"task": "sentiment_binary", "variants": [{"imbalanced": {"negative": 0.9}}, {"mislabeled": 1.0},
                                                              {"subsample": 4}]}],
        "targets": ["sentiment_binary", "toxicity"], "train_examples": 8, "eval_examples": 6,
        "lora": {"r": 2, "alpha": 4, "batch_size": 4, "max_length": 128, "lr": 0.05, "min_steps": None},
        "eval": {"batch_size": 6, "bootstrap_resamples": 100},
    }
    api.run(settings, out_dir=tmp_path / "run", progress=False)
    names = ["sentiment_binary", "sentiment_binary+imbalanced-negative0.9", "sentiment_binary+mislabeled1",
             "sentiment_binary+subsample4"]
    assert list(api.load_matrix(tmp_path / "run").index) == ["base", *names]
    sections = analyze_run(tmp_path / "run", only=["variants", "labels"])
    table = pd.read_csv(tmp_path / "run" / "analysis" / "variants.csv")
    assert set(table["variant"]) == set(names[1:]) and set(table["target"]) == {"sentiment_binary", "toxicity"}
    assert "mislabeled1" in sections[1].reading
    labels = pd.read_csv(tmp_path / "run" / "analysis" / "labels.csv").set_index(["model", "target"])
    prior = json.loads(labels.at[(names[1], "sentiment_binary"), "source_prior"])
    assert prior == {"positive": 0.125, "negative": 0.875}  # 1 and 7 of the 8 training items


def test_prior_inheritance_separates_learning_the_target_from_leaning_to_the_prior():
    labels = ("toxic", "neutral")
    gold = ["toxic", "neutral"] * 40
    prior = np.array([0.1, 0.9])  # the source favours "neutral"
    always_toxic = ["toxic"] * 80  # the base model's habit, against the favoured label
    learner = PriorInheritance().fit(gold, always_toxic, gold, prior, labels)  # learns the target perfectly
    assert learner.lean_ == 0 and learner.p_value_ == 1 and learner.beyond_base_low_ > 0
    follower = PriorInheritance().fit(gold, always_toxic, ["neutral"] * 80, prior, labels)  # answers by the prior
    assert follower.lean_ == pytest.approx(0.4) and follower.p_value_ < 0.001 and follower.beyond_base_low_ > 0
    items = pd.DataFrame({"model": ["base"] * 80 + ["learner"] * 80 + ["follower"] * 80,
                          "target": "toxicity", "item": list(range(80)) * 3, "gold": gold * 3,
                          "prediction": always_toxic + gold + ["neutral"] * 80})
    priors = {("learner", "toxicity"): prior, ("follower", "toxicity"): prior,
              ("balanced", "toxicity"): np.array([0.5, 0.5])}
    tests = inheritance_tests(items, priors, {"toxicity": labels}).set_index("model")
    assert list(tests.index) == ["learner", "follower"]  # a balanced prior favours nothing: not tested
    assert not tests.at["learner", "inherits"] and tests.at["follower", "inherits"]


def test_prediction_recovers_a_transfer_that_follows_a_feature():
    from crosstask.analysis.prediction import TransferPredictor, leave_one_source_out, score_predictions

    rng = np.random.default_rng(0)
    sources, targets = [f"s{i}" for i in range(6)], [f"t{j}" for j in range(5)]
    index = pd.MultiIndex.from_product([sources, targets], names=["source", "target"])
    features = pd.DataFrame({"semantic_similarity": rng.uniform(0, 1, len(index)),
                             "noise": rng.normal(size=len(index))}, index=index)
    delta = (0.3 * features["semantic_similarity"]).unstack("target")
    fitted = TransferPredictor().fit(features, delta)
    assert fitted.coef_["semantic_similarity"] > 10 * abs(fitted.coef_["noise"])
    embeddings = {source: rng.normal(size=4) for source in sources}
    scores = score_predictions(leave_one_source_out(features, delta, embeddings)).groupby("method").mean(
        numeric_only=True)
    assert scores.at["features", "mae"] < 0.01 and scores.at["features", "spearman"] > 0.95
    assert scores.at["mean_row", "mae"] > 5 * scores.at["features", "mae"]


def test_leave_one_source_out_takes_the_held_out_sources_variants_out_too():
    from crosstask.analysis.prediction import leave_one_source_out, score_predictions

    rng = np.random.default_rng(1)
    sources = ["a", "a+copy", "b", "c", "d"]
    targets = [f"t{j}" for j in range(5)]
    index = pd.MultiIndex.from_product([sources, targets], names=["source", "target"])
    features = pd.DataFrame({"noise": rng.normal(size=len(index))}, index=index)
    delta = pd.DataFrame(rng.normal(size=(5, 5)), index=sources, columns=targets)
    delta.loc["a+copy"] = delta.loc["a"]  # a variant shares its source's data and moves with it
    embeddings = {source: rng.normal(size=4) for source in sources}
    embeddings["a+copy"] = embeddings["a"] + 1e-6
    leaky = score_predictions(leave_one_source_out(features, delta, embeddings)).set_index(["source", "method"])
    clean = score_predictions(leave_one_source_out(features, delta, embeddings, clusters={"a+copy": "a"})
                              ).set_index(["source", "method"])
    assert leaky.at[("a", "nearest_by_embedding"), "mae"] == 0  # copied from its own variant
    assert clean.at[("a", "nearest_by_embedding"), "mae"] > 0.3


def test_ranking_scores_on_hand_built_rankings():
    from crosstask.analysis.prediction import ranking_scores

    measured = [0.30, 0.10, 0.00, -0.20]
    perfect = pd.DataFrame({"source": list("abcd"), "target": "t", "method": "features", "measured": measured,
                            "predicted": measured})
    reversed_ = perfect.assign(method="mean_row", predicted=[-value for value in measured])
    table = ranking_scores(pd.concat([perfect, reversed_]), k=3).set_index("method")
    assert table.at["features", "ndcg"] == pytest.approx(1.0) and table.at["features", "regret"] == 0
    assert table.at["mean_row", "regret"] == pytest.approx(0.30 - 0.10)  # its top 3 are d, c, b
    assert 0 < table.at["mean_row", "ndcg"] < 1
    same_task = ranking_scores(perfect, exclude=[("a", "t")], k=3).iloc[0]
    assert same_task["candidates"] == 3 and same_task["regret"] == 0


def test_ridge_alpha_is_chosen_by_leaving_whole_sources_out():
    from crosstask.analysis.prediction import TransferPredictor

    rng = np.random.default_rng(2)
    sources, targets = [f"s{i}" for i in range(5)], [f"t{j}" for j in range(4)]
    index = pd.MultiIndex.from_product([sources, targets], names=["source", "target"])
    features = pd.DataFrame({"x": rng.normal(size=len(index))}, index=index)
    delta = (0.1 * features["x"]).unstack("target") + rng.normal(0, 0.01, (5, 4))
    fitted = TransferPredictor().fit(features, delta)
    assert fitted.alpha_ in list(TransferPredictor().alphas)
    assert TransferPredictor().fit(features.loc[["s0", "s1"]], delta.loc[["s0", "s1"]]).alpha_ > 0  # too few to CV


def test_prediction_analysis_and_predict_command(run_copy, capsys):
    sections = analyze_run(run_copy, only=["prediction"])
    scores = pd.read_csv(run_copy / "analysis" / "prediction.csv")
    assert set(scores["method"]) == {"features", "mean_row", "nearest_by_embedding"}
    assert set(scores["source"]) == {"sentiment_binary", "word_problems", "nli"}
    assert "mean absolute error" in sections[0].reading and "NDCG@3" in sections[0].reading
    summary = pd.read_csv(run_copy / "analysis" / "prediction_summary.csv").set_index("method")
    assert (summary["mae_low"] <= summary["mae"]).all() and (summary["mae"] <= summary["mae_high"]).all()
    assert main(["predict", str(run_copy), "--source", "{task: toxicity, examples: 10}"]) == 0
    printed = capsys.readouterr().out
    assert "sentiment_3way" in printed and (run_copy / "analysis" / "predict_toxicity.csv").is_file()
    assert main(["predict", str(run_copy), "--source", "{task: toxicity, colour: red}"]) == 2
    assert "colour" in capsys.readouterr().err

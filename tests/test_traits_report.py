import json
import re

import numpy as np
import pandas as pd
import pytest

from crosstask.analysis import LatentTraits, paired_bootstrap
from crosstask.report import write_report

TASKS = ["math", "code", "sentiment", "nli"]


def rank_one_matrix() -> pd.DataFrame:
    """Adapters differ from base only along one direction, dominated by 'code'."""
    base = np.array([0.30, 0.20, 0.60, 0.50])
    direction = np.array([0.2, -0.9, 0.3, 0.1])
    strengths = [-0.1, 0.05, 0.1, 0.2, -0.15]
    rows = {"base": base} | {f"adapter{i}": base + s * direction for i, s in enumerate(strengths)}
    return pd.DataFrame(rows, index=TASKS).T


def with_missing(matrix: pd.DataFrame, row: str, column: str) -> pd.DataFrame:
    matrix.loc[row, column] = np.nan
    return matrix


def items_frame(scores: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """{model: {target: per-item scores}} -> the long items frame."""
    return pd.DataFrame(
        [(model, target, item, value)
         for model, targets in scores.items()
         for target, values in targets.items()
         for item, value in enumerate(values)],
        columns=["model", "target", "item", "correct"],
    )


# ------------------------------------------------------------------------------------------ traits


def test_rank_one_structure_is_one_component_with_the_right_top_task():
    traits = LatentTraits().fit(rank_one_matrix())
    assert traits.explained_variance_ratio_[0] == pytest.approx(1.0)
    assert traits.top_tasks_[0][0] == "code"
    assert traits.components_.shape == (4, 4)  # 5 adapters -> at most 4 centred components
    assert traits.weights_.shape == (5, 4)
    assert traits.adapters_ == [f"adapter{i}" for i in range(5)]
    assert traits.tasks_ == TASKS


def test_sign_convention_makes_largest_loading_positive_and_is_stable():
    matrix = rank_one_matrix()
    first = LatentTraits().fit(matrix)
    # Negating every delta flips sklearn's raw component; our convention must undo that.
    mirrored = 2 * matrix.loc["base"] - matrix
    second = LatentTraits().fit(mirrored)
    for traits in (first, second):
        largest = traits.components_[np.arange(len(traits.components_)), np.abs(traits.components_).argmax(axis=1)]
        assert (largest > 0).all()
    np.testing.assert_allclose(first.components_[0], second.components_[0], atol=1e-9)
    np.testing.assert_allclose(first.weights_[:, 0], -second.weights_[:, 0], atol=1e-9)
    np.testing.assert_allclose(LatentTraits().fit(matrix).weights_, first.weights_)


def test_inputs_delta_raw_standardized():
    rng = np.random.default_rng(0)
    matrix = pd.DataFrame(rng.uniform(0.2, 0.8, (6, 4)), index=["base", *"abcde"], columns=TASKS)
    matrix["code"] = matrix.loc["base", "code"] + (matrix["code"] - matrix.loc["base", "code"]) * 10
    delta, raw, standardized = (LatentTraits(input=kind).fit(matrix) for kind in ("delta", "raw", "standardized"))

    pd.testing.assert_frame_equal(delta.data_, matrix.drop("base") - matrix.loc["base"])
    pd.testing.assert_frame_equal(raw.data_, matrix.drop("base"))
    # Centring cancels the base row, so delta and raw give the same PCA.
    np.testing.assert_allclose(delta.components_, raw.components_, atol=1e-9)
    np.testing.assert_allclose(delta.weights_, raw.weights_, atol=1e-9)
    # Standardizing removes the 10x spread of 'code', which otherwise dominates the first component.
    np.testing.assert_allclose(standardized.data_.std(ddof=0), 1.0)
    assert delta.top_tasks_[0][0] == "code"
    assert abs(standardized.components_[0][TASKS.index("code")]) < abs(delta.components_[0][TASKS.index("code")])


def test_standardized_maps_constant_task_to_zero():
    matrix = rank_one_matrix()
    matrix["flat"] = 0.5
    traits = LatentTraits(input="standardized").fit(matrix)
    assert (traits.data_["flat"] == 0).all()
    assert np.isfinite(traits.components_).all()


def test_to_dict_has_exact_keys_and_is_json_serializable():
    traits = LatentTraits(n_components=2).fit(rank_one_matrix())
    result = traits.to_dict()
    assert list(result) == ["input", "adapters", "tasks", "components", "explained_variance_ratio", "weights", "top_tasks"]
    assert json.loads(json.dumps(result)) == result
    assert len(result["components"]) == 2 and len(result["weights"][0]) == 2
    assert result["top_tasks"][0] == traits.top_tasks_[0] and len(result["top_tasks"][0]) == 3
    assert list(traits.weights_frame().columns) == ["PC1", "PC2"]
    assert list(traits.components_frame().columns) == TASKS


@pytest.mark.parametrize(
    "matrix, options, message",
    [
        (rank_one_matrix().drop("base"), {}, "'base'"),
        (rank_one_matrix().drop("base"), {"input": "standardized"}, "'base'"),
        (with_missing(rank_one_matrix(), "adapter1", "math"), {}, "missing values at adapter1/math"),
        (rank_one_matrix().iloc[:2], {}, "at least 2 adapters"),
        (rank_one_matrix()[["math"]], {}, "at least 2 target tasks"),
        (rank_one_matrix(), {"n_components": 5}, "between 1 and 4"),
        (rank_one_matrix(), {"input": "ranks"}, "input must be one of"),
    ],
)
def test_traits_errors(matrix, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LatentTraits(**options).fit(matrix)


def test_raw_input_needs_no_base_row():
    traits = LatentTraits(input="raw").fit(rank_one_matrix().drop("base"))
    assert traits.explained_variance_ratio_[0] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------- bootstrap


def test_identical_model_gives_zero_delta_not_significant():
    rng = np.random.default_rng(0)
    answers = list(rng.integers(0, 2, 50))
    result = paired_bootstrap(items_frame({"base": {"t": answers}, "copy": {"t": answers}}))
    row = result.iloc[0]
    assert (row.delta, row.low, row.high, row.significant, row.n_items) == (0, 0, 0, False, 50)


def test_all_right_versus_all_wrong_is_significant():
    result = paired_bootstrap(items_frame({"base": {"t": [False] * 30}, "good": {"t": [True] * 30}}))
    row = result.iloc[0]
    assert row.delta == 1 and row.low > 0 and row.significant


def test_interval_contains_delta_and_is_deterministic():
    rng = np.random.default_rng(1)
    scores = {model: {t: list(rng.random(80) < p) for t in ("a", "b")} for model, p in [("base", 0.4), ("m1", 0.5), ("m2", 0.45)]}
    items = items_frame(scores)
    result = paired_bootstrap(items, seed=3)
    assert list(result.columns) == ["model", "target", "delta", "low", "high", "p_value", "p_adjusted", "significant",
                                    "n_items", "n_seeds", "seed_sd"]
    assert len(result) == 4 and set(result.model) == {"m1", "m2"}
    assert ((result.low <= result.delta) & (result.delta <= result.high)).all()
    pd.testing.assert_frame_equal(result, paired_bootstrap(items, seed=3))
    assert not result.equals(paired_bootstrap(items, seed=4))
    assert result.attrs == {"confidence": 0.95, "n_resamples": 1000, "correction": "Benjamini–Hochberg", "n_seeds": 1}


def test_bootstrap_uses_only_shared_items():
    items = items_frame({"base": {"t": [0, 0, 1, 1]}, "m": {"t": [1, 1]}})
    row = paired_bootstrap(items).iloc[0]
    assert row.n_items == 2 and row.delta == 1


def replicated(per_seed: dict[int, list[float]], base: list[float]) -> pd.DataFrame:
    """Items of a base model and of one adapter ``m`` trained with each seed in ``per_seed``."""
    frames = [items_frame({"base": {"t": base}}).assign(replicate=0)]
    frames += [items_frame({"m": {"t": values}}).assign(replicate=seed) for seed, values in per_seed.items()]
    return pd.concat(frames, ignore_index=True)


def test_seed_variance_widens_the_interval_and_can_undo_significance():
    rng = np.random.default_rng(5)
    base = list(rng.random(100) < 0.5)
    better = [bool(value) or rng.random() < 0.5 for value in base]  # ~ +25 pp on the same items
    one_seed = paired_bootstrap(replicated({0: better}, base)).iloc[0]
    agreeing = paired_bootstrap(replicated({0: better, 1: better, 2: better}, base)).iloc[0]
    disagreeing = paired_bootstrap(replicated({0: better, 1: base, 2: base}, base)).iloc[0]
    assert one_seed.significant and agreeing.significant and agreeing.seed_sd == 0
    assert agreeing.high - agreeing.low == pytest.approx(one_seed.high - one_seed.low, abs=0.03)
    assert disagreeing.delta == pytest.approx(one_seed.delta / 3)
    assert disagreeing.seed_sd > 0.1 and disagreeing.low <= 0 and not disagreeing.significant
    assert (disagreeing.high - disagreeing.low) > 1.3 * (one_seed.high - one_seed.low)
    assert paired_bootstrap(replicated({0: better, 1: base}, base)).attrs["n_seeds"] == 2


def test_replicates_scored_on_different_items_are_refused():
    items = replicated({0: [1, 0, 1], 1: [1, 0, 1]}, [0, 0, 0])
    with pytest.raises(ValueError, match="different items"):
        paired_bootstrap(items[~((items["replicate"] == 1) & (items["item"] == 2))])


def test_benjamini_hochberg_keeps_false_marks_down_and_real_effects_marked():
    rng = np.random.default_rng(7)
    base = list(rng.random(100) < 0.5)
    nulls = {f"null{i}": {"t": list(rng.random(100) < 0.5)} for i in range(100)}
    real = {"real": {"t": [True] * 100}}
    corrected = paired_bootstrap(items_frame({"base": {"t": base}} | nulls | real), n_resamples=10000).set_index("model")
    uncorrected = paired_bootstrap(items_frame({"base": {"t": base}} | nulls | real), correction=None).set_index("model")
    assert (corrected["p_adjusted"] >= corrected["p_value"]).all()
    assert corrected.loc["real", "significant"]
    false_marks = uncorrected.drop(index="real")["significant"].sum()
    assert false_marks >= 1  # at 95 % per cell, 100 nulls give ~5 false marks
    assert corrected.drop(index="real")["significant"].sum() < false_marks
    assert corrected.attrs["correction"] == "Benjamini–Hochberg" and uncorrected.attrs["correction"] == "none"


def test_identical_model_has_p_value_one():
    answers = [1, 0, 1, 1, 0] * 10
    assert paired_bootstrap(items_frame({"base": {"t": answers}, "copy": {"t": answers}})).iloc[0].p_value == 1


def test_bootstrap_of_a_full_grid_has_one_row_per_cell():
    rng = np.random.default_rng(0)
    models = ["base", *(f"m{i}" for i in range(10))]
    items = items_frame({m: {f"t{t}": list(rng.random(100) < 0.5) for t in range(10)} for m in models})
    assert len(paired_bootstrap(items, n_resamples=1000)) == 100


def test_bootstrap_rejects_missing_base():
    with pytest.raises(ValueError, match="no rows for the base model"):
        paired_bootstrap(items_frame({"m": {"t": [1, 0]}}))


# ------------------------------------------------------------------------------------------ report


META = {
    "name": "test run",
    "base_model": "tiny-llama",
    "settings": {"lora": {"r": 8}, "seed": 0},
    "created": "2025-01-01",
    "timings": {"train": 12.5, "evaluate": 80.0},
    "notes": ["fake data"],
}


def report_inputs(n_adapters: int):
    rng = np.random.default_rng(2)
    models = ["base", *(f"adapter{i}" for i in range(n_adapters))]
    scores = {m: {t: list(rng.random(40) < rng.uniform(0.2, 0.8)) for t in TASKS} for m in models}
    items = items_frame(scores)
    matrix = items.groupby(["model", "target"])["correct"].mean().unstack().loc[models, TASKS]
    return matrix, paired_bootstrap(items, n_resamples=200)


def assert_self_contained(html: str):
    assert "data:image/png;base64," in html
    # Strip the embedded images: base64 text could contain any letters by chance.
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert "http" not in text
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)


def test_report_writes_all_files(tmp_path):
    matrix, intervals = report_inputs(4)
    path = write_report(tmp_path, matrix, intervals, LatentTraits().fit(matrix), META)
    assert path == tmp_path / "report.html"
    for name in ("matrix_delta", "matrix_raw", "scree", "loadings", "weights"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    html = path.read_text()
    assert_self_contained(html)
    assert html.count("data:image/png;base64,") == 5
    assert "test run" in html and "tiny-llama" in html and "PC1" in html and "fake data" in html
    assert f"{intervals.significant.sum()} of 16 adapter-target cells" in html


def test_report_with_single_adapter_skips_traits(tmp_path):
    matrix, intervals = report_inputs(1)
    path = write_report(tmp_path, matrix, intervals, None, META)
    html = path.read_text()
    assert_self_contained(html)
    assert html.count("data:image/png;base64,") == 2
    assert not (tmp_path / "scree.png").exists()
    assert "at least two adapters" in html


def test_report_without_intervals(tmp_path):
    matrix, _ = report_inputs(2)
    html = write_report(tmp_path, matrix, None, None, {k: META[k] for k in ("name", "base_model", "settings", "created")}).read_text()
    assert "no cell is tested for significance" in html


def test_report_rejects_incomplete_meta(tmp_path):
    matrix, intervals = report_inputs(2)
    with pytest.raises(ValueError, match="meta is missing keys: base_model"):
        write_report(tmp_path, matrix, intervals, None, {"name": "x", "settings": {}, "created": "now"})


def test_learning_check_flags_adapters_that_did_not_learn_their_own_task(tmp_path):
    from crosstask.report import learning_check

    intervals = pd.DataFrame({"model": ["good", "good", "flat"], "target": ["good_task", "other", "flat_task"],
                              "delta": [0.2, -0.1, 0.01], "significant": [True, True, False]})
    own = {"good": "good_task", "flat": "flat_task", "elsewhere": None}
    text = learning_check(intervals, own, {"flat": {"first_loss": 2.31, "last_loss": 2.29}})
    assert text.startswith("Warning: 1 of 2 adapters did not clearly improve on their own task: flat (+1.0 pp on "
                           "flat_task, training loss 2.31 → 2.29)")
    assert "say nothing about transfer" in text and "Not checked (their task is not a target): elsewhere." in text
    fine = learning_check(intervals[intervals["model"] == "good"], {"good": "good_task"})
    assert fine == "Every adapter whose task is a target (1) improved significantly on it."
    losing = intervals.assign(delta=[-0.2, 0.0, 0.0])  # significant, but a loss
    assert learning_check(losing, {"good": "good_task"}).startswith("Warning: 1 of 1")
    matrix, bootstrap = report_inputs(2)
    html = write_report(tmp_path, matrix, bootstrap, None, META | {"learning_check": text}).read_text()
    assert html.index("Warning: 1 of 2 adapters") < html.index("Averaged over")


def test_learning_check_warns_when_training_examples_did_not_fit():
    from crosstask.report import learning_check

    intervals = pd.DataFrame({"model": ["math", "math@seed1"], "target": ["math", "math"], "delta": [0.2, 0.2],
                              "significant": [True, True]})
    long = {"examples": 117, "truncated": 30, "dropped": 3, "max_length": 256}
    text = learning_check(intervals, {"math": "math", "math@seed1": "math"}, {"math": long, "math@seed1": long})
    assert text.count("Warning: 33 of 120 training examples of math exceeded lora.max_length 256") == 1
    assert "30 lost the start of their input, 3 were dropped" in text and text.startswith("Every adapter")
    few = {"examples": 150, "truncated": 5, "dropped": 0, "max_length": 256}  # 3 %: not worth a warning
    assert "Warning" not in learning_check(intervals, {"math": "math"}, {"math": few})


def test_report_shows_training_loss_curves_with_the_adapters_that_did_not_learn(tmp_path):
    matrix, intervals = report_inputs(2)
    adapters = [name for name in matrix.index if name != "base"]
    own = {adapters[0]: matrix.columns[0], adapters[1]: matrix.columns[1]}
    flat = intervals.assign(significant=False)
    training = {name: {"loss_curve": [[1, 2.0], [2, 1.5 + i], [3, 1.0 + i]]} for i, name in enumerate(adapters)}
    html = write_report(tmp_path, matrix, flat, None, META | {"training": training, "own_targets": own}).read_text()
    assert (tmp_path / "training_loss.png").is_file() and "Training loss" in html
    assert f"In red: {', '.join(sorted(adapters))}" in html


def test_figures_measure_text_with_one_renderer_and_save_as_bare_figures_do(tmp_path):
    import seaborn as sns
    from matplotlib.figure import Figure

    from crosstask.files import new_figure, save_figure

    values = pd.DataFrame(np.arange(12.0).reshape(3, 4), index=["base", "a", "b"],
                          columns=["sentiment_binary", "rating_5star", "word_problems", "nli"])
    paths = []
    for make in (Figure, new_figure):
        figure = make(figsize=(5, 3), layout="constrained")
        axes = figure.subplots()
        sns.heatmap(values, ax=axes, annot=True, fmt=".1f")  # measures every tick label before drawing
        axes.tick_params(axis="x", labelrotation=35)
        paths.append(save_figure(figure, tmp_path / f"{make.__name__}.png", 100))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    figure = new_figure(figsize=(2, 2))
    assert figure._get_renderer() is figure._get_renderer()

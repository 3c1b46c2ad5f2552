"""Dataset similarity (style, semantic) and dependency-relation success ratios.

The sentence encoder and spaCy pipeline are loaded once per process (lru_cache), so only the first
test that needs each one pays for the load.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from crosstask.analysis import features, similarity, syntax
from crosstask.analysis.base import RunData
from crosstask.analysis.similarity import DatasetSimilarity, permutation_spearman
from crosstask.analysis.syntax import DependencyRatios

MOVIES = [
    "The film was wonderful and the actors were brilliant.",
    "I hated the ending of this movie, it was far too slow.",
    "The soundtrack of the film was beautiful and moving.",
    "This movie is boring; the plot makes no sense at all.",
]
MOVIES_PARAPHRASED = [
    "The movie was great and the cast was excellent.",
    "I disliked how this film ended, it dragged on far too long.",
    "The film's music was lovely and touching.",
    "This film is dull and its story is senseless.",
]
UNRELATED = [
    "Compute 4821 + 193 and write the result.",
    "The train departs from platform 9 at 14:05.",
    "Add two cups of flour and stir for three minutes.",
    "The server returned error code 503 after 30 seconds.",
]


def synthetic_datasets(n: int, seed: int) -> dict[str, list[str]]:
    """n datasets that differ in style: more digits, longer texts and more shouting as the index grows."""
    rng = np.random.default_rng(seed)
    words = ["the", "a", "cat", "runs", "and", "of", "big", "house", "to", "in", "quickly", "was"]
    datasets = {}
    for k in range(n):
        texts = []
        for _ in range(30):
            tokens = list(rng.choice(words, size=4 + 3 * k))
            tokens += [str(rng.integers(10 ** k, 10 ** (k + 1))) for _ in range(k)]
            text = " ".join(tokens) + ("!" * k or ".")
            texts.append(text.upper() if k % 3 == 2 else text.capitalize())
        datasets[f"d{k}"] = texts
    return datasets


# ------------------------------------------------------------------------------------- style features


def test_style_features_on_hand_computed_input():
    feats = features.style_features(["ab 12", "C!"])
    # "ab 12" + "C!" = 7 characters: digits "12", punctuation "!", letters a b C (one upper case).
    assert feats["digit_rate"] == pytest.approx(2 / 7)
    assert feats["punctuation_rate"] == pytest.approx(1 / 7)
    assert feats["uppercase_rate"] == pytest.approx(1 / 3)
    assert feats["newline_rate"] == 0
    assert feats["chars_mean"] == pytest.approx(3.5) and feats["chars_std"] == pytest.approx(1.5)
    assert feats["words_mean"] == pytest.approx(1.5) and feats["words_std"] == pytest.approx(0.5)
    assert feats["mean_word_length"] == pytest.approx(5 / 3)
    assert feats["type_token_ratio"] == pytest.approx(1.0)
    # 3 words, 2 sentences, 3 syllables ("ab", "12", "c" one each).
    assert feats["flesch_reading_ease"] == pytest.approx(206.835 - 1.015 * 3 / 2 - 84.6 * 1)

    profile = features.style_features(["the cat and the dog\nran"])
    assert profile["fw_the"] == pytest.approx(2 / 6) and profile["fw_and"] == pytest.approx(1 / 6)
    assert profile["fw_of"] == 0
    assert profile["newline_rate"] == pytest.approx(1 / 23)
    assert len([name for name in profile.index if name.startswith("fw_")]) == len(features.FUNCTION_WORDS) == 50


def test_syllables_ttr_and_readability_order():
    assert [features.syllables(word) for word in ["cat", "table", "make", "reading", "the", "4941"]] == [1, 2, 1, 2, 1, 1]
    # Windows of 100 tokens: one with a single type, one with 100 types; the partial third window is dropped.
    tokens = ["a"] * 100 + [f"w{i}" for i in range(100)] + ["x"] * 50
    assert features.mean_segmental_ttr(tokens) == pytest.approx((0.01 + 1.0) / 2)
    simple = features.flesch_reading_ease(["The cat sat. The dog ran."])
    hard = features.flesch_reading_ease(["Institutional considerations notwithstanding, comprehensive reorganization proceeded."])
    assert simple > hard


def test_identical_datasets_have_style_similarity_exactly_one():
    datasets = synthetic_datasets(3, seed=0)
    fit = DatasetSimilarity("style").fit({"d0": datasets["d0"]}, {"copy": list(datasets["d0"]), **datasets})
    assert fit.similarity_.loc["d0", "copy"] == 1.0
    assert fit.similarity_.loc["d0", "d0"] == 1.0
    assert (fit.similarity_.loc["d0", ["d1", "d2"]] < 1).all()
    assert fit.similarity_.loc["d0", "d1"] > fit.similarity_.loc["d0", "d2"]  # d2 is further in every respect


# -------------------------------------------------------------------------------------------- semantic


def test_semantic_similarity_identity_and_paraphrase():
    fit = DatasetSimilarity("semantic").fit(
        {"movies": MOVIES}, {"same": list(MOVIES), "paraphrase": MOVIES_PARAPHRASED, "unrelated": UNRELATED})
    row = fit.similarity_.loc["movies"]
    assert row["same"] == 1.0
    assert row["paraphrase"] > row["unrelated"] + 0.2
    assert fit.vectors_.shape == (4, 384)
    embeddings = features.embed_texts(MOVIES[:2])
    assert embeddings.shape == (2, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-3)


def test_sample_texts_is_seeded_and_keeps_order():
    texts = [f"t{i}" for i in range(50)]
    sample = features.sample_texts(texts, 10, seed=3)
    assert sample == features.sample_texts(texts, 10, seed=3) and len(sample) == 10
    assert sample == sorted(sample, key=texts.index)
    assert features.sample_texts(texts, 100) == texts


# ------------------------------------------------------------------------------------ permutation test


def test_permutation_test_small_p_when_transfer_follows_similarity_large_p_when_random():
    datasets = synthetic_datasets(6, seed=1)
    sources = {name: texts for name, texts in list(datasets.items())[:4]}
    targets = {f"t_{name}": texts[::-1][:20] for name, texts in datasets.items()}
    sim = DatasetSimilarity("style").fit(sources, targets).similarity_
    rng = np.random.default_rng(0)

    following = sim + rng.normal(0, 1e-4, sim.shape)
    fit = DatasetSimilarity("style", n_permutations=999).fit(sources, targets, following)
    assert fit.spearman_ > 0.9 and fit.p_value_ <= 0.002 and fit.n_cells_ == 24
    assert len(fit.null_distribution_) == 999

    random = pd.DataFrame(rng.normal(size=sim.shape), index=sim.index, columns=sim.columns)
    fit = DatasetSimilarity("style").fit(sources, targets, random)
    assert fit.p_value_ > 0.1

    excluded = [("d0", "t_d0"), ("d1", "t_d1")]
    assert DatasetSimilarity("style").fit(sources, targets, random, exclude=excluded).n_cells_ == 22


def test_row_null_ignores_a_pure_row_effect_that_the_cell_null_calls_significant():
    # Transfer and similarity both rise with the row only: no information on *which* targets gain.
    x = np.repeat(np.arange(6.0), 8) + np.tile(np.random.default_rng(1).normal(0, 0.01, 8), 6)
    y = np.repeat(np.arange(6.0), 8) + np.random.default_rng(2).normal(0, 0.01, 48)
    rows = np.repeat(np.arange(6), 8)
    rho, p_cells, _ = permutation_spearman(x, y, np.zeros(48, int), 999, np.random.default_rng(0))
    _, p_rows, _ = permutation_spearman(x, y, rows, 999, np.random.default_rng(0))
    assert rho > 0.9 and p_cells <= 0.002 and p_rows > 0.05
    assert np.isnan(permutation_spearman(x, np.zeros(48), rows, 10, np.random.default_rng(0))[0])


def test_margins_null_ignores_shared_column_effects_that_the_row_null_calls_significant():
    # Two "math" targets: every adapter loses on them and their texts resemble no source (low similarity).
    rng = np.random.default_rng(3)
    column_effect = np.array([0, 0, 0, 0, 0, 0, -1, -1.0])
    sim = np.tile(column_effect, (6, 1)) + rng.normal(0, 0.05, (6, 8))
    transfer = np.tile(column_effect, (6, 1)) + rng.normal(0, 0.05, (6, 8))
    tested = np.ones((6, 8), bool)
    _, p_rows, _ = permutation_spearman(sim.ravel(), transfer.ravel(), np.repeat(np.arange(6), 8), 999,
                                        np.random.default_rng(0))
    _, p_margins, _ = similarity.mantel_interaction(sim, transfer, tested, 999, np.random.default_rng(0))
    assert p_rows <= 0.002 and p_margins > 0.05


def test_margins_null_finds_pair_specific_transfer_beyond_row_and_column_effects():
    rng = np.random.default_rng(4)
    pairs = rng.normal(0, 1, (6, 8))  # which source suits which target
    sim = pairs + np.linspace(0, 3, 8)[None, :] + rng.normal(0, 0.2, (6, 8))
    transfer = pairs + np.linspace(3, 0, 6)[:, None] - np.linspace(0, 5, 8)[None, :] + rng.normal(0, 0.2, (6, 8))
    rho, p, null = similarity.mantel_interaction(sim, transfer, np.ones((6, 8), bool), 999,
                                                        np.random.default_rng(0))
    assert rho > 0.8 and p <= 0.002 and len(null) == 999
    residual = similarity.double_centred(transfer, np.ones((6, 8), bool))
    np.testing.assert_allclose(residual.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(residual.mean(axis=1), 0, atol=1e-12)


def test_variants_of_one_source_count_as_one_row_under_the_margins_null():
    datasets = synthetic_datasets(6, seed=1)
    sources = {name: texts for name, texts in list(datasets.items())[:4]}
    sources |= {f"d0+copy{i}": sources["d0"] for i in range(3)}  # variants: the same data, moving together
    targets = {f"t_{name}": texts[::-1][:20] for name, texts in datasets.items()}
    transfer = pd.DataFrame(np.random.default_rng(0).normal(size=(7, 6)), index=list(sources), columns=list(targets))
    clusters = {f"d0+copy{i}": "d0" for i in range(3)}
    fit = DatasetSimilarity("style", n_permutations=99).fit(sources, targets, transfer, clusters=clusters)
    assert fit.n_cells_ == 4 * 6
    assert DatasetSimilarity("style", n_permutations=99).fit(sources, targets, transfer).n_cells_ == 7 * 6


def test_similarity_reading_flips_with_the_p_value():
    fits = {kind: DatasetSimilarity(kind) for kind in similarity.KINDS}
    for fit in fits.values():
        fit.spearman_, fit.p_value_, fit.n_cells_ = 0.1, 0.6, 42
    assert similarity.reading(fits).startswith("Neither style similarity (ρ = +0.10, p = 0.60)")
    assert "every source's and target's own effect is kept" in similarity.reading(fits)
    fits["semantic"].spearman_, fits["semantic"].p_value_ = 0.55, 0.004
    text = similarity.reading(fits)
    assert text.startswith("Semantic similarity tracks transfer (ρ = +0.55, p = 0.004) but style similarity does not")
    assert "closer to" in text


# ---------------------------------------------------------------------------------------------- syntax


def test_dependency_ratios_on_hand_built_items():
    relations = [{"nsubj", "oprd"}] * 3 + [{"nsubj"}] * 3
    base = np.array([0, 1, 0, 1, 0, 1])
    adapter = np.array([1, 1, 1, 0, 0, 1])  # solves every item with oprd
    table = DependencyRatios(n_resamples=200, min_items=3).fit(relations, base, adapter).table_.set_index("relation")
    oprd = table.loc["oprd"]
    assert oprd["n_items"] == 3 and oprd["adapter_acc"] == 1.0 and oprd["base_acc"] == pytest.approx(1 / 3)
    assert oprd["ratio"] == pytest.approx(3.0) and oprd["difference"] == pytest.approx(2 / 3)
    assert oprd["ratio_low"] <= oprd["ratio"] <= oprd["ratio_high"]
    assert oprd["difference_low"] <= oprd["difference"] <= oprd["difference_high"]
    assert table.loc["nsubj", "ratio"] == pytest.approx((4 / 6) / (3 / 6))
    assert list(table.index) == ["oprd", "nsubj"]  # ranked by gain

    same = DependencyRatios(n_resamples=200, min_items=3).fit(relations, base, base).table_
    assert (same["ratio"] == 1).all() and (same["ratio_low"] == 1).all() and (same["ratio_high"] == 1).all()
    assert (same["difference"] == 0).all()

    never = DependencyRatios(min_items=3).fit(relations, np.zeros(6), adapter).table_.set_index("relation")
    assert np.isnan(never.loc["oprd", "ratio"]) and np.isnan(never.loc["oprd", "ratio_low"])
    assert never.loc["oprd", "difference"] == 1.0

    rare = DependencyRatios(min_items=4).fit(relations, base, adapter).table_
    assert list(rare["relation"]) == ["nsubj"]
    assert np.isnan(table.loc["nsubj", "interaction"])  # in every item: nothing to compare it with


def test_a_relation_is_credited_only_for_gains_beyond_the_rest_of_the_target():
    rng = np.random.default_rng(0)
    relations = [{"amod"} if i % 2 else {"det"} for i in range(80)]
    base = rng.random(80) < 0.3
    everywhere = base | (rng.random(80) < 0.6)  # the adapter gains on every kind of item
    fit = DependencyRatios(n_resamples=500, min_items=5).fit(relations, base, everywhere).table_.set_index("relation")
    assert (fit["difference_low"] > 0).all()  # against zero, both relations look like gains
    assert (fit["interaction_p"] > 0.05).all()  # against the items without them, neither is
    on_amod = base | (np.array([bool(i % 2) for i in range(80)]) & (rng.random(80) < 0.8))
    fit = DependencyRatios(n_resamples=500, min_items=5).fit(relations, base, on_amod).table_.set_index("relation")
    amod = fit.loc["amod"]
    assert amod["interaction"] > 0.3 and amod["interaction_low"] > 0 and amod["interaction_p"] < 1e-4
    assert amod["difference"] - amod["difference_without"] == pytest.approx(amod["interaction"])
    candidates = syntax.with_adjusted_p(fit.reset_index().assign(adapter="a", target="t", target_items=80))
    assert list(candidates.loc[syntax.reliable_rows(candidates), "relation"]) == ["amod"]


def test_a_relation_whose_items_all_gained_the_same_is_tested_without_a_warning():
    relations = [{"amod"} if i % 2 else {"det"} for i in range(20)]
    base = np.zeros(20)
    adapter = np.array([1.0 if i % 2 else float(i % 4 == 0) for i in range(20)])  # every amod item gains 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy calls a zero variance lost precision
        amod = DependencyRatios(n_resamples=200, min_items=5).fit(relations, base, adapter).table_.set_index(
            "relation").loc["amod"]
    assert amod["interaction"] == pytest.approx(0.5) and 0 < amod["interaction_p"] < 0.05


def test_a_relation_whose_items_gained_less_is_not_reported_as_the_nearest_gain():
    rng = np.random.default_rng(1)
    relations = [{"amod"} if i % 2 else {"det"} for i in range(80)]
    base = rng.random(80) < 0.3
    on_det = base | (np.array([not i % 2 for i in range(80)]) & (rng.random(80) < 0.8))
    fit = DependencyRatios(n_resamples=300, min_items=5).fit(relations, base, on_det).table_
    candidates = syntax.with_adjusted_p(fit.assign(adapter="a", target="t", target_items=80))
    candidates = candidates[candidates["relation"] == "amod"]  # only the relation whose items gained less
    text = syntax.reading(candidates, "cross-task")
    assert text.startswith("No dependency relation carries a reliable cross-task gain")
    assert "1 significant the other way" in text and "nearest" not in text


def test_dependency_ratios_align_series_on_item_ids_and_reject_bad_input():
    relations = pd.Series([{"amod"}, {"amod"}, {"det"}], index=[10, 11, 12])
    base = pd.Series([1, 0, 0], index=[12, 11, 10])  # item 12 solved by base, 10 and 11 not
    adapter = pd.Series([1, 1, 1], index=[10, 11, 12])
    table = DependencyRatios(min_items=1).fit(relations, base, adapter).table_.set_index("relation")
    assert table.loc["amod", "base_acc"] == 0 and table.loc["det", "base_acc"] == 1
    with pytest.raises(ValueError, match="3 items"):
        DependencyRatios().fit(list(relations), [1, 0], [1, 0, 1])


def test_spacy_parse_finds_subject_and_object():
    [relations] = syntax.relations_per_item(["The cat chased the mouse."])
    assert {"nsubj", "dobj", "det", "ROOT"} <= relations
    profile = features.dependency_profile(["The cat chased the mouse.", "Dogs bark."])
    assert profile.sum() == pytest.approx(1.0)
    assert profile["det"] == pytest.approx(2 / 9)  # 9 tokens, 2 determiners


# ----------------------------------------------------------------------------------- analyze on a run


def test_analyze_similarity_and_syntax_on_the_tiny_run(tiny_run, tmp_path):
    run = RunData(tiny_run)
    section = similarity.analyze(run, tmp_path, n_permutations=200)
    assert section.name == "similarity" and section.reading and "ρ" in section.reading
    for name in ["similarity_style.csv", "similarity_semantic.csv", "similarity_tests.csv",
                 "similarity_style.png", "similarity_semantic.png", "similarity_vs_transfer.png"]:
        assert (tmp_path / name).is_file(), name
    style = pd.read_csv(tmp_path / "similarity_style.csv", index_col=0)
    assert list(style.index) == run.sources and list(style.columns) == run.targets
    assert style.to_numpy().max() <= 1.0
    tests = pd.read_csv(tmp_path / "similarity_tests.csv")
    same_task = similarity.same_task_cells(run)
    assert same_task == [("sentiment_binary", "sentiment_binary"), ("word_problems", "word_problems"), ("nli", "nli")]
    assert (tests["n_cells"] == len(run.sources) * len(run.targets) - len(same_task)).all()

    section = syntax.analyze(run, tmp_path, n_resamples=100, min_items=2)
    assert section.name == "syntax" and section.reading
    assert [figure.path.name for figure in section.figures] == ["dependency_gains.png"]
    ratios = pd.read_csv(tmp_path / "dependency_ratios.csv")
    assert list(ratios.columns[:10]) == ["adapter", "target", "relation", "n_items", "base_acc", "adapter_acc",
                                         "ratio", "ratio_low", "ratio_high", "difference"]
    assert set(ratios["adapter"]) == set(run.sources) and set(ratios["target"]) == set(run.targets)
    assert (ratios["n_items"] >= 2).all() and (ratios["n_items"] <= ratios["target_items"]).all()


def test_the_margins_test_treats_tied_residuals_as_ties_not_by_float_noise(monkeypatch):
    # Transfer matrices are sparse (many cells where adapter and base answer alike), so many double-centred
    # residuals tie exactly; how many centring sweeps ran must not decide their order.
    rng = np.random.default_rng(2)
    transfer = np.round(rng.choice([0, 0, 0, 0.01, -0.02, 0.1], size=(6, 8)), 2)
    similarity_matrix = rng.random((6, 8))
    tested = np.ones((6, 8), dtype=bool)
    tested[range(6), range(6)] = False
    converged = similarity.mantel_interaction(similarity_matrix, transfer, tested, 200, np.random.default_rng(0))
    centre = similarity.double_centred
    monkeypatch.setattr(similarity, "double_centred", lambda values, kept: centre(values, kept, tolerance=0))
    every_sweep = similarity.mantel_interaction(similarity_matrix, transfer, tested, 200, np.random.default_rng(0))
    assert converged[:2] == every_sweep[:2]

"""Transfer prediction: guess an adapter's row of gains from its source data alone, before training it.

Every (source, target) pair is described by features computed from the two datasets only (never from
a trained model):

* source habits: log median length of its training targets (tokens), label entropy, choice vs generate;
* pair relations: gap between the source's and the target's answer lengths, same answer type, shared
  label meanings (overlap of the two label-meaning distributions), semantic similarity (cosine of mean
  MiniLM embeddings), style similarity (cosine of stylometric features z-scored over all datasets),
  syntactic similarity (cosine of dependency-relation profiles);
* the target's identity (one-hot), so the model starts from each target's mean gain.

A ridge regression maps features to the gain over the base model; its alpha is chosen by inner
cross-validation grouped by source (a source's cells are never split between fitting and scoring).
It is evaluated leave-one-source-out against the measured matrix, without leakage: the held-out source
leaves together with its variants (which share its data), and the style features are z-scored with
statistics of the training sources and the targets only. It is compared with two trivial predictors:
the mean row of the other sources, and the row of the other source nearest by embedding.

Two kinds of score: per held-out source, the error on its row (MAE, rank correlation); per target, how
well each method ranks the candidate sources for it (the transferability literature's NDCG@3 and
Regret@3: the gain lost by picking the best of the predicted top 3 instead of the best source), over
cross-task pairs only (a source of the target's own task would trivially win). Both come with
bootstrap intervals (over sources, respectively targets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..files import new_figure, save_figure, save_table
from ..sections import Figure, Section
from ..tasks.base import Example, TaskSpec
from .base import RunData
from .features import dataset_embedding, dependency_profile, sample_texts, style_features
from .similarity import same_task_cells

DPI = 150
ALPHAS = np.logspace(-2, 3, 12)
METHODS = ("features", "mean_row", "nearest_by_embedding")
TOP_K = 3
RESAMPLES = 2000


@dataclass
class DatasetProfile:
    """What the predictor knows about one dataset."""

    answer_type: str
    median_length: float  # tokens of the gold completions
    label_entropy: float  # bits; 0 for generate tasks
    meanings: dict[str, float]  # share of each label meaning (labels themselves when undeclared)
    embedding: np.ndarray
    style: pd.Series
    syntax: pd.Series


def profile_dataset(spec: TaskSpec, examples: list[Example], token_lengths, max_texts: int = 200,
                    seed: int = 0) -> DatasetProfile:
    """Features of a dataset; ``token_lengths(texts) -> list[int]`` counts tokens with the run's tokenizer."""
    examples = sample_texts(examples, max_texts, seed)
    texts = [spec.prompt(example) + spec.completion(example) for example in examples]
    lengths = token_lengths([spec.completion(example) for example in examples])
    meanings, entropy = {}, 0.0
    if spec.answer_type == "choice":
        labels = pd.Series([spec.label_meanings.get(example.answer, example.answer) for example in examples])
        meanings = labels.value_counts(normalize=True).to_dict()
        shares = pd.Series([example.answer for example in examples]).value_counts(normalize=True).to_numpy()
        entropy = float(-(shares * np.log2(shares)).sum())
    return DatasetProfile(spec.answer_type, float(np.median(lengths)), entropy, meanings,
                          dataset_embedding(texts, None), style_features(texts), dependency_profile(texts))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm else 0.0


def pair_features(sources: dict[str, DatasetProfile], targets: dict[str, DatasetProfile],
                  reference: list[str] | None = None) -> pd.DataFrame:
    """One row per (source, target): the features described in the module docstring.

    Style features are z-scored with the mean and spread of the targets and of the ``reference``
    sources (default: all), so a held-out source does not shape the scale it is measured on."""
    styles = pd.DataFrame({f"s:{name}": profile.style for name, profile in sources.items()}
                          | {f"t:{name}": profile.style for name, profile in targets.items()}).T
    known = styles.loc[[f"s:{name}" for name in (reference if reference is not None else sources)]
                       + [f"t:{name}" for name in targets]]
    styles = (styles - known.mean()) / known.std(ddof=0).replace(0, 1)
    rows = {}
    for source, s in sources.items():
        for target, t in targets.items():
            relations = s.syntax.index.union(t.syntax.index)
            rows[(source, target)] = {
                "source_log_length": np.log1p(s.median_length),
                "source_label_entropy": s.label_entropy,
                "source_is_choice": float(s.answer_type == "choice"),
                "length_gap": np.log1p(s.median_length) - np.log1p(t.median_length),
                "same_answer_type": float(s.answer_type == t.answer_type),
                "meaning_overlap": sum(min(share, t.meanings.get(m, 0.0)) for m, share in s.meanings.items()),
                "semantic_similarity": _cosine(s.embedding, t.embedding),
                "style_similarity": _cosine(styles.loc[f"s:{source}"].to_numpy(), styles.loc[f"t:{target}"].to_numpy()),
                "syntax_similarity": _cosine(s.syntax.reindex(relations, fill_value=0).to_numpy(),
                                             t.syntax.reindex(relations, fill_value=0).to_numpy()),
            }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.names = ["source", "target"]
    return frame


class TransferPredictor:
    """Ridge regression from pair features (plus target one-hot) to the gain over the base model.

    ``fit(features, delta)``: ``features`` from :func:`pair_features` for the training sources,
    ``delta`` sources × targets. ``predict(features)`` returns a sources × targets frame.
    """

    def __init__(self, alphas=ALPHAS):
        self.alphas = alphas

    def _design(self, features: pd.DataFrame) -> pd.DataFrame:
        targets = pd.get_dummies(features.index.get_level_values("target"), prefix="target", dtype=float)
        targets = targets.reindex(columns=self.target_columns_, fill_value=0.0)
        return pd.concat([features.reset_index(drop=True), targets], axis=1)

    def fit(self, features: pd.DataFrame, delta: pd.DataFrame, groups: dict[str, str] | None = None
            ) -> TransferPredictor:
        """``groups`` maps a source to its group (a variant to its original source; default: itself): the
        inner cross-validation that picks alpha leaves one group out at a time."""
        self.target_columns_ = [f"target_{target}" for target in delta.columns]
        y = np.array([delta.at[source, target] for source, target in features.index])
        sources = features.index.get_level_values("source")
        group_ids = [(groups or {}).get(source, source) for source in sources]
        pipeline = make_pipeline(StandardScaler(), Ridge())
        if len(set(group_ids)) >= 3:
            search = GridSearchCV(pipeline, {"ridge__alpha": list(self.alphas)}, cv=LeaveOneGroupOut(),
                                  scoring="neg_mean_absolute_error")
            self.model_ = search.fit(self._design(features), y, groups=group_ids).best_estimator_
            self.alpha_ = float(search.best_params_["ridge__alpha"])
        else:  # too few groups to cross-validate: a middle alpha
            self.alpha_ = float(np.median(self.alphas))
            self.model_ = pipeline.set_params(ridge__alpha=self.alpha_).fit(self._design(features), y)
        coefficients = self.model_[-1].coef_ / self.model_[0].scale_.clip(min=1e-12)
        self.coef_ = pd.Series(coefficients, index=self._design(features).columns).iloc[: features.shape[1]]
        return self

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        values = self.model_.predict(self._design(features))
        series = pd.Series(values, index=features.index)
        return series.unstack("target")


def leave_one_source_out(features, delta: pd.DataFrame, embeddings: dict[str, np.ndarray],
                         clusters: dict[str, str] | None = None) -> pd.DataFrame:
    """Predicted rows of every source by every method, each trained without that source and its cluster.

    ``features`` is a frame from :func:`pair_features`, or a function ``(training sources) -> frame`` that
    builds the features with statistics of those sources only. ``clusters`` maps a source to its cluster
    (a variant to its original source). Returns a long frame: source, target, method, predicted, measured.
    """
    cluster_of = {source: (clusters or {}).get(source, source) for source in delta.index}
    rows = []
    sources = list(delta.index)
    for held_out in sources:
        rest = [source for source in sources if cluster_of[source] != cluster_of[held_out]]
        fold = features(rest) if callable(features) else features
        train = fold[fold.index.get_level_values("source").isin(rest)]
        test = fold.xs(held_out, level="source", drop_level=False)
        predicted = {
            "features": TransferPredictor().fit(train, delta.loc[rest], cluster_of).predict(test).loc[held_out],
            "mean_row": delta.loc[rest].mean(),
            "nearest_by_embedding": delta.loc[max(rest, key=lambda s: _cosine(embeddings[s], embeddings[held_out]))],
        }
        for method, row in predicted.items():
            for target in delta.columns:
                rows.append((held_out, target, method, float(row[target]), float(delta.at[held_out, target])))
    return pd.DataFrame(rows, columns=["source", "target", "method", "predicted", "measured"])


def score_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per source and method: mean absolute error (score units) and Spearman correlation across targets."""
    def summary(group: pd.DataFrame) -> pd.Series:
        varied = group["predicted"].nunique() > 1 and group["measured"].nunique() > 1
        rho = spearmanr(group["predicted"], group["measured"]).statistic if varied else np.nan
        return pd.Series({"mae": (group["predicted"] - group["measured"]).abs().mean(), "spearman": rho})

    scored = predictions.groupby(["source", "method"], sort=False)[["predicted", "measured"]].apply(summary)
    return scored.reset_index()


def ranking_scores(predictions: pd.DataFrame, exclude=(), k: int = TOP_K) -> pd.DataFrame:
    """Per target and method: NDCG@k and Regret@k of ranking the candidate sources by predicted gain.

    Relevance is the measured gain minus the worst candidate's (so it is non-negative); Regret@k is the
    best candidate's measured gain minus the best measured gain among the predicted top k. Pairs in
    ``exclude`` (same-task cells) are not candidates; targets with fewer than two candidates are skipped.
    """
    excluded = set(map(tuple, exclude))
    kept = predictions[[(s, t) not in excluded for s, t in zip(predictions["source"], predictions["target"])]]
    rows = []
    for (target, method), group in kept.groupby(["target", "method"], sort=False):
        if len(group) < 2:
            continue
        depth = min(k, len(group))
        measured = group["measured"].to_numpy()
        chosen = measured[np.argsort(-group["predicted"].to_numpy(), kind="stable")][:depth]
        relevance = measured - measured.min()
        discounts = 1 / np.log2(np.arange(2, depth + 2))
        ideal = float(np.sort(relevance)[::-1][:depth] @ discounts)
        ndcg = float((chosen - measured.min()) @ discounts / ideal) if ideal > 0 else 1.0
        rows.append((target, method, len(group), depth, ndcg, float(measured.max() - chosen.max())))
    return pd.DataFrame(rows, columns=["target", "method", "candidates", "k", "ndcg", "regret"])


def mean_with_interval(values: pd.Series, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """The mean of ``values`` and its percentile bootstrap interval."""
    data = values.dropna().to_numpy(float)
    if len(data) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (RESAMPLES, len(data)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(data.mean()), float(low), float(high)


def summarise(scores: pd.DataFrame, ranking: pd.DataFrame) -> pd.DataFrame:
    """Per method: MAE and Spearman (over held-out sources), NDCG@k and Regret@k (over targets), each with
    its 95 % bootstrap interval."""
    rows = []
    for method in METHODS:
        row = {"method": method}
        for frame, column in ((scores, "mae"), (scores, "spearman"), (ranking, "ndcg"), (ranking, "regret")):
            mean, low, high = mean_with_interval(frame.loc[frame["method"] == method, column])
            row |= {column: mean, f"{column}_low": low, f"{column}_high": high}
        rows.append(row)
    return pd.DataFrame(rows)


def run_profiles(run: RunData) -> tuple[dict[str, DatasetProfile], dict[str, DatasetProfile]]:
    sources = {name: profile_dataset(run.source_spec(name), run.train_examples(name), run.token_lengths)
               for name in run.sources}
    targets = {name: profile_dataset(run.target_spec(name), run.eval_examples(name), run.token_lengths)
               for name in run.targets}
    return sources, targets


def analyze(run: RunData, out_dir: Path) -> Section:
    section = Section("prediction", "Predicting transfer from source data", reading="")
    clusters = run.clusters
    if len(set(clusters.get(source, source) for source in run.sources)) < 3:
        section.skipped = "Leave-one-source-out prediction needs at least 3 sources (a source's variants count as one)."
        return section
    sources, targets = run_profiles(run)
    predictions = leave_one_source_out(lambda rest: pair_features(sources, targets, rest), run.delta,
                                       {name: p.embedding for name, p in sources.items()}, clusters)
    scores = score_predictions(predictions)
    ranking = ranking_scores(predictions, exclude=same_task_cells(run))
    summary = summarise(scores, ranking)
    tables = {"prediction.csv": scores, "prediction_rows.csv": predictions, "prediction_ranking.csv": ranking,
              "prediction_summary.csv": summary}
    for name, table in tables.items():
        save_table(table, out_dir / name, index=False, float_format="%.4f")
    section.tables = [out_dir / name for name in tables]
    section.figures = [_figure(out_dir / "prediction.png", scores)]
    section.reading = _reading(summary.set_index("method"))
    return section


def compare_with_feature(features, extra: pd.Series, delta: pd.DataFrame, embeddings: dict[str, np.ndarray],
                         clusters: dict[str, str] | None = None, exclude=()) -> pd.DataFrame:
    """The feature model's leave-one-source-out scores without and with one extra pair feature ``extra``
    (a Series indexed by source and target); ``features`` as :func:`leave_one_source_out` takes it. One row
    per feature set, with the columns :func:`summarise` gives for the feature model."""
    def with_extra(rest):
        frame = features(rest) if callable(features) else features
        return frame.assign(**{extra.name: extra.reindex(frame.index).to_numpy()})

    rows = []
    for label, frame in (("without", features), ("with", with_extra)):
        predictions = leave_one_source_out(frame, delta, embeddings, clusters)
        summary = summarise(score_predictions(predictions), ranking_scores(predictions, exclude)).set_index("method")
        rows.append({"feature_set": label, **summary.loc["features"].to_dict()})
    return pd.DataFrame(rows)


def _interval(row: pd.Series, column: str, scale: float = 1.0, digits: int = 2) -> str:
    values = [row[column] * scale, row[f"{column}_low"] * scale, row[f"{column}_high"] * scale]
    return f"{values[0]:.{digits}f} [{values[1]:.{digits}f}, {values[2]:.{digits}f}]"


def _reading(summary: pd.DataFrame) -> str:
    ours, rivals = summary.loc["features"], summary.drop(index="features")
    beats_mae = all(ours["mae_high"] < rivals["mae_low"])
    beats_ndcg = all(ours["ndcg_low"] > rivals["ndcg_high"])
    verdict = ("its error is below both trivial predictors' beyond the intervals" if beats_mae else
               "its error does not beat both trivial predictors beyond the intervals")
    ranking = ("and it ranks sources better than both" if beats_ndcg else
               "and its ranking of sources is not better than both beyond the intervals")
    if np.isnan(ours["ndcg"]):
        ranking = "and no target has two cross-task candidate sources to rank"
    return (f"Left out one source (with its variants) at a time, the feature model predicts an adapter's gains "
            f"with mean absolute error {_interval(ours, 'mae', 100, 1)} pp (95 % bootstrap interval over sources; "
            f"mean row {_interval(summary.loc['mean_row'], 'mae', 100, 1)}, nearest source by embedding "
            f"{_interval(summary.loc['nearest_by_embedding'], 'mae', 100, 1)}); ranking the cross-task sources "
            f"of each target, NDCG@{TOP_K} {_interval(ours, 'ndcg')} and Regret@{TOP_K} "
            f"{_interval(ours, 'regret', 100, 1)} pp (intervals over targets; mean row NDCG "
            f"{summary.at['mean_row', 'ndcg']:.2f}, nearest {summary.at['nearest_by_embedding', 'ndcg']:.2f}). "
            f"With this few sources {verdict}, {ranking}.")


def _figure(path: Path, scores: pd.DataFrame) -> Figure:
    figure = new_figure(figsize=(9, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    palette = dict(zip(METHODS, sns.color_palette("deep", len(METHODS))))
    plotted = scores.assign(mae_pp=scores["mae"] * 100)
    sns.barplot(plotted, x="source", y="mae_pp", hue="method", hue_order=METHODS, palette=palette, ax=left)
    sns.barplot(plotted, x="source", y="spearman", hue="method", hue_order=METHODS, palette=palette, ax=right,
                legend=False)
    left.set(title="Error on the held-out source's row", ylabel="mean absolute error (pp)", xlabel="held-out source")
    right.set(title="Rank agreement across targets", ylabel="Spearman ρ", xlabel="held-out source", ylim=(-1, 1))
    right.axhline(0, color="black", linewidth=0.8)
    for axes in (left, right):
        axes.tick_params(axis="x", labelrotation=35)
        for label in axes.get_xticklabels():
            label.set(ha="right", rotation_mode="anchor")
        sns.despine(ax=axes)
    left.legend(frameon=False, fontsize=8, title=None)
    save_figure(figure, path, DPI)
    caption = ("Leave-one-source-out: each source's row of gains predicted from data features only (features), "
               "from the other sources' mean row, or copied from the source nearest by embedding.")
    return Figure("Transfer prediction", caption, path)


def predict_new_source(run: RunData, ref) -> pd.DataFrame:
    """Predicted gain of an adapter on ``ref`` (a source never trained in this run) on every target, best first."""
    from ..pipeline import stored_base_dir
    from ..tasks.data import build_examples, data_dir_of, resolve

    experiment = run.experiment
    held_out = frozenset(example.input for target in run.targets for example in run.eval_examples(target))
    seed = experiment.seed if ref.seed is None else ref.seed
    # The new source's own data path is the user's (relative to where they run the command); local copies
    # of datasets are found where the run found them.
    examples = build_examples(ref, "train", ref.examples or experiment.train_examples, seed, held_out,
                              data_dir=data_dir_of(experiment.data_dir, stored_base_dir(run.root)))
    sources, targets = run_profiles(run)
    sources[ref.label] = profile_dataset(resolve(ref).spec, examples, run.token_lengths)
    features = pair_features(sources, targets, reference=run.sources)
    known = features[features.index.get_level_values("source") != ref.label]
    fitted = TransferPredictor().fit(known, run.delta, run.clusters)
    gains = fitted.predict(features.xs(ref.label, level="source", drop_level=False)).loc[ref.label]
    base = run.matrix.loc["base"]
    table = pd.DataFrame({"target": gains.index, "predicted_gain": gains.to_numpy(),
                          "base_score": base[gains.index].to_numpy()})
    table["predicted_score"] = (table["base_score"] + table["predicted_gain"]).clip(0, 1)
    return table.sort_values("predicted_gain", ascending=False).reset_index(drop=True)

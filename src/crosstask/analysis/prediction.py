"""Transfer prediction: guess an adapter's row of gains from its source data alone, before training it.

Every (source, target) pair is described by features computed from the two datasets only (never from
a trained model):

* source habits: log median length of its training targets (tokens), label entropy, choice vs generate;
* pair relations: gap between the source's and the target's answer lengths, same answer type, shared
  label meanings (overlap of the two label-meaning distributions), semantic similarity (cosine of mean
  MiniLM embeddings), style similarity (cosine of stylometric features z-scored over all datasets),
  syntactic similarity (cosine of dependency-relation profiles);
* the target's identity (one-hot), so the model starts from each target's mean gain.

A ridge regression (alpha chosen by inner cross-validation) maps features to the gain over the base
model. It is evaluated leave-one-source-out against the measured matrix and compared with two trivial
predictors: the mean row of the other sources, and the row of the other source nearest by embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure as MplFigure
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..sections import Figure, Section
from ..tasks.base import Example, TaskSpec
from .base import RunData
from .features import dataset_embedding, dependency_profile, sample_texts, style_features

DPI = 150
ALPHAS = np.logspace(-2, 3, 12)
METHODS = ("features", "mean_row", "nearest_by_embedding")


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


def pair_features(sources: dict[str, DatasetProfile], targets: dict[str, DatasetProfile]) -> pd.DataFrame:
    """One row per (source, target): the features described in the module docstring."""
    styles = pd.DataFrame({f"s:{name}": profile.style for name, profile in sources.items()}
                          | {f"t:{name}": profile.style for name, profile in targets.items()}).T
    styles = (styles - styles.mean()) / styles.std(ddof=0).replace(0, 1)
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

    def fit(self, features: pd.DataFrame, delta: pd.DataFrame) -> TransferPredictor:
        self.target_columns_ = [f"target_{target}" for target in delta.columns]
        y = np.array([delta.at[source, target] for source, target in features.index])
        self.model_ = make_pipeline(StandardScaler(), RidgeCV(alphas=self.alphas)).fit(self._design(features), y)
        coefficients = self.model_[-1].coef_ / self.model_[0].scale_.clip(min=1e-12)
        self.coef_ = pd.Series(coefficients, index=self._design(features).columns).iloc[: features.shape[1]]
        return self

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        values = self.model_.predict(self._design(features))
        series = pd.Series(values, index=features.index)
        return series.unstack("target")


def leave_one_source_out(features: pd.DataFrame, delta: pd.DataFrame,
                         embeddings: dict[str, np.ndarray]) -> pd.DataFrame:
    """Predicted rows of every source by every method, each trained without that source.

    Returns a long frame: source, target, method, predicted, measured.
    """
    rows = []
    sources = list(delta.index)
    for held_out in sources:
        rest = [source for source in sources if source != held_out]
        train = features[features.index.get_level_values("source").isin(rest)]
        test = features.xs(held_out, level="source", drop_level=False)
        predicted = {
            "features": TransferPredictor().fit(train, delta.loc[rest]).predict(test).loc[held_out],
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


def run_profiles(run: RunData) -> tuple[dict[str, DatasetProfile], dict[str, DatasetProfile]]:
    sources = {name: profile_dataset(run.source_spec(name), run.train_examples(name), run.token_lengths)
               for name in run.sources}
    targets = {name: profile_dataset(run.target_spec(name), run.eval_examples(name), run.token_lengths)
               for name in run.targets}
    return sources, targets


def analyze(run: RunData, out_dir: Path) -> Section:
    section = Section("prediction", "Predicting transfer from source data", reading="")
    if len(run.sources) < 3:
        section.skipped = "Leave-one-source-out prediction needs at least 3 sources."
        return section
    sources, targets = run_profiles(run)
    features = pair_features(sources, targets)
    predictions = leave_one_source_out(features, run.delta, {name: p.embedding for name, p in sources.items()})
    scores = score_predictions(predictions)
    path = out_dir / "prediction.csv"
    scores.to_csv(path, index=False, float_format="%.4f")
    rows_path = out_dir / "prediction_rows.csv"
    predictions.to_csv(rows_path, index=False, float_format="%.4f")
    section.tables = [path, rows_path]
    section.figures = [_figure(out_dir / "prediction.png", scores)]
    section.reading = _reading(scores)
    return section


def _reading(scores: pd.DataFrame) -> str:
    means = scores.groupby("method")[["mae", "spearman"]].mean()
    best = means["mae"].idxmin()
    ours = means.loc["features"]
    verdict = ("beats both trivial predictors" if best == "features" else
               f"does not beat the {best.replace('_', ' ')} predictor")
    return (f"Left out one source at a time, the feature model predicts an adapter's gains with mean absolute error "
            f"{ours['mae'] * 100:.1f} pp and mean rank correlation {ours['spearman']:+.2f} across targets; it "
            f"{verdict} (mean row {means.at['mean_row', 'mae'] * 100:.1f} pp, nearest source by embedding "
            f"{means.at['nearest_by_embedding', 'mae'] * 100:.1f} pp).")


def _figure(path: Path, scores: pd.DataFrame) -> Figure:
    figure = MplFigure(figsize=(9, 3.6), layout="constrained")
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
    figure.savefig(path, dpi=DPI)
    caption = ("Leave-one-source-out: each source's row of gains predicted from data features only (features), "
               "from the other sources' mean row, or copied from the source nearest by embedding.")
    return Figure("Transfer prediction", caption, path)


def predict_new_source(run: RunData, ref) -> pd.DataFrame:
    """Predicted gain of an adapter on ``ref`` (a source never trained in this run) on every target, best first."""
    from ..tasks.data import build_examples, resolve

    experiment = run.experiment
    held_out = frozenset(example.input for target in run.targets for example in run.eval_examples(target))
    seed = experiment.seed if ref.seed is None else ref.seed
    examples = build_examples(ref, "train", ref.examples or experiment.train_examples, seed, held_out)
    sources, targets = run_profiles(run)
    sources[ref.label] = profile_dataset(resolve(ref).spec, examples, run.token_lengths)
    features = pair_features(sources, targets)
    known = features[features.index.get_level_values("source") != ref.label]
    fitted = TransferPredictor().fit(known, run.delta)
    gains = fitted.predict(features.xs(ref.label, level="source", drop_level=False)).loc[ref.label]
    base = run.matrix.loc["base"]
    table = pd.DataFrame({"target": gains.index, "predicted_gain": gains.to_numpy(),
                          "base_score": base[gains.index].to_numpy()})
    table["predicted_score"] = (table["base_score"] + table["predicted_gain"]).clip(0, 1)
    return table.sort_values("predicted_gain", ascending=False).reset_index(drop=True)

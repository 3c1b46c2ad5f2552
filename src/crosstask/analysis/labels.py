"""Label distribution: does an adapter predict the target's labels, or inherit its source's label prior?

For each ``choice`` target and each model: the confusion matrix, the predicted-label distribution,
and its Jensen–Shannon divergence (base 2, in [0, 1]) from the gold distribution and from the source's
training label distribution. Labels of different tasks are compared through the meanings task specs
declare (``label_meanings``: sentiment_binary ``positive`` and rating_5star ``4``/``5`` both mean
"positive"); a source that shares no meaning with the target has no prior there.

``toward_source`` = JS(base predictions, source prior) − JS(adapter predictions, source prior): positive
when fine-tuning moved the predictions toward the source's label prior.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure as MplFigure
from scipy.spatial.distance import jensenshannon

from ..files import save_figure, save_table
from ..sections import Figure, Section
from ..tasks.base import TaskSpec
from .base import RunData, diverging_heatmap, with_leading

DPI = 150


def distribution(values, labels: tuple[str, ...]) -> np.ndarray:
    counts = Counter(values)
    total = sum(counts[label] for label in labels)
    return np.array([counts[label] / total if total else 0.0 for label in labels])


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    return float(jensenshannon(p, q, base=2) ** 2)


def map_prior(source_labels: list[str], source_spec: TaskSpec, target_spec: TaskSpec) -> np.ndarray | None:
    """The source's training label distribution expressed over the target's labels, through shared meanings.

    Each meaning's share is split evenly over the target labels that carry it; meanings the target
    lacks are dropped and the rest renormalised. None when the tasks share no meaning.
    """
    meaning_share = Counter(source_spec.label_meanings.get(label) for label in source_labels)
    meaning_share.pop(None, None)
    target_meanings = [target_spec.label_meanings.get(label) for label in target_spec.labels]
    carriers = Counter(m for m in target_meanings if m is not None)
    prior = np.array([meaning_share.get(m, 0) / carriers[m] if m is not None else 0.0 for m in target_meanings])
    if prior.sum() == 0:
        return None
    return prior / prior.sum()


class LabelShift:
    """Predicted-label distributions of several models on one choice target.

    ``fit(gold, predictions, source_priors=None)``: ``gold`` the gold labels; ``predictions``
    {model: predicted labels, aligned with gold}, which must include ``"base"`` when priors are given;
    ``source_priors`` {model: distribution over ``labels`` or None}.

    Sets ``confusion_`` {model: DataFrame gold × predicted counts}, ``table_`` (one row per model).
    """

    def __init__(self, labels: tuple[str, ...]):
        self.labels = tuple(labels)

    def fit(self, gold, predictions: dict[str, list[str]], source_priors: dict[str, np.ndarray | None] | None = None):
        gold = list(gold)
        gold_share = distribution(gold, self.labels)
        source_priors = source_priors or {}
        self.confusion_ = {
            model: pd.crosstab(pd.Categorical(gold, self.labels), pd.Categorical(list(predicted), self.labels),
                               rownames=["gold"], colnames=["predicted"], dropna=False)
            for model, predicted in predictions.items()
        }
        shares = {model: distribution(predicted, self.labels) for model, predicted in predictions.items()}
        rows = []
        for model, share in shares.items():
            prior = source_priors.get(model)
            row = {
                "model": model,
                "n_items": len(gold),
                "accuracy": float(np.mean([p == g for p, g in zip(predictions[model], gold)])),
                "predicted": json.dumps(dict(zip(self.labels, np.round(share, 4)))),
                "gold": json.dumps(dict(zip(self.labels, np.round(gold_share, 4)))),
                "source_prior": json.dumps(dict(zip(self.labels, np.round(prior, 4)))) if prior is not None else "",
                "js_to_gold": js_divergence(share, gold_share),
                "js_to_source": np.nan,
                "toward_source": np.nan,
            }
            if prior is not None:
                row["js_to_source"] = js_divergence(share, prior)
                row["toward_source"] = js_divergence(shares["base"], prior) - row["js_to_source"]
            rows.append(row)
        self.table_ = pd.DataFrame(rows)
        return self


def analyze(run: RunData, out_dir: Path) -> Section:
    section = Section("labels", "Label distribution", reading="")
    targets = run.targets_of("choice")
    if not targets:
        section.skipped = "The run has no choice-type target, so there are no label distributions to compare."
        return section
    items = run.first_seed_items
    train_labels = {source: [ex.answer for ex in run.train_examples(source)] for source in run.sources}
    tables, confusions = [], {}
    for target in targets:
        spec = run.target_spec(target)
        of_target = items[items["target"] == target].sort_values("item")
        gold = of_target.loc[of_target["model"] == "base", "gold"].tolist()
        predictions = {m: of_target.loc[of_target["model"] == m, "prediction"].tolist() for m in run.models}
        priors = {s: map_prior(train_labels[s], run.source_spec(s), spec) for s in run.sources}
        shift = LabelShift(spec.labels).fit(gold, predictions, priors)
        tables.append(shift.table_.assign(target=target))
        confusions[target] = shift.confusion_
    table = with_leading(pd.concat(tables, ignore_index=True), ["target", "model"])
    path = out_dir / "labels.csv"
    save_table(table, path, index=False, float_format="%.4f")
    confusion_path = out_dir / "confusion.csv"
    long = [frame.stack().rename("count").reset_index().assign(target=target, model=model)
            for target, by_model in confusions.items() for model, frame in by_model.items()]
    save_table(pd.concat(long)[["target", "model", "gold", "predicted", "count"]], confusion_path, index=False)
    section.tables = [path, confusion_path]
    section.figures = [_confusion_grid(out_dir / "labels_confusion.png", confusions, run.models),
                       _prior_figure(out_dir / "labels_prior.png", table)]
    section.reading = _reading(table)
    if run.n_seeds > 1:
        section.reading += f" Predictions are those of each source's first-seed adapter (of {run.n_seeds} seeds)."
    return section


def _reading(table: pd.DataFrame) -> str:
    adapters = table[table["model"] != "base"]
    with_prior = adapters.dropna(subset=["toward_source"])
    base_js = table.loc[table["model"] == "base", "js_to_gold"].mean()
    text = (f"Predicted labels diverge from the gold distribution by JS {adapters['js_to_gold'].mean():.3f} on "
            f"average for adapters against {base_js:.3f} for the base model")
    if with_prior.empty:
        return text + "; no source shares label meanings with a choice target, so source priors cannot be compared."
    toward = int((with_prior["toward_source"] > 0).sum())
    strongest = with_prior.loc[with_prior["toward_source"].idxmax()]
    return (text + f"; in {toward} of {len(with_prior)} adapter × target cells with a comparable source prior the "
            f"adapter's predictions moved toward its source's label prior (strongest: {strongest['model']} on "
            f"{strongest['target']}, JS to the prior {strongest['js_to_source']:.3f}).")


def _confusion_grid(path: Path, confusions: dict[str, dict[str, pd.DataFrame]], models: list[str]) -> Figure:
    targets = list(confusions)
    figure = MplFigure(figsize=(2.3 * len(targets) + 0.6, 2.1 * len(models) + 0.6), layout="constrained")
    grid = figure.subplots(len(models), len(targets), squeeze=False)
    for column, target in enumerate(targets):
        for row, model in enumerate(models):
            frame = confusions[target][model]
            share = frame.div(frame.sum(axis=1).replace(0, 1), axis=0)  # each gold row sums to 1
            axes = grid[row, column]
            sns.heatmap(share, ax=axes, vmin=0, vmax=1, cmap="crest", cbar=False, annot=frame.to_numpy(), fmt="d",
                        annot_kws={"fontsize": 7}, linewidths=0.4, linecolor="white", square=True)
            axes.set(xlabel="predicted" if row == len(models) - 1 else "", ylabel=model if column == 0 else "")
            axes.tick_params(labelsize=6, labelrotation=0)
            if row == 0:
                axes.set_title(target, fontsize=9)
    figure.suptitle("Confusion matrices (rows: gold label; colour: share of the gold row)")
    save_figure(figure, path, DPI)
    caption = ("One confusion matrix per model (row) and choice target (column); numbers are item counts, colour "
               "is the share of each gold label's items predicted as each label. A single dark column means the "
               "model predicts one label whatever the input.")
    return Figure("Confusion matrices", caption, path)


def _prior_figure(path: Path, table: pd.DataFrame) -> Figure:
    adapters = table[table["model"] != "base"]
    grid = adapters.pivot(index="model", columns="target", values="toward_source").reindex(
        index=pd.unique(adapters["model"]), columns=pd.unique(adapters["target"]))  # run order, not alphabetical
    diverging_heatmap(path, grid, title="Movement toward the source's label prior", xlabel="target task",
                      ylabel="adapter (source)", colorbar="JS(base, prior) − JS(adapter, prior)", fmt="+.2f")
    caption = ("Positive (red): the adapter's predicted-label distribution is closer to its source's training label "
               "distribution than the base model's is. Blank: the source shares no label meaning with the target.")
    return Figure("Inherited label prior", caption, path)

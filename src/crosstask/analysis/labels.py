"""Label distribution: does an adapter predict the target's labels, or inherit its source's label prior?

For each ``choice`` target and each model: the confusion matrix, the predicted-label distribution,
and its Jensen–Shannon divergence (base 2, in [0, 1]) from the gold distribution and from the source's
training label distribution. Labels of different tasks are compared through the meanings task specs
declare (``label_meanings``: sentiment_binary ``positive`` and rating_5star ``4``/``5`` both mean
"positive"); a source that shares no meaning with the target has no prior there.

``toward_source`` = JS(base predictions, source prior) − JS(adapter predictions, source prior): positive
when fine-tuning moved the predictions toward the source's label prior. It is descriptive only: for a
balanced source the mapped prior is the gold distribution, so learning the target looks the same.

The finding is tested by :class:`PriorInheritance`, against a control that separates inheriting the
prior from learning the target. Items are grouped by their gold label and each group weighs the same.
The *lean* of a model is the mean, over items, of how much its predicted label is favoured by the
source's prior (prior share minus the balanced share), so a model that answers every item correctly
leans exactly 0 whatever the prior (the gold labels' favours cancel over equally weighted groups),
and one that answers by the prior leans positive. An adapter inherits its source's prior when its
lean is above 0 (two-sided paired bootstrap within gold groups, Benjamini–Hochberg across the tested
cells) and above the base model's (the interval of the difference above 0), since learning the target
can only pull the lean toward 0. Only cross-task cells whose source prior is not balanced are tested:
a balanced prior favours nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from scipy.spatial.distance import jensenshannon
from scipy.stats import false_discovery_control

from ..files import new_figure, save_figure, save_table
from ..sections import Figure, Section
from ..tasks.base import TaskSpec
from .base import RunData, diverging_heatmap, with_leading
from .bootstrap import bootstrap_p_value

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


class PriorInheritance:
    """Does an adapter lean toward its source's label prior beyond what learning allows? (See the module docstring.)

    ``fit(gold, base, adapter, prior, labels)``: per-item gold labels and the predictions of the base model
    and the adapter (aligned), and the source prior over ``labels``. Sets ``lean_`` with its interval
    ``lean_low_``/``lean_high_`` and two-sided ``p_value_`` (null: no lean), ``base_lean_``, and the
    interval ``beyond_base_low_``/``beyond_base_high_`` of the adapter's lean minus the base model's.
    """

    def __init__(self, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95):
        self.n_resamples, self.seed, self.confidence = n_resamples, seed, confidence

    def fit(self, gold, base, adapter, prior: np.ndarray, labels: tuple[str, ...]) -> PriorInheritance:
        gold, labels = np.asarray(gold), tuple(labels)
        favour = dict(zip(labels, np.asarray(prior, float) - 1 / len(labels)))
        tuned = np.array([favour[label] for label in adapter])
        untuned = np.array([favour[label] for label in base])
        groups = [np.flatnonzero(gold == label) for label in labels if (gold == label).any()]
        rng = np.random.default_rng(self.seed)
        draws = [group[rng.integers(0, len(group), (self.n_resamples, len(group)))] for group in groups]

        def lean(values: np.ndarray) -> float:
            return float(np.mean([values[group].mean() for group in groups]))

        def resampled(values: np.ndarray) -> np.ndarray:
            return np.mean([values[drawn].mean(axis=1) for drawn in draws], axis=0)

        tail = (1 - self.confidence) / 2
        self.lean_, self.base_lean_ = lean(tuned), lean(untuned)
        leans = resampled(tuned)
        self.lean_low_, self.lean_high_ = (float(v) for v in np.quantile(leans, [tail, 1 - tail]))
        self.p_value_ = bootstrap_p_value(leans)
        self.beyond_base_low_, self.beyond_base_high_ = (
            float(v) for v in np.quantile(leans - resampled(untuned), [tail, 1 - tail]))
        return self


def inheritance_tests(items: pd.DataFrame, priors: dict[tuple[str, str], np.ndarray], labels_of: dict[str, tuple],
                      alpha: float = 0.05) -> pd.DataFrame:
    """One row per (adapter, target) in ``priors`` whose prior is not balanced: the PriorInheritance test,
    with Benjamini–Hochberg-adjusted p-values across the rows. ``items`` has model, target, item, gold,
    prediction (one row per model and item)."""
    rows = []
    for (adapter, target), prior in priors.items():
        labels = labels_of[target]
        if prior is None or np.allclose(prior, 1 / len(labels), atol=0.02):
            continue
        of_target = items[items["target"] == target]
        base = of_target[of_target["model"] == "base"].set_index("item")
        tuned = of_target[of_target["model"] == adapter].set_index("item").loc[base.index]
        fit = PriorInheritance().fit(base["gold"], base["prediction"], tuned["prediction"], prior, labels)
        rows.append((adapter, target, fit.lean_, fit.lean_low_, fit.lean_high_, fit.p_value_, fit.base_lean_,
                     fit.beyond_base_low_, fit.beyond_base_high_))
    table = pd.DataFrame(rows, columns=["model", "target", "lean", "lean_low", "lean_high", "p_value", "base_lean",
                                        "beyond_base_low", "beyond_base_high"])
    table.insert(6, "p_adjusted", false_discovery_control(table["p_value"], method="bh") if len(table) else [])
    table["inherits"] = (table["p_adjusted"] < alpha) & (table["lean"] > 0) & (table["beyond_base_low"] > 0)
    return table


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
    cross_task = {(source, target): map_prior(train_labels[source], run.source_spec(source), run.target_spec(target))
                  for target in targets for source in run.sources
                  if run.source_spec(source).name != run.target_spec(target).name}
    tests = inheritance_tests(items, cross_task, {target: run.target_spec(target).labels for target in targets})
    tests_path = out_dir / "labels_inheritance.csv"
    save_table(tests, tests_path, index=False, float_format="%.4f")
    path = out_dir / "labels.csv"
    save_table(table, path, index=False, float_format="%.4f")
    confusion_path = out_dir / "confusion.csv"
    long = [frame.stack().rename("count").reset_index().assign(target=target, model=model)
            for target, by_model in confusions.items() for model, frame in by_model.items()]
    save_table(pd.concat(long)[["target", "model", "gold", "predicted", "count"]], confusion_path, index=False)
    section.tables = [path, confusion_path, tests_path]
    section.figures = [_confusion_grid(out_dir / "labels_confusion.png", confusions, run.models),
                       _prior_figure(out_dir / "labels_prior.png", table)]
    section.reading = _reading(table) + " " + _inheritance_reading(tests)
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
    return (text + f"; in {toward} of {len(with_prior)} adapter × target cells with a comparable source prior the "
            "predicted-label distribution moved toward the source's label prior (descriptive: learning the target "
            "can look the same).")


def _inheritance_reading(tests: pd.DataFrame) -> str:
    control = ("(null: no lean toward the labels the source favours, on items grouped by gold label so that "
               "answering correctly leans 0, and no more than the base model's; cross-task cells with an "
               "unbalanced source prior; paired bootstrap, Benjamini–Hochberg)")
    if tests.empty:
        return f"No cross-task cell has an unbalanced source prior to test for inheritance {control}."
    inherits = tests[tests["inherits"]]
    if inherits.empty:
        return (f"Tested against learning, none of the {len(tests)} testable cells inherits its source's label "
                f"prior {control}.")
    best = inherits.loc[inherits["lean"].idxmax()]
    return (f"Tested against learning, {len(inherits)} of {len(tests)} testable cells inherit their source's label "
            f"prior {control}; strongest: {best['model']} on {best['target']}, lean {best['lean']:+.3f} "
            f"(interval {best['lean_low']:+.3f} to {best['lean_high']:+.3f}, base {best['base_lean']:+.3f}; "
            f"adjusted p = {best['p_adjusted']:.3f}).")


def _confusion_grid(path: Path, confusions: dict[str, dict[str, pd.DataFrame]], models: list[str]) -> Figure:
    targets = list(confusions)
    figure = new_figure(figsize=(2.3 * len(targets) + 0.6, 2.1 * len(models) + 0.6), layout="constrained")
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

"""Which syntactic structures gained? Success ratios per dependency relation (paper 1, "syntax").

Each target item's **input** (the example's own text: no instruction line, which is the same for every
item of a target, and no gold answer) is parsed with spaCy's small English pipeline. For an adapter,
a target and a dependency relation, we take the items whose input contains that relation and compare
the adapter's accuracy on them with the base model's: the success ratio ``adapter_acc / base_acc``
(NaN when the base model solved none of them; the difference ``adapter_acc - base_acc`` is always
given) with a paired percentile bootstrap over those items (both models scored on the same resampled
items, so per-item difficulty cancels).

A gain is *reliable* when the bootstrap interval of the difference lies above 0 (for a base accuracy
above 0 this is the same as the ratio's interval lying above 1). Intervals are per relation and not
corrected for the many relations tested; :func:`reading` reports how many reliable gains chance alone
would give.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure
from scipy.stats import binom

from ..sections import Figure, Section
from .base import RunData
from .features import dependency_labels

DPI = 150
TOP_PER_ADAPTER = 8
COLUMNS = ["relation", "n_items", "base_acc", "adapter_acc", "ratio", "ratio_low", "ratio_high",
           "difference", "difference_low", "difference_high"]


class DependencyRatios:
    """Per dependency relation: accuracy of base and adapter on the items containing it, ratio, difference, CIs."""

    def __init__(self, n_resamples: int = 1000, min_items: int = 5, seed: int = 0, confidence: float = 0.95):
        self.n_resamples = n_resamples
        self.min_items = min_items
        self.seed = seed
        self.confidence = confidence

    def fit(self, relations_per_item, base_correct, adapter_correct) -> DependencyRatios:
        """``relations_per_item``: one set of relation labels per item; the scores are 0/1 (or [0, 1]) per item.

        If all three are Series the scores are aligned on the relations' index (item ids); otherwise by position.
        """
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence}")
        if self.n_resamples < 1 or self.min_items < 1:
            raise ValueError("n_resamples and min_items must be positive")
        if all(isinstance(value, pd.Series) for value in (relations_per_item, base_correct, adapter_correct)):
            base_correct = base_correct.reindex(relations_per_item.index)
            adapter_correct = adapter_correct.reindex(relations_per_item.index)
        relations = [set(item) for item in relations_per_item]
        base = np.asarray(base_correct, dtype=float)
        adapter = np.asarray(adapter_correct, dtype=float)
        if not len(relations) == len(base) == len(adapter):
            raise ValueError(f"got {len(relations)} items with relations, {len(base)} base scores "
                             f"and {len(adapter)} adapter scores")
        if np.isnan(base).any() or np.isnan(adapter).any():
            raise ValueError("base_correct and adapter_correct must have a score for every item")

        self.n_items_ = len(relations)
        self.base_acc_ = float(base.mean()) if len(base) else float("nan")
        self.adapter_acc_ = float(adapter.mean()) if len(adapter) else float("nan")
        rows = []
        for relation in sorted(set().union(*relations)):
            has = np.array([relation in item for item in relations])
            if has.sum() >= self.min_items:
                rows.append(self._row(relation, base[has], adapter[has]))
        table = pd.DataFrame(rows, columns=COLUMNS)
        # Ranked by gain: accuracy difference first (defined even when the base solved nothing), then ratio.
        self.table_ = table.sort_values(["difference", "ratio", "relation"], ascending=[False, False, True],
                                        na_position="last", ignore_index=True)
        return self

    def _row(self, relation: str, base: np.ndarray, adapter: np.ndarray) -> tuple:
        n = len(base)
        base_acc, adapter_acc = base.mean(), adapter.mean()
        # One stream per relation, so adding or dropping a relation never changes another's interval.
        rng = np.random.default_rng([self.seed, zlib.crc32(relation.encode())])
        counts = rng.multinomial(n, np.full(n, 1 / n), size=self.n_resamples)
        base_sums, adapter_sums = counts @ base, counts @ adapter
        tail = (1 - self.confidence) / 2
        difference_low, difference_high = np.quantile((adapter_sums - base_sums) / n, [tail, 1 - tail])
        if base_acc > 0:
            ratio = adapter_acc / base_acc
            # A resample where the base solved nothing has ratio inf (adapter solved some) or, 0/0, 1 (no change);
            # quantiles without interpolation keep inf from turning into NaN.
            ratios = np.divide(adapter_sums, base_sums, out=np.where(adapter_sums > 0, np.inf, 1.0),
                               where=base_sums > 0)
            ratio_low, ratio_high = np.quantile(ratios, [tail, 1 - tail], method="inverted_cdf")
        else:
            ratio = ratio_low = ratio_high = float("nan")
        return (relation, n, base_acc, adapter_acc, ratio, ratio_low, ratio_high,
                adapter_acc - base_acc, difference_low, difference_high)


def relations_per_item(texts: list[str]) -> list[set[str]]:
    """The set of dependency relations in each text (spaCy labels of its non-whitespace tokens)."""
    return [set(labels) for labels in dependency_labels(texts)]


# --------------------------------------------------------------------------------------------- run


def analyze(run: RunData, out_dir: Path, n_resamples: int = 1000, min_items: int = 5, seed: int = 0) -> Section:
    """Writes dependency_ratios.csv (every adapter x target x relation) and dependency_gains.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _ = run.matrix  # fails with a clear message if the run is unfinished
    inputs = {target: [example.input for example in run.eval_examples(target)] for target in run.targets}
    started = time.perf_counter()
    # One pipe over every target keeps spaCy's batches full.
    parsed = relations_per_item([text for texts in inputs.values() for text in texts])
    parse_seconds = time.perf_counter() - started
    relations, start = {}, 0
    for target, texts in inputs.items():
        relations[target] = pd.Series(parsed[start:start + len(texts)], index=range(len(texts)))
        start += len(texts)

    # Per item, the mean over a source's seeds.
    scores = run.items.pivot_table(index=["target", "item"], columns="model", values="correct", aggfunc="mean")
    tables = []
    for target in run.targets:
        target_scores = scores.loc[target]
        target_relations = relations[target].loc[target_scores.index]
        same_task_name = run.target_spec(target).name
        for adapter in run.sources:
            fit = DependencyRatios(n_resamples, min_items, seed=seed).fit(
                target_relations, target_scores["base"], target_scores[adapter])
            table = fit.table_.assign(adapter=adapter, target=target, target_items=fit.n_items_,
                                      target_difference=fit.adapter_acc_ - fit.base_acc_,
                                      same_task=run.source_spec(adapter).name == same_task_name)
            tables.append(table)
    columns = ["adapter", "target", *COLUMNS, "target_items", "target_difference", "same_task"]
    ratios = pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(columns=columns)
    table_path = out_dir / "dependency_ratios.csv"
    ratios.to_csv(table_path, index=False, float_format="%.6g")

    candidates, scope = candidate_rows(ratios)
    figure_path = out_dir / "dependency_gains.png"
    _gains_plot(candidates, run.sources, scope, min_items).savefig(figure_path, dpi=DPI)
    n_items = sum(len(texts) for texts in inputs.values())
    figure = Figure(
        "Dependency relations with the largest gains",
        f"Per adapter, the {TOP_PER_ADAPTER} ({scope}) target/relation rows with the highest lower bound of the "
        "accuracy gain on target items whose input contains the relation (relations in at least "
        f"{min_items} items, and not in every item); bars are adapter − base accuracy with paired bootstrap "
        f"95 % intervals ({n_resamples} resamples), diamonds the gain on all items of that target, labels the "
        "success ratio and the number of items. "
        f"Inputs of {n_items} items parsed with spaCy in {parse_seconds:.1f} s.", figure_path)
    section = Section("syntax", "Dependency relations behind the gains", reading(candidates, scope),
                      tables=[table_path], figures=[figure])
    if candidates.empty:
        section.skipped = f"no dependency relation occurs in at least {min_items} items of a target"
    return section


def candidate_rows(ratios: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows that can say which structure gained, and their scope ("cross-task" or "all").

    Same-task cells are left out (an adapter trained on the target's own task gains on every structure),
    unless the run has nothing else; a relation found in every item of a target (e.g. ROOT) only repeats
    the whole target's gain.
    """
    informative = ratios[ratios["n_items"] < ratios["target_items"]]
    cross_task = informative[~informative["same_task"].astype(bool)]
    if not cross_task.empty or informative.empty:
        return cross_task, "cross-task"
    return informative, "all"


def reading(candidates: pd.DataFrame, scope: str, confidence: float = 0.95) -> str:
    """The relation whose gain is most reliably positive, set against how many reliable gains chance would give."""
    n_tests = len(candidates)
    if not n_tests:
        return "No dependency relation occurs in enough items to compare adapter and base accuracy in this run."
    scope_text = "cross-task " if scope == "cross-task" else ""
    reliable = candidates[candidates["difference_low"] > 0]
    if reliable.empty:
        return (f"No dependency relation shows a reliable {scope_text}gain in this run: none of the {n_tests} "
                f"adapter × target × relation tests has a {confidence:.0%} bootstrap interval of the accuracy "
                "difference above 0.")
    # Ranked like the figure, by the interval's lower bound: a 5-item jump from 0.2 to 1.0 is less sure than it looks.
    best = reliable.sort_values(["difference_low", "difference"], ascending=False).iloc[0]
    ratio = f"ratio {best['ratio']:.2f}" if np.isfinite(best["ratio"]) else "the base solved none"
    tail = (1 - confidence) / 2
    # Treating the tests as independent is rough (relations share items), but it sizes the chance level.
    beyond_chance = binom.sf(len(reliable) - 1, n_tests, tail) < 1 - confidence
    verdict = f"{'more' if beyond_chance else 'not clearly more'} than the ~{tail * n_tests:.1f} expected by chance"
    return (f"The surest {scope_text}gain (highest lower {confidence:.0%} bound) is on {best['target']} items with "
            f"`{best['relation']}` ({_explain(best['relation'])}) with the {best['adapter']} adapter "
            f"(accuracy {best['base_acc']:.2f} → {best['adapter_acc']:.2f}, {ratio}, n = {int(best['n_items'])}; "
            f"{best['target_difference']:+.2f} on all its items), "
            f"one of {len(reliable)} reliable gains among {n_tests} tests, {verdict}.")


def _explain(relation: str) -> str:
    import spacy

    return spacy.explain(relation) or "spaCy label"


def _gains_plot(candidates: pd.DataFrame, adapters: list[str], scope: str, min_items: int) -> MplFigure:
    n_columns = min(3, max(len(adapters), 1))
    n_rows = int(np.ceil(len(adapters) / n_columns)) or 1
    figure = MplFigure(figsize=(5.4 * n_columns, (0.34 * TOP_PER_ADAPTER + 1.3) * n_rows), layout="constrained")
    panels = np.atleast_1d(figure.subplots(n_rows, n_columns, sharex=True, squeeze=False)).ravel()
    for axes in panels[len(adapters):]:
        axes.set_visible(False)
    for axes, adapter in zip(panels, adapters):
        rows = candidates[candidates["adapter"] == adapter]
        top = rows.sort_values(["difference_low", "difference"], ascending=False).head(TOP_PER_ADAPTER)[::-1]
        axes.set_title(f"{adapter} adapter", fontsize=10)
        axes.axvline(0, color="grey", linewidth=0.8)
        axes.grid(axis="x", alpha=0.3)
        if top.empty:
            axes.text(0.5, 0.5, f"no {scope} relation in ≥ {min_items} items", ha="center", va="center",
                      transform=axes.transAxes, fontsize=9, color="grey")
            axes.set_yticks([])
            continue
        positions = np.arange(len(top))
        reliable = top["difference_low"] > 0
        errors = np.vstack([top["difference"] - top["difference_low"], top["difference_high"] - top["difference"]])
        axes.barh(positions, top["difference"], xerr=errors, color=np.where(reliable, "tab:green", "silver"),
                  edgecolor="black", linewidth=0.4, error_kw={"elinewidth": 0.8, "capsize": 2})
        axes.scatter(top["target_difference"], positions, marker="D", s=14, color="black", zorder=3)
        axes.set_yticks(positions, [f"{r.relation} · {r.target}" for r in top.itertuples()], fontsize=8)
        for position, row in zip(positions, top.itertuples()):
            ratio = f"×{row.ratio:.2f}" if np.isfinite(row.ratio) else "base 0"
            right = max(row.difference_high, row.target_difference, 0)
            axes.annotate(f"{ratio}, n={row.n_items}", (right, position), xytext=(4, 0),
                          textcoords="offset points", va="center", fontsize=7)
    left, right = panels[0].get_xlim()
    panels[0].set_xlim(left, right + 0.3 * (right - left))  # room for the ratio labels (x is shared)
    figure.supxlabel("accuracy gain on the target items whose input has the relation (adapter − base)", fontsize=10)
    figure.suptitle(f"Largest {scope} gains by dependency relation (green: 95 % interval above 0; "
                    "◆: gain on all items of the target)")
    return figure

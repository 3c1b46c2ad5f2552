"""Which syntactic structures gained? Success ratios per dependency relation (paper 1, "syntax").

Each target item's **input** (the example's own text: no instruction line, which is the same for every
item of a target, and no gold answer) is parsed with spaCy's small English pipeline. For an adapter,
a target and a dependency relation, we take the items whose input contains that relation and compare
the adapter's accuracy on them with the base model's: the success ratio ``adapter_acc / base_acc``
(NaN when the base model solved none of them; the difference ``adapter_acc - base_acc`` is always
given) with a paired percentile bootstrap over those items (both models scored on the same resampled
items, so per-item difficulty cancels).

A gain on the items with a relation is not yet a finding about that relation: an adapter that gains
on a whole target gains on the items with any relation. The test is therefore "items with the
relation vs items without it": the *interaction* is the adapter's gain on the items that have the
relation minus its gain on those that do not, with a bootstrap interval that resamples the two groups
of items separately and a Welch t-test p-value on the per-item gains. The p-values of every
adapter × target × relation tested are Benjamini–Hochberg-corrected together, and a gain is
*reliable* when its adjusted p is below 0.05, it is larger on the items with the relation, and it is a
gain there (interval above 0: losing less on some items than on others is not a gain). Both groups
need ``min_items`` items.
"""

from __future__ import annotations

import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure
from scipy.stats import false_discovery_control, ttest_ind

from ..files import new_figure, save_figure, save_table
from ..sections import Figure, Section
from .base import RunData
from .features import dependency_labels

DPI = 150
TOP_PER_ADAPTER = 8
COLUMNS = ["relation", "n_items", "base_acc", "adapter_acc", "ratio", "ratio_low", "ratio_high",
           "difference", "difference_low", "difference_high", "difference_without", "interaction",
           "interaction_low", "interaction_high", "interaction_p"]
ALPHA = 0.05


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
                rows.append(self._row(relation, base, adapter, has))
        table = pd.DataFrame(rows, columns=COLUMNS)
        # Ranked by gain: accuracy difference first (defined even when the base solved nothing), then ratio.
        self.table_ = table.sort_values(["difference", "ratio", "relation"], ascending=[False, False, True],
                                        na_position="last", ignore_index=True)
        return self

    def _row(self, relation: str, all_base: np.ndarray, all_adapter: np.ndarray, has: np.ndarray) -> tuple:
        base, adapter = all_base[has], all_adapter[has]
        n = len(base)
        base_acc, adapter_acc = base.mean(), adapter.mean()
        # One stream per relation, so adding or dropping a relation never changes another's interval.
        rng = np.random.default_rng([self.seed, zlib.crc32(relation.encode())])
        interaction = self._interaction(all_adapter - all_base, has, rng)
        # Resampled item indices: the bootstrap that multinomial counts draw too, 7x faster (that took half of
        # the syntax analysis of the demo's 1,116 rows).
        picks = rng.integers(0, n, (self.n_resamples, n))
        base_sums, adapter_sums = base[picks].sum(axis=1), adapter[picks].sum(axis=1)
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
                adapter_acc - base_acc, difference_low, difference_high, *interaction)

    def _interaction(self, gains: np.ndarray, has: np.ndarray, rng: np.random.Generator) -> tuple:
        """(gain without the relation, gain with minus without, its interval, Welch p); NaN when every item
        has the relation."""
        with_relation, without = gains[has], gains[~has]
        if len(without) < self.min_items:  # a handful of other items would decide the comparison alone
            return (float(without.mean()) if len(without) else float("nan"),) + (float("nan"),) * 4
        difference = with_relation.mean() - without.mean()
        resampled = [group[rng.integers(0, len(group), (self.n_resamples, len(group)))].mean(axis=1)
                     for group in (with_relation, without)]
        tail = (1 - self.confidence) / 2
        low, high = np.quantile(resampled[0] - resampled[1], [tail, 1 - tail])
        if np.ptp(gains) == 0:
            p = 1.0  # every item gained the same
        elif min(len(with_relation), len(without)) < 2:
            p = float("nan")  # no spread to test within a group of one
        else:
            with warnings.catch_warnings():
                # A group whose items all gained the same (nonzero) amount has variance exactly 0, which scipy
                # reports as precision lost; Welch's test is exact there.
                warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
                p = float(ttest_ind(with_relation, without, equal_var=False).pvalue)
            if np.isnan(p):  # both groups constant: they differ completely or not at all
                p = 0.0 if difference else 1.0
        return float(without.mean()), float(difference), float(low), float(high), p


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
    candidates, scope = candidate_rows(ratios)
    candidates = with_adjusted_p(candidates)
    ratios["interaction_p_adjusted"] = candidates["interaction_p_adjusted"].reindex(ratios.index)
    save_table(ratios, table_path, index=False, float_format="%.6g")
    figure_path = out_dir / "dependency_gains.png"
    save_figure(_gains_plot(candidates, run.sources, scope, min_items), figure_path, DPI)
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


def with_adjusted_p(candidates: pd.DataFrame) -> pd.DataFrame:
    """``candidates`` with ``interaction_p_adjusted``: Benjamini–Hochberg over every tested row."""
    tested = candidates["interaction_p"].notna()
    adjusted = pd.Series(np.nan, index=candidates.index)
    if tested.any():
        adjusted[tested] = false_discovery_control(candidates.loc[tested, "interaction_p"], method="bh")
    return candidates.assign(interaction_p_adjusted=adjusted)


def reliable_rows(candidates: pd.DataFrame, alpha: float = ALPHA) -> pd.Series:
    """Rows where the adapter gains on the items with the relation (interval above 0) and gains more there
    than on the items without it (BH-adjusted p < alpha): losing less on some items is not a gain."""
    return ((candidates["interaction_p_adjusted"] < alpha) & (candidates["interaction"] > 0)
            & (candidates["difference_low"] > 0))


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


def reading(candidates: pd.DataFrame, scope: str, alpha: float = ALPHA) -> str:
    """The relation whose items gain most beyond the rest of the target, if any survives the correction."""
    tested = candidates[candidates["interaction_p"].notna()] if len(candidates) else candidates
    n_tests = len(tested)
    if not n_tests:
        return "No dependency relation occurs in enough items (and not in all of them) to test in this run."
    scope_text = "cross-task " if scope == "cross-task" else ""
    null = (f"null: the adapter gains as much on the target's items without the relation; Welch t-test on "
            f"per-item gains, Benjamini–Hochberg over the {n_tests} {scope_text}adapter × target × relation tests")
    reliable = tested[reliable_rows(tested, alpha)]
    if reliable.empty:
        return (f"No dependency relation carries a reliable {scope_text}gain in this run: on no target do the items "
                f"with a relation gain more than the items without it{_closest(tested, alpha)} ({null}).")
    best = reliable.sort_values(["interaction_low", "interaction"], ascending=False).iloc[0]
    ratio = f"ratio {best['ratio']:.2f}" if np.isfinite(best["ratio"]) else "the base solved none"
    return (f"The surest {scope_text}syntactic gain is on {best['target']} items with `{best['relation']}` "
            f"({_explain(best['relation'])}) with the {best['adapter']} adapter: accuracy {best['base_acc']:.2f} → "
            f"{best['adapter_acc']:.2f} ({ratio}, n = {int(best['n_items'])}), a gain "
            f"{best['interaction'] * 100:+.0f} pp larger than on the target's other items (interval "
            f"{best['interaction_low'] * 100:+.0f} to {best['interaction_high'] * 100:+.0f} pp, adjusted p = "
            f"{best['interaction_p_adjusted']:.3f}); {len(reliable)} of {n_tests} tests are reliable ({null}).")


def _closest(tested: pd.DataFrame, alpha: float) -> str:
    """What came nearest a reliable gain, and how many significant differences run the other way: a small
    p-value there means the items *without* the relation gained more (or the ones with it lost less)."""
    gained_more_with = tested[(tested["interaction"] > 0) & (tested["difference"] > 0)]
    parts = []
    if len(gained_more_with):
        best = gained_more_with.sort_values("interaction_p").iloc[0]
        parts.append(f"nearest: `{best['relation']}` on {best['target']} with {best['adapter']}, "
                     f"{best['interaction'] * 100:+.0f} pp, adjusted p = {best['interaction_p_adjusted']:.2f}")
    other_way = int(((tested["interaction_p_adjusted"] < alpha) & (tested["interaction"] < 0)).sum())
    if other_way:
        parts.append(f"{other_way} significant the other way, where the items without the relation gained more")
    lost_less = int(((tested["interaction_p_adjusted"] < alpha) & (tested["interaction"] > 0)
                     & (tested["difference"] <= 0)).sum())
    if lost_less:
        parts.append(f"{lost_less} where the items with it only lost less")
    return f" ({'; '.join(parts)})" if parts else ""


def _explain(relation: str) -> str:
    import spacy

    return spacy.explain(relation) or "spaCy label"


def _gains_plot(candidates: pd.DataFrame, adapters: list[str], scope: str, min_items: int) -> MplFigure:
    n_columns = min(3, max(len(adapters), 1))
    n_rows = int(np.ceil(len(adapters) / n_columns)) or 1
    figure = new_figure(figsize=(5.4 * n_columns, (0.34 * TOP_PER_ADAPTER + 1.3) * n_rows), layout="constrained")
    panels = np.atleast_1d(figure.subplots(n_rows, n_columns, sharex=True, squeeze=False)).ravel()
    for axes in panels[len(adapters):]:
        axes.set_visible(False)
    for axes, adapter in zip(panels, adapters):
        rows = candidates[candidates["adapter"] == adapter]
        top = rows.sort_values(["interaction_low", "difference"], ascending=False,
                               na_position="last").head(TOP_PER_ADAPTER)[::-1]
        axes.set_title(f"{adapter} adapter", fontsize=10)
        axes.axvline(0, color="grey", linewidth=0.8)
        axes.grid(axis="x", alpha=0.3)
        if top.empty:
            axes.text(0.5, 0.5, f"no {scope} relation in ≥ {min_items} items", ha="center", va="center",
                      transform=axes.transAxes, fontsize=9, color="grey")
            axes.set_yticks([])
            continue
        positions = np.arange(len(top))
        reliable = reliable_rows(top)
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
    figure.suptitle(f"Largest {scope} gains by dependency relation (green: larger than on the target's other "
                    "items, BH-adjusted p < 0.05; ◆: gain on all items of the target)")
    return figure

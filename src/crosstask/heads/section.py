"""The heads section of a run's report: patterns before and after fine-tuning, their concentration,
which tasks share heads, and (optionally) a complex task's change as a mix of basic tasks' changes.

``crosstask heads RUN_DIR`` computes the patterns (:func:`compute_run_patterns`, cached in
``RUN_DIR/heads/``) and then this section, which the report shows like the other analyses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import seaborn as sns
from scipy.cluster.hierarchy import leaves_list, linkage

from ..analysis.base import RunData
from ..errors import CrosstaskError
from ..files import new_figure, save_figure, save_table
from ..jobs import DynamicsJob
from ..keys import BASE, HEADS_VERSION, content_key
from ..progress import reporting
from ..sections import Figure, Section
from ..tasks.data import examples_digest
from ..workspace import Workspace
from .combination import HeadCombination, unit_change
from .compare import PatternShift, pattern_correlation
from .figures import dynamics_figure, dynamics_reading
from .patterns import Mode, Normalize
from .run import HALVES, SOURCE_PREFIX, compute_run_patterns, half_pattern_jobs, source_pattern_jobs

DPI = 150
TOP_K = 10
DYNAMICS_PROBE_ITEMS = 16


def analyze(run: RunData, out_dir: Path, n_items: Optional[int] = 32, batch_size: int = 8, mode: Mode = "abs",
            normalize: Normalize = None, complex_task: Optional[str] = None, basics: Optional[list[str]] = None,
            dynamics: Optional[str] = None, every: int = 5, progress=False, executor=None) -> Section:
    """The heads section; ``dynamics`` (a source of the run) also retrains that adapter as the run trained it,
    with a pattern snapshot on its own task every ``every`` steps. Earlier dynamics in the store are shown too."""
    if dynamics:
        _record_dynamics(run, dynamics, every, mode, normalize, batch_size, progress, executor)
    compute_run_patterns(run, n_items=n_items, batch_size=batch_size, mode=mode, normalize=normalize,
                         progress=progress, executor=executor)
    patterns = {(model, task): run.store.pattern(model, task) for model in run.models for task in run.targets}
    shifts = {(adapter, task): PatternShift(TOP_K).fit(patterns[("base", task)], patterns[(adapter, task)])
              for adapter in run.sources for task in run.targets}

    summary = pd.DataFrame([
        {"adapter": adapter, "task": task, "gini_before": shift.gini_before_, "gini_after": shift.gini_after_,
         "cv_before": shift.cv_before_, "cv_after": shift.cv_after_,
         "change_norm": float(np.linalg.norm(shift.delta_)),
         "top_gained": " ".join(f"L{row.layer}H{row.head}" for row in shift.top_gained_.head(5).itertuples())}
        for (adapter, task), shift in shifts.items()])
    top = pd.concat([shift.top_gained_.assign(adapter=adapter, task=task, rank=np.arange(1, len(shift.top_gained_) + 1))
                     for (adapter, task), shift in shifts.items()], ignore_index=True)
    own = {adapter: _own_task(run, adapter) for adapter in run.sources}
    base_correlation = pattern_correlation({task: patterns[("base", task)] for task in run.targets})
    change_correlation = pattern_correlation({f"{adapter} on {own[adapter]}": shifts[(adapter, own[adapter])].delta_
                                              for adapter in run.sources})

    tables = {
        "heads_summary.csv": summary, "heads_top.csv": top[["adapter", "task", "rank", "layer", "head", "change"]],
        "heads_task_correlation.csv": base_correlation, "heads_change_correlation.csv": change_correlation,
    }
    figures = [
        _pattern_grid(out_dir / "heads_base.png", {task: patterns[("base", task)] for task in run.targets},
                      "Base model: head activation pattern per task", "activity", diverging=False),
        _pattern_grid(out_dir / "heads_change.png",
                      {f"{adapter}\non {own[adapter]}": shifts[(adapter, own[adapter])].delta_
                       for adapter in run.sources},
                      "Change after fine-tuning (adapter − base)", "Δ activity", diverging=True),
        _concentration_figure(out_dir / "heads_concentration.png", summary),
        _correlation_figure(out_dir / "heads_task_correlation.png", base_correlation,
                            "Do tasks share heads? Base patterns"),
    ]
    head_prediction = None
    if len(run.sources) >= 3:
        head_prediction = _head_similarity_prediction(run, n_items, batch_size, mode, normalize, patterns, progress,
                                                      executor)
        tables["heads_prediction.csv"] = head_prediction
    combination = None
    if complex_task:
        combination = _combination(run, complex_task, basics or [], n_items, batch_size, mode, normalize, progress,
                                   executor)
        tables["heads_combination.csv"] = combination
        figures.append(_combination_figure(out_dir / "heads_combination.png", combination, complex_task))
    readings = []
    for source, task, curve, _ in run.store.dynamics():
        stem = f"dynamics_{source}__{task}".replace("/", "_")
        figures.append(dynamics_figure(curve, out_dir / f"heads_{stem}.png", source, task))
        readings.append(dynamics_reading(curve, source, task))
    paths = []
    for name, table in tables.items():
        save_table(table, out_dir / name, index=name.endswith("correlation.csv"), float_format="%.6g")
        paths.append(out_dir / name)
    reading = " ".join([_reading(run, summary, base_correlation, combination, complex_task, mode, n_items),
                        *([_prediction_reading(head_prediction)] if head_prediction is not None else []), *readings])
    return Section("heads", "Attention heads: activation patterns before and after fine-tuning", reading,
                   tables=paths, figures=figures)


def _record_dynamics(run: RunData, source: str, every: int, mode: Mode, normalize: Normalize, batch_size: int,
                     progress, executor) -> None:
    """Retrain ``source``'s adapter exactly as the run did, snapshotting its pattern on its own task
    (the first 16 eval items) every ``every`` steps; the curve and snapshots go to the store."""
    from ..pipeline import make_executor

    if source not in run.sources:
        raise CrosstaskError(f"--dynamics {source!r} is not a source of this run; sources: {', '.join(run.sources)}")
    if every < 1:
        raise CrosstaskError(f"--every must be at least 1, got {every}")
    train = run.plan.train_job(source)
    probe_task = _own_task(run, source)
    probe_job, _ = run.plan.eval_cell(BASE, probe_task)
    probe = probe_job.examples[:DYNAMICS_PROBE_ITEMS]
    key = content_key("dynamics", HEADS_VERSION, train.key, examples_digest(probe_job.spec, probe), every, mode,
                      normalize)
    job = DynamicsJob(train, probe_task, probe_job.spec, probe, key, every, mode, normalize, batch_size)
    with reporting(progress) as reporter:
        Workspace(run.root).run_jobs([job], executor or make_executor(run.experiment), reporter)


def _own_task(run: RunData, adapter: str) -> str:
    """The target an adapter is compared on: its own task when it is a target, else the first target."""
    task = run.source_spec(adapter).name
    same = [target for target in run.targets if run.target_spec(target).name == task]
    return same[0] if same else run.targets[0]


COMBINATION_PERMUTATIONS = 1000


def _head_similarity_prediction(run: RunData, n_items, batch_size, mode, normalize, patterns: dict, progress,
                                executor) -> pd.DataFrame:
    """Does the base model's head-pattern similarity between a source's training data and a target help
    predict transfer? Leave-one-source-out scores of the feature model without and with it."""
    from ..analysis.prediction import compare_with_feature, pair_features, run_profiles
    from ..analysis.similarity import same_task_cells
    from ..pipeline import make_executor

    jobs = source_pattern_jobs(run, n_items, batch_size, mode, normalize)
    with reporting(progress) as reporter:
        Workspace(run.root).run_jobs(jobs, executor or make_executor(run.experiment), reporter)

    def unit(pattern: np.ndarray) -> np.ndarray:
        flat = pattern.ravel().astype(float)
        return flat / np.linalg.norm(flat)

    similarity = pd.Series({(source, target): float(unit(run.store.pattern(BASE, SOURCE_PREFIX + source))
                                                    @ unit(patterns[(BASE, target)]))
                            for source in run.sources for target in run.targets}, name="head_similarity")
    similarity.index.names = ["source", "target"]
    sources, targets = run_profiles(run)
    return compare_with_feature(lambda rest: pair_features(sources, targets, rest), similarity, run.delta,
                                {name: profile.embedding for name, profile in sources.items()}, run.clusters,
                                same_task_cells(run))


def _prediction_reading(table: pd.DataFrame) -> str:
    without, with_ = (table.set_index("feature_set").loc[name] for name in ("without", "with"))
    helps = with_["mae_high"] < without["mae_low"] or with_["ndcg_low"] > without["ndcg_high"]
    return (f"Adding the base model's head-pattern similarity between each source's training data and each target "
            f"(no training needed) to the transfer predictor changes its leave-one-source-out error from "
            f"{without['mae'] * 100:.1f} to {with_['mae'] * 100:.1f} pp and its NDCG@3 from {without['ndcg']:.2f} to "
            f"{with_['ndcg']:.2f}: {'it helps' if helps else 'no gain beyond the bootstrap intervals'}.")


def _combination(run: RunData, complex_task: str, basics: list[str], n_items, batch_size, mode, normalize,
                 progress, executor) -> pd.DataFrame:
    """α: the complex adapter's change on the complex task regressed on the basic adapters' changes there,
    fitted on one half of the probe items and scored (R²) on the other half, against shuffled heads.

    Changes are taken between patterns scaled to unit L2 norm (:func:`unit_change`): a gradient pattern
    scales with the loss, so after training every head reads less active and raw changes mostly mirror
    −A_base; the scaled change measures how activity moved between heads."""
    from ..pipeline import make_executor

    for name in [complex_task, *basics]:
        if name not in run.sources:
            raise CrosstaskError(f"--complex/--basics name {name!r} is not a source of this run; "
                                 f"sources: {', '.join(run.sources)}")
    if complex_task not in run.targets:
        raise CrosstaskError(f"the complex task {complex_task!r} must also be a target of the run")
    basics = basics or [source for source in run.sources if source != complex_task]
    jobs = half_pattern_jobs(run, [BASE, complex_task, *basics], complex_task, n_items, batch_size, mode, normalize)
    with reporting(progress) as reporter:
        Workspace(run.root).run_jobs(jobs, executor or make_executor(run.experiment), reporter)

    def changes(half: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        task = half + complex_task

        def change(adapter: str) -> np.ndarray:
            return unit_change(run.store.pattern(BASE, task), run.store.pattern(adapter, task))

        return change(complex_task), {basic: change(basic) for basic in basics}

    fit_half, held_out_half = HALVES
    fitted = HeadCombination(non_negative=True, n_permutations=COMBINATION_PERMUTATIONS).fit(*changes(fit_half))
    fitted.held_out(*changes(held_out_half))
    return pd.DataFrame({"basic": fitted.weights_.index, "weight": fitted.weights_.to_numpy(),
                         "proportion": _proportions(fitted), "items_per_half": len(jobs[0].examples),
                         "r2_fit": fitted.r2_, "r2": fitted.held_out_r2_,
                         "r2_null_median": np.median(fitted.held_out_null_),
                         "r2_p_value": fitted.held_out_p_value_})


def _proportions(fitted: HeadCombination) -> np.ndarray:
    try:
        return fitted.mixture_proportions().to_numpy()
    except ValueError:  # every weight is zero: no basic task explains the change
        return np.zeros(len(fitted.weights_))


def _reading(run, summary, base_correlation, combination, complex_task, mode, n_items) -> str:
    own = summary[[task == _own_task(run, adapter) for adapter, task in zip(summary["adapter"], summary["task"])]]
    before, after = own["gini_before"].mean(), own["gini_after"].mean()
    verb = "concentrates" if after > before else "spreads"
    kinds = {task: run.target_spec(task).answer_type for task in run.targets}
    same, across = [], []
    for i, a in enumerate(run.targets):
        for b in run.targets[i + 1:]:
            (same if kinds[a] == kinds[b] else across).append(base_correlation.at[a, b])
    text = (f"Fine-tuning {verb} head activity on each adapter's own task (Gini {before:.2f} → {after:.2f} on "
            f"average, {mode} patterns over {n_items or 'all'} items; descriptive, not tested)")
    if same and across:
        text += (f"; base patterns of tasks of the same answer type correlate at r = {np.mean(same):.2f} against "
                 f"{np.mean(across):.2f} across types (descriptive)")
    if combination is not None:
        best = combination.loc[combination["weight"].idxmax()]
        half = int(combination["items_per_half"].iloc[0])
        text += (f"; {complex_task}'s change is fitted by the basic tasks' changes, led by {best['basic']} "
                 f"(α = {best['weight']:.2f}), with R² = {best['r2']:.2f} on held-out probe items (α fitted on "
                 f"{half} items, scored on {half} others; R² = {best['r2_fit']:.2f} where it was fitted) against "
                 f"R² = {best['r2_null_median']:.2f} (median) with each basic change shuffled over the heads, "
                 f"p = {best['r2_p_value']:.3f} ({COMBINATION_PERMUTATIONS} permutations; changes between patterns "
                 "scaled to unit norm, since raw gradient patterns scale with the loss)")
    return text + "."


def _pattern_grid(path: Path, patterns: dict[str, np.ndarray], title: str, label: str, diverging: bool) -> Figure:
    """One layer × head heatmap per pattern, each on its own colour scale (tasks' losses differ in size)."""
    n = len(patterns)
    columns = min(n, 4)
    rows = int(np.ceil(n / columns))
    layers, heads = next(iter(patterns.values())).shape
    figure = new_figure(figsize=(2.6 * columns + 0.4, 0.6 + rows * max(2.6, 0.11 * layers)), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes, (name, pattern) in zip(grid.flat, patterns.items()):
        limit = float(np.abs(pattern).max()) or 1.0
        cmap, vmin = ("vlag", -limit) if diverging else ("rocket_r", 0.0)
        image = axes.imshow(pattern, aspect="auto", cmap=cmap, vmin=vmin, vmax=limit, interpolation="nearest")
        figure.colorbar(image, ax=axes, shrink=0.85, pad=0.02).ax.tick_params(labelsize=6)
        axes.set_title(name, fontsize=9)
        axes.set(xlabel="head", ylabel="layer")
        axes.set_xticks(range(heads))
        axes.tick_params(labelsize=6)
    for axes in list(grid.flat)[n:]:
        axes.set_visible(False)
    figure.suptitle(f"{title} ({label}; each panel on its own scale)")
    save_figure(figure, path, DPI)
    caption = ("Each panel is a layer × head grid (layer 0 at the top), with its own colour scale. "
               + ("Red: the head matters more after fine-tuning; blue: less." if diverging else
                  "Darker: the head's gate has a larger first-order effect on the answer loss."))
    return Figure(title, caption, path)


def _concentration_figure(path: Path, summary: pd.DataFrame) -> Figure:
    figure = new_figure(figsize=(9, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    for axes, measure, name in ((left, "gini", "Gini coefficient"), (right, "cv", "coefficient of variation")):
        values = summary[[f"{measure}_before", f"{measure}_after"]].to_numpy()
        low, high = float(values.min()), float(values.max())
        sns.scatterplot(summary, x=f"{measure}_before", y=f"{measure}_after", hue="adapter", ax=axes, s=28,
                        legend=axes is right)
        axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
        axes.set(title=name, xlabel="base model", ylabel="after fine-tuning")
        sns.despine(ax=axes)
    right.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save_figure(figure, path, DPI)
    caption = ("Concentration of head activity before (x) and after (y) fine-tuning, one point per adapter × task; "
               "points above the diagonal mean fewer heads carry more of the activity after training.")
    return Figure("Concentration before and after fine-tuning", caption, path)


def _correlation_figure(path: Path, correlation: pd.DataFrame, title: str) -> Figure:
    values = correlation.to_numpy()
    order = leaves_list(linkage(values, "average")) if len(values) > 2 else np.arange(len(values))
    ordered = correlation.iloc[order, order]
    n = len(ordered)
    figure = new_figure(figsize=(max(4.5, 1.8 + 0.7 * n), max(3.8, 1.4 + 0.6 * n)), layout="constrained")
    axes = figure.add_subplot()
    sns.heatmap(ordered, ax=axes, cmap="vlag", vmin=-1, vmax=1, annot=True, fmt=".2f", square=True,
                annot_kws={"fontsize": 8}, linewidths=0.5, linecolor="white", cbar_kws={"label": "Pearson r"})
    axes.set(title=title)
    save_figure(figure, path, DPI)
    caption = ("Correlation between the tasks' head activation patterns, ordered by hierarchical clustering: "
               "blocks of high correlation are tasks that rely on the same heads.")
    return Figure(title, caption, path)


def _combination_figure(path: Path, combination: pd.DataFrame, complex_task: str) -> Figure:
    figure = new_figure(figsize=(max(4.0, 1.5 + 0.9 * len(combination)), 3.4), layout="constrained")
    axes = figure.add_subplot()
    axes.bar(combination["basic"], combination["weight"], color=sns.color_palette("deep")[0])
    axes.set(title=f"{complex_task} as a mix of basic tasks (held-out R² = {combination['r2'].iloc[0]:.2f})",
             ylabel="weight α (non-negative)")
    axes.tick_params(axis="x", labelrotation=30)
    sns.despine(ax=axes)
    save_figure(figure, path, DPI)
    caption = ("Non-negative least-squares weights of each basic adapter's pattern change in the complex adapter's "
               "change, fitted on one half of the complex task's probe items; R² is the share of the change they "
               "explain on the other half.")
    return Figure("Combination of basic tasks", caption, path)

"""A self-contained HTML report of one run: the transfer matrix, its significance and latent traits.

Figures are also written as PNGs next to the report so they can go straight into a paper; the HTML
embeds them as data URIs, so the single file opens from disk or an e-mail with nothing external.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .analysis.traits import BASE, LatentTraits
from .config import REPLICATE_MARK
from .files import new_figure, save_figure, write_atomically
from .sections import Figure, Section

DIVERGING = "vlag"
SEQUENTIAL = "crest"
DPI = 150
TEMPLATES = Path(__file__).with_name("templates")
STYLE = {"font.size": 10, "axes.titlesize": 12, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9}


def write_report(
    out_dir: str | Path,
    matrix: pd.DataFrame,
    intervals: pd.DataFrame | None,
    traits: LatentTraits | None,
    meta: dict,
    sections: list[Section] | None = None,
) -> Path:
    """Write the figures and ``report.html`` into ``out_dir``; return the HTML path.

    ``intervals`` (from :func:`paired_bootstrap`) may be None when no item-level scores exist;
    ``traits`` is None when the run has too few adapters for PCA; ``sections`` are the recorded
    analyses (``crosstask analyze``), shown after the traits.
    """
    missing = {"name", "base_model", "settings", "created"} - set(meta)
    if missing:
        raise ValueError(f"meta is missing keys: {', '.join(sorted(missing))}")
    if BASE not in matrix.index:
        raise ValueError(f"matrix needs a row named {BASE!r}")
    adapters = matrix.drop(index=BASE).astype(float)
    if adapters.empty:
        raise ValueError("matrix has no adapter rows")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    base = matrix.loc[BASE].astype(float)
    delta_pp = (adapters - base) * 100
    significant = _significance_grid(intervals, delta_pp)
    confidence = _confidence_text(intervals)
    marking = _marking_text(intervals, delta_pp.size)

    with sns.axes_style("white"), sns.plotting_context(rc=STYLE):
        matrix_figures = [
            _delta_figure(out_dir, delta_pp, significant, marking),
            _raw_figure(out_dir, matrix.loc[[BASE, *adapters.index]].astype(float) * 100),
        ]
        loss_figure = _loss_figure(out_dir, meta.get("training") or {},
                                   set(not_learned(intervals, meta.get("own_targets") or {})))
        if loss_figure is not None:
            matrix_figures.append(loss_figure)
        trait_figures = _trait_figures(out_dir, traits) if traits is not None else []

    html = _environment().get_template("report.html").render(
        meta=meta,
        settings_yaml=_as_yaml(meta["settings"]),
        timings=_timing_rows(meta.get("timings") or {}),
        notes=meta.get("notes") or [],
        n_adapters=len(adapters),
        n_targets=len(matrix.columns),
        reading=_reading(delta_pp, significant, marking, intervals, meta.get("learning_check", "")),
        confidence=confidence,
        marking=marking,
        table=_matrix_table(base, adapters, delta_pp, significant),
        matrix_figures=matrix_figures,
        trait_figures=trait_figures,
        traits=_traits_rows(traits) if traits is not None else None,
        traits_input=traits.input if traits is not None else None,
        traits_skipped=(meta.get("traits_skipped") or _traits_skip_reason(adapters)) if traits is None else None,
        sections=sections or [],
        analyses_note=meta.get("analyses_note"),
    )
    path = out_dir / "report.html"
    return write_atomically(path, html)


def write_study_report(out_dir: str | Path, name: str, subtitle: str, settings: dict, sections: list[Section]) -> Path:
    """``report.html`` for a study that is not a transfer matrix (e.g. ``crosstask mix``): settings and sections."""
    html = _environment().get_template("study.html").render(
        name=name, subtitle=subtitle, settings_yaml=_as_yaml(settings), sections=sections)
    path = Path(out_dir) / "report.html"
    return write_atomically(path, html)


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


# ---------------------------------------------------------------------------------------- figures


def _heatmap(
    path: Path,
    values: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    title: str,
    colorbar: str,
    cmap: str,
    limits: tuple[float, float],
    xlabel: str,
    ylabel: str,
    bold: pd.DataFrame | None = None,
    footnote: str | None = None,
    line_below_row: int | None = None,
) -> Path:
    """One annotated heatmap, sized so every cell stays readable whatever the matrix shape."""
    n_rows, n_cols = values.shape
    figure = new_figure(figsize=(max(4.5, 2.2 + 0.85 * n_cols), max(3.0, 1.6 + 0.42 * n_rows)), layout="constrained")
    axes = figure.add_subplot()
    sns.heatmap(
        values, ax=axes, cmap=cmap, vmin=limits[0], vmax=limits[1], annot=labels.to_numpy(), fmt="",
        annot_kws={"fontsize": 9}, linewidths=0.6, linecolor="white", cbar_kws={"label": colorbar},
    )
    if bold is not None:
        for text in axes.texts:  # seaborn writes one text per cell, centred at (column + .5, row + .5)
            column, row = (int(coordinate) for coordinate in text.get_position())
            if bold.iat[row, column]:
                text.set_fontweight("bold")
    if line_below_row is not None:
        axes.axhline(line_below_row, color="black", linewidth=2)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.tick_params(axis="x", labelrotation=35)
    axes.tick_params(axis="y", labelrotation=0)
    for label in axes.get_xticklabels():
        label.set(ha="right", rotation_mode="anchor")
    if footnote:
        figure.supxlabel(footnote, x=0.01, ha="left", fontsize=9, style="italic")
    save_figure(figure, path, DPI)
    return path


def _symmetric(values: pd.DataFrame | np.ndarray) -> tuple[float, float]:
    """Colour limits centred on zero, so white always means 'no change'."""
    largest = float(np.nanmax(np.abs(np.asarray(values, dtype=float)))) if np.size(values) else 0.0
    largest = largest or 1.0
    return -largest, largest


def _delta_figure(out_dir: Path, delta_pp: pd.DataFrame, significant: pd.DataFrame, marking: str) -> Figure:
    labels = delta_pp.map("{:+.1f}".format) + significant.map({True: "*", False: ""}.get)
    marked = int(significant.to_numpy().sum())
    footnote = f"Bold with * : {marking}." if marking else "No item-level scores: significance not shown."
    path = _heatmap(
        out_dir / "matrix_delta.png", delta_pp, labels, bold=significant, footnote=footnote,
        title="Transfer: adapter minus base", colorbar="Δ from base (pp)", cmap=DIVERGING,
        limits=_symmetric(delta_pp), xlabel="target task", ylabel="adapter (source)",
    )
    caption = (
        "Difference from the base model in percentage points, per adapter (row) and target (column); "
        f"red is a gain, blue a loss. {marked} of {delta_pp.size} cells are marked significant."
    )
    return Figure("Transfer matrix (difference from base)", caption, path)


def _raw_figure(out_dir: Path, accuracy_pct: pd.DataFrame) -> Figure:
    path = _heatmap(
        out_dir / "matrix_raw.png", accuracy_pct, accuracy_pct.map("{:.1f}".format),
        title="Scores: base model and adapters", colorbar="score (%)", cmap=SEQUENTIAL, limits=(0, 100),
        xlabel="target task", ylabel="model", line_below_row=1,
    )
    caption = "Score in percent of every model on every target; the base model is the top row, above the line."
    return Figure("Scores (base and adapters)", caption, path)


def _trait_figures(out_dir: Path, traits: LatentTraits) -> list[Figure]:
    return [
        _scree_figure(out_dir / "scree.png", traits),
        _loadings_figure(out_dir / "loadings.png", traits),
        _weights_figure(out_dir / "weights.png", traits),
    ]


def _loadings_figure(path: Path, traits: LatentTraits) -> Figure:
    loadings = traits.components_frame()
    _heatmap(
        path, loadings, loadings.map("{:+.2f}".format), title="Task loadings", colorbar="loading",
        cmap=DIVERGING, limits=_symmetric(loadings), xlabel="target task", ylabel="component",
    )
    caption = (
        "Loading of every target task on each component (rows); tasks with large loadings of the same "
        "sign move together and name the trait."
    )
    return Figure("Task loadings", caption, path)


def _weights_figure(path: Path, traits: LatentTraits) -> Figure:
    # Delta/raw weights are in score units (fractions); percentage points read more naturally.
    if traits.input == "standardized":
        weights, unit, label = traits.weights_frame(), "SD units", "{:+.2f}".format
    else:
        weights, unit, label = traits.weights_frame() * 100, "pp", "{:+.1f}".format
    _heatmap(
        path, weights, weights.map(label), title="Adapter weights on components", colorbar=f"weight ({unit})",
        cmap=DIVERGING, limits=_symmetric(weights), xlabel="component", ylabel="adapter (source)",
    )
    caption = (
        f"Score of every adapter on each component ({unit}): its ability profile. A positive weight means "
        "the adapter moves the targets the way the component's positive loadings point."
    )
    return Figure("Adapter ability profiles", caption, path)


def _scree_figure(path: Path, traits: LatentTraits) -> Figure:
    names = traits.components_frame().index
    percent = traits.explained_variance_ratio_ * 100
    cumulative = np.cumsum(percent)
    figure = new_figure(figsize=(max(4.5, 1.8 + 0.6 * len(names)), 3.4), layout="constrained")
    axes = figure.add_subplot()
    # Percentages go in the tick labels: above the bars they would collide with the cumulative line.
    ticks = [f"{name}\n{value:.0f} %" for name, value in zip(names, percent)]
    axes.bar(ticks, percent, color=sns.color_palette(SEQUENTIAL)[2], label="per component")
    axes.plot(ticks, cumulative, color="black", marker="o", markersize=4, label="cumulative")
    axes.set(title="Explained variance", ylabel="variance explained (%)", ylim=(0, 105))
    axes.legend(loc="center right", frameon=False, fontsize=9)
    sns.despine(ax=axes)
    save_figure(figure, path, DPI)
    at = min(len(cumulative), 4)
    caption = (
        f"Share of the variance between adapters explained by each component (bars) and cumulatively (line); "
        f"the first {at} explain {cumulative[at - 1]:.0f} %."
    )
    return Figure("Scree plot", caption, path)


# ------------------------------------------------------------------------------------ page content


def _significance_grid(intervals: pd.DataFrame | None, delta_pp: pd.DataFrame) -> pd.DataFrame:
    """Boolean adapters x targets frame; cells without an interval count as not significant."""
    if intervals is None or intervals.empty:
        return pd.DataFrame(False, index=delta_pp.index, columns=delta_pp.columns)
    grid = intervals.pivot(index="model", columns="target", values="significant")
    return grid.reindex(index=delta_pp.index, columns=delta_pp.columns).fillna(False).astype(bool)


def _confidence_text(intervals: pd.DataFrame | None) -> str:
    """'95 % paired bootstrap interval over 3 training seeds and the items', or '' without intervals."""
    if intervals is None:
        return ""
    confidence = intervals.attrs.get("confidence")
    text = f"{confidence * 100:g} % paired bootstrap interval" if confidence else "paired bootstrap interval"
    seeds = intervals.attrs.get("n_seeds", 1)
    return text + (f" over {seeds} training seeds and the items" if seeds > 1 else " over the items")


def _marking_text(intervals: pd.DataFrame | None, n_cells: int) -> str:
    """What a significance mark means: the null, the test and the correction; '' without intervals."""
    if intervals is None:
        return ""
    alpha = 1 - intervals.attrs.get("confidence", 0.95)
    correction = intervals.attrs.get("correction", "none")
    seeds = intervals.attrs.get("n_seeds", 1)
    resampled = f"training seeds ({seeds}) and items" if seeds > 1 else "items (one training seed)"
    test = f"bootstrap p < {alpha:g} against 'no difference from base', resampling {resampled}"
    if correction == "none":
        return test + ", not corrected for multiple comparisons"
    return f"{test}, {correction}-corrected across the {n_cells} cells"


def not_learned(intervals: pd.DataFrame | None, own_targets: dict[str, str | None]) -> dict[str, tuple[str, float]]:
    """Adapters that did not significantly improve on their own task: name -> (that target, difference)."""
    if intervals is None or intervals.empty:
        return {}
    cells = intervals.set_index(["model", "target"])
    failed = {}
    for name, target in own_targets.items():
        if target is None or (name, target) not in cells.index:
            continue
        cell = cells.loc[(name, target)]
        if not (cell["significant"] and cell["delta"] > 0):
            failed[name] = (target, float(cell["delta"]))
    return failed


TRUNCATION_WARNING_SHARE = 0.1  # warn when more than this share of a source's training examples did not fit


def learning_check(intervals: pd.DataFrame | None, own_targets: dict[str, str | None],
                   training: dict[str, dict] | None = None) -> str:
    """The first thing to read: did each adapter clearly improve on its own task? Its row's other cells say
    nothing about transfer if it did not. ``own_targets`` maps an adapter to the target of its source's
    task (None when no target has it); ``training`` maps an adapter to its training metrics
    (``first_loss``, ``last_loss``, ``examples``, ``truncated``, ``dropped``, ``max_length``)."""
    training = training or {}
    text = _truncation_warnings(training)
    if intervals is None or intervals.empty:
        return text
    failed = []
    for name, (target, delta) in not_learned(intervals, own_targets).items():
        first, last = training.get(name, {}).get("first_loss"), training.get(name, {}).get("last_loss")
        loss = f", training loss {first:.2f} → {last:.2f}" if first is not None and last is not None else ""
        failed.append(f"{name} ({delta * 100:+.1f} pp on {target}{loss})")
    untested = [name for name, target in own_targets.items() if target is None]
    checked = len(own_targets) - len(untested)
    if failed:
        text = (f"Warning: {len(failed)} of {checked} adapters did not clearly improve on their own task: "
                f"{', '.join(failed)}; the other cells of their rows say nothing about transfer "
                f"(their loss curves are in the training figure). {text}")
    elif checked:
        text = f"Every adapter whose task is a target ({checked}) improved significantly on it. {text}"
    if untested:
        text += f" Not checked (their task is not a target): {', '.join(untested)}."
    return " ".join(text.split())


def _truncation_warnings(training: dict[str, dict]) -> str:
    """One warning per source (its seed replicates share the data) whose examples often exceeded max_length."""
    warned = {}
    for name, metrics in training.items():
        cut, dropped = metrics.get("truncated", 0), metrics.get("dropped", 0)
        given = metrics.get("examples", 0) + dropped
        source = name.split(REPLICATE_MARK)[0]
        if given and (cut + dropped) / given > TRUNCATION_WARNING_SHARE and source not in warned:
            warned[source] = (f"Warning: {cut + dropped} of {given} training examples of {source} exceeded "
                              f"lora.max_length {metrics.get('max_length')} ({cut} lost the start of their input, "
                              f"{dropped} were dropped; answers are never cut); consider raising it.")
    return " ".join(warned.values())


def _loss_figure(out_dir: Path, training: dict[str, dict], flagged: set[str]) -> Figure | None:
    """Every adapter's training loss by step; adapters that did not learn their own task stand out."""
    curves = {name: metrics["loss_curve"] for name, metrics in training.items() if metrics.get("loss_curve")}
    if not curves:
        return None
    figure = new_figure(figsize=(6.5, 3.6), layout="constrained")
    axes = figure.add_subplot()
    palette = sns.color_palette("deep", len(curves))
    for colour, (name, curve) in zip(palette, curves.items()):
        steps, losses = zip(*curve)
        bad = name in flagged
        axes.plot(steps, losses, color="crimson" if bad else colour, linewidth=2.2 if bad else 1.2,
                  alpha=1.0 if bad else 0.8, label=f"{name} (did not learn)" if bad else name)
    axes.set(title="Training loss", xlabel="optimizer step", ylabel="loss on answer tokens")
    axes.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    sns.despine(ax=axes)
    path = out_dir / "training_loss.png"
    save_figure(figure, path, DPI)
    caption = ("Loss on the answer tokens during each adapter's training (logged about 20 times per run). "
               + (f"In red: {', '.join(sorted(flagged & set(curves)))}, which did not clearly improve on their own "
                  "task." if flagged & set(curves) else "Every adapter whose task is a target improved on it."))
    return Figure("Training loss", caption, path)


def _reading(delta_pp: pd.DataFrame, significant: pd.DataFrame, marking: str, intervals: pd.DataFrame | None,
             check: str = "") -> list[str]:
    """A few sentences that read the matrix, all computed from it; the own-task check first."""
    per_adapter = delta_pp.mean(axis=1)
    per_target = delta_pp.mean(axis=0)
    n_targets = delta_pp.shape[1]
    best, worst = per_adapter.idxmax(), per_adapter.idxmin()
    sentences = [check] if check else []
    if len(per_adapter) == 1:
        sentences += [
            f"Averaged over {n_targets} targets, the adapter {best} scores {per_adapter[best]:+.1f} pp against base."
        ]
    else:
        sentences += [
            f"Averaged over {n_targets} targets, {best} gains most ({per_adapter[best]:+.1f} pp against base) "
            f"and {worst} least ({per_adapter[worst]:+.1f} pp)."
        ]
    row, column = np.unravel_index(np.nanargmax(np.abs(delta_pp.to_numpy())), delta_pp.shape)
    sentences.append(
        f"The largest single change is {delta_pp.index[row]} on {delta_pp.columns[column]} "
        f"({delta_pp.iat[row, column]:+.1f} pp); across adapters, the target {per_target.idxmax()} gains most "
        f"on average ({per_target.max():+.1f} pp) and {per_target.idxmin()} least ({per_target.min():+.1f} pp)."
    )
    if marking:
        gains = int((significant & (delta_pp > 0)).to_numpy().sum())
        losses = int((significant & (delta_pp < 0)).to_numpy().sum())
        sentences.append(
            f"{gains + losses} of {delta_pp.size} adapter-target cells differ significantly from base "
            f"({marking}): {gains} gains, {losses} losses."
        )
        if intervals.attrs.get("n_seeds", 1) > 1:
            spread = intervals["seed_sd"] * 100
            sentences.append(
                f"Retraining moves cells: the standard deviation of a cell's difference over the "
                f"{intervals.attrs['n_seeds']} training seeds is {spread.median():.1f} pp at the median and "
                f"{spread.max():.1f} pp at most; the intervals include it.")
        else:
            sentences.append(
                "Each adapter was trained with one seed, so the intervals cover the choice of items only, not "
                "retraining (which can move a cell by more); set `seeds: [0, 1, 2]` to include it.")
    else:
        sentences.append("No item-level scores were given, so no cell is tested for significance.")
    return sentences


def _matrix_table(base: pd.Series, adapters: pd.DataFrame, delta_pp: pd.DataFrame, significant: pd.DataFrame) -> dict:
    """Rows of cells for the HTML matrix: base first, adapter cells coloured by their difference."""
    colormap = sns.color_palette(DIVERGING, as_cmap=True)
    low, high = _symmetric(delta_pp)

    def style(delta: float) -> str:
        red, green, blue, _ = colormap((delta - low) / (high - low))
        ink = "#000" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "#fff"
        return f"background:#{int(red * 255):02x}{int(green * 255):02x}{int(blue * 255):02x};color:{ink}"

    def cell(score: float, delta: float | None = None, mark: bool = False) -> dict:
        if np.isnan(score):  # a target this model was not evaluated on (yet)
            return {"score": "–", "delta": "", "style": ""}
        if delta is None:
            return {"score": f"{score * 100:.1f}", "delta": "", "style": ""}
        return {"score": f"{score * 100:.1f}", "delta": f"{delta:+.1f}{'*' if mark else ''}", "style": style(delta)}

    rows = [{"name": BASE, "cells": [cell(v) for v in base] + [cell(base.mean())]}]
    for name in adapters.index:
        cells = [cell(adapters.at[name, t], delta_pp.at[name, t], significant.at[name, t]) for t in adapters.columns]
        cells.append(cell(adapters.loc[name].mean(), delta_pp.loc[name].mean()))
        rows.append({"name": name, "cells": cells})
    return {"columns": [*map(str, adapters.columns), "mean"], "rows": rows}


def _traits_rows(traits: LatentTraits) -> list[dict]:
    loadings = traits.components_frame()
    cumulative = np.cumsum(traits.explained_variance_ratio_)
    return [
        {
            "name": name,
            "explained": f"{ratio * 100:.1f}",
            "cumulative": f"{total * 100:.1f}",
            "top_tasks": ", ".join(f"{task} ({loadings.at[name, task]:+.2f})" for task in tasks),
        }
        for name, ratio, total, tasks in zip(
            loadings.index, traits.explained_variance_ratio_, cumulative, traits.top_tasks_
        )
    ]


def _traits_skip_reason(adapters: pd.DataFrame) -> str:
    if len(adapters) < 2:
        return f"Latent traits need at least two adapters to compare; this run has {len(adapters)}."
    if adapters.shape[1] < 2:
        return f"Latent traits need at least two target tasks; this run has {adapters.shape[1]}."
    return "No latent-trait analysis was given for this run."


def _timing_rows(timings: dict) -> list[tuple[str, str]]:
    rows = [(str(stage), _duration(float(seconds))) for stage, seconds in timings.items()]
    if len(rows) > 1:
        rows.append(("total", _duration(sum(float(seconds) for seconds in timings.values()))))
    return rows


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def _as_yaml(settings: dict) -> str:
    # The JSON round trip turns paths, enums and the like into plain strings that YAML can dump.
    return yaml.safe_dump(json.loads(json.dumps(settings, default=str)), sort_keys=False, allow_unicode=True).strip()

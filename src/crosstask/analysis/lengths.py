"""Generation length: does an adapter write as long as the target wants, or as long as its source taught it?

Paper 1 finds that adapters carry their source's output-length habit to every target. For each
``generate`` target we compare four length distributions (in tokens): the gold answers, the base
model's generations, each adapter's generations, and each adapter's source training targets.

* ``wasserstein_to_gold``: 1-D Wasserstein distance between the adapter's lengths and the gold lengths.
* ``interpolation``: where the adapter sits on the Wasserstein geodesic from the base habit (0) to its
  source's habit (1). In one dimension that geodesic interpolates quantile functions linearly, so the
  coefficient is the least-squares ``c`` in ``q_adapter ≈ (1 - c) q_base + c q_source`` over a grid of
  quantiles. ``c > 1`` overshoots the source; ``c < 0`` moves away from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from scipy.stats import wasserstein_distance

from ..files import new_figure, save_figure, save_table
from ..sections import Figure, Section
from .base import RunData, with_leading
from .similarity import permutation_spearman

QUANTILES = np.linspace(0.02, 0.98, 49)
DPI = 150
PERMUTATIONS = 2000


def interpolation_coefficient(adapter: np.ndarray, base: np.ndarray, source: np.ndarray) -> float:
    """Least-squares position of ``adapter`` between ``base`` (0) and ``source`` (1) in quantile space."""
    q_adapter, q_base, q_source = (np.quantile(np.asarray(x, float), QUANTILES) for x in (adapter, base, source))
    direction = q_source - q_base
    scale = float(direction @ direction)
    if scale == 0.0:  # base and source habits coincide: no axis to place the adapter on
        return float("nan")
    return float((q_adapter - q_base) @ direction / scale)


class LengthShift:
    """Length distributions of each adapter's generations against gold, base and its source.

    ``fit(generated, gold, base, source_lengths, scores=None)``:

    * ``generated``: {adapter: token lengths of its generations on the target}
    * ``gold``: token lengths of the target's gold answers; ``base``: the base model's generation lengths
    * ``source_lengths``: {adapter: token lengths of its source's training targets}
    * ``scores``: optional {adapter: the adapter's score on the target}, copied into the table

    Sets ``table_`` (one row per adapter).
    """

    def fit(self, generated: dict[str, np.ndarray], gold: np.ndarray, base: np.ndarray,
            source_lengths: dict[str, np.ndarray], scores: dict[str, float] | None = None) -> LengthShift:
        rows = []
        for adapter, lengths in generated.items():
            lengths = np.asarray(lengths, float)
            source = np.asarray(source_lengths[adapter], float)
            rows.append({
                "model": adapter,
                "n_items": len(lengths),
                "mean_tokens": lengths.mean(),
                "gold_mean_tokens": float(np.mean(gold)),
                "base_mean_tokens": float(np.mean(base)),
                "source_mean_tokens": source.mean(),
                "wasserstein_to_gold": wasserstein_distance(lengths, gold),
                "base_wasserstein_to_gold": wasserstein_distance(base, gold),
                "interpolation": interpolation_coefficient(lengths, base, source),
                "score": (scores or {}).get(adapter, np.nan),
            })
        self.table_ = pd.DataFrame(rows)
        return self


def analyze(run: RunData, out_dir: Path) -> Section:
    section = Section("lengths", "Generation length", reading="")
    targets = run.targets_of("generate")
    if not targets:
        section.skipped = "The run has no generate-type target, so there are no generation lengths to compare."
        return section
    items = run.items
    source_lengths = {}
    for source in run.sources:
        spec = run.source_spec(source)
        source_lengths[source] = np.array(run.token_lengths([spec.completion(ex) for ex in run.train_examples(source)]))
    tables, curves = [], {}
    for target in targets:
        spec = run.target_spec(target)
        gold = np.array(run.token_lengths([spec.completion(ex) for ex in run.eval_examples(target)]))
        of_target = items[items["target"] == target]
        lengths = {model: of_target.loc[of_target["model"] == model, "generated_tokens"].to_numpy(float)
                   for model in run.models}
        shift = LengthShift().fit({a: lengths[a] for a in run.sources}, gold, lengths["base"], source_lengths,
                                  run.matrix[target].to_dict())
        table = shift.table_.assign(target=target, delta=shift.table_["score"] - run.matrix.at["base", target])
        tables.append(table)
        curves[target] = {"gold": gold, **lengths}
    table = with_leading(pd.concat(tables, ignore_index=True), ["target", "model"])
    path = out_dir / "lengths.csv"
    save_table(table, path, index=False, float_format="%.4f")
    section.tables = [path]
    section.figures = [_kde_figure(out_dir / "lengths_kde.png", curves, source_lengths)]
    section.reading = _reading(table)
    return section


def _habit(coefficient: float) -> str:
    if coefficient < -0.25:
        return "adapters move away from their source's length habit, further than the base model"
    if coefficient < 0.25:
        return "adapters mostly keep the base model's length habit"
    if coefficient < 0.75:
        return "adapters sit partway between the base habit and their source's length habit"
    if coefficient < 1.25:
        return "adapters take on their source's length habit"
    return "adapters overshoot their source's length habit"


def _reading(table: pd.DataFrame) -> str:
    coefficients = table["interpolation"].dropna()
    if coefficients.empty:
        text = "Base and source length habits coincide on every generate target, so no interpolation is defined"
    else:
        median_c = float(coefficients.median())
        furthest = table.loc[coefficients.abs().idxmax()]
        text = (f"On generate targets the median interpolation coefficient is {median_c:.2f}: {_habit(median_c)} "
                f"(furthest: {furthest['model']} on {furthest['target']}, {furthest['interpolation']:.2f}, "
                f"{furthest['mean_tokens']:.0f} tokens against {furthest['gold_mean_tokens']:.0f} gold)")
    varied = len(table) > 2 and table["wasserstein_to_gold"].nunique() > 1 and table["score"].nunique() > 1
    if varied:
        # Shuffled within each target: a target that is both hard and far from its gold lengths for every
        # model (a column effect) must not count as "distance goes with score".
        ordered = table.sort_values("target", kind="stable")
        groups = pd.factorize(ordered["target"])[0]
        rho, p, _ = permutation_spearman(ordered["wasserstein_to_gold"].to_numpy(float),
                                         ordered["score"].to_numpy(float), groups, PERMUTATIONS,
                                         np.random.default_rng(0))
        direction = "lower" if rho < 0 else "higher"
        verdict = "beyond" if p < 0.05 else "not beyond"
        text += (f"; across {len(table)} cells, distance to the gold length and score have Spearman ρ = {rho:+.2f}"
                 f" (a larger distance goes with {direction} scores), {verdict} a null that shuffles the models "
                 f"within each target (permutation p = {p:.2g})")
    return text + "."


def _kde_figure(path: Path, curves: dict[str, dict[str, np.ndarray]], source_lengths: dict[str, np.ndarray]) -> Figure:
    panels = [*curves, "source training targets"]
    figure = new_figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes_row = figure.subplots(1, len(panels), squeeze=False)[0]
    models = [name for name in next(iter(curves.values())) if name not in ("gold", "base")]
    palette = dict(zip(models, sns.color_palette("tab10", len(models))))
    for axes, panel in zip(axes_row, panels):
        if panel in curves:
            series = curves[panel]
            styles = {"gold": ("black", "-", 2.2), "base": ("grey", "--", 1.8)}
        else:
            series, styles = source_lengths, {}
        for name, lengths in series.items():
            color, dash, width = styles.get(name, (palette.get(name, "C0"), "-", 1.2))
            _density(axes, np.asarray(lengths, float), name, color, dash, width)
        axes.set(title=panel if panel in curves else "source training targets", xlabel="length (tokens)",
                 ylabel="density")
        axes.set_xlim(left=0)
        sns.despine(ax=axes)
    figure.legend(*axes_row[0].get_legend_handles_labels(), frameon=False, fontsize=8, loc="outside right upper")
    figure.suptitle("Output length: gold, base and adapters on each generate target")
    save_figure(figure, path, DPI)
    caption = ("Kernel density of token lengths on each generate target: gold answers (black), the base model "
               "(grey dashed) and each adapter; the last panel shows each source's training-target lengths, "
               "the habit an adapter may carry over.")
    return Figure("Length distributions", caption, path)


def _density(axes, lengths: np.ndarray, name: str, color, dash: str, width: float) -> None:
    if len(lengths) == 0:
        return
    if np.ptp(lengths) == 0:  # a KDE of a constant is undefined: draw it as a spike
        axes.axvline(lengths[0], color=color, linestyle=dash, linewidth=width, label=name)
        return
    sns.kdeplot(x=lengths, ax=axes, color=color, linestyle=dash, linewidth=width, label=name, cut=0,
                warn_singular=False)

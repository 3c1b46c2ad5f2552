"""Does surface similarity between datasets explain transfer? (paper 1, "surface similarity fails")

For every source (its training texts) and target (its evaluation texts) we measure two similarities
and ask whether they rank the cells of the transfer matrix (adapter minus base) the same way:

* **style**: stylometric features of each dataset (:func:`features.style_features`), z-scored across all
  datasets of the comparison; distance ``d`` = root mean square of the z-score differences, with the
  11 surface statistics and the 50 function-word frequencies each weighted as one half (otherwise the
  function words, being 50 of 61 features, would decide alone); similarity ``1 / (1 + d)``, which is
  exactly 1 for identical datasets and falls towards 0 as they differ by more standard deviations.
* **semantic**: cosine between the mean sentence embeddings (all-MiniLM-L6-v2) of each dataset,
  computed as ``1 - |u - v|^2 / 2`` on unit vectors so identical datasets score exactly 1.

A dataset's text is what the model saw: ``spec.prompt(example) + spec.completion(example)`` (instruction,
input, trigger and gold target), rendered the same way for sources and targets so that a source and a
target of the same task are compared like with like.

The test: Spearman's rho between similarity and transfer over the cells, with a permutation p-value.
Both matrices have strong row and column effects: some adapters help everywhere, every non-math
adapter hurts both math targets, and math texts differ in style from all the rest. Those effects alone
would make a cell-level correlation look significant. The default null (``null="margins"``) keeps them:
both matrices are double-centred (each cell minus its row and column effects, fitted on the tested
cells) and rho is taken between the residuals; the null distribution permutes the sources and the
targets of the similarity matrix independently (a Mantel-style test with both margins kept), so a
small p means similarity predicts *which source-target pairs* transfer beyond what each source and each
target does on average. Variants of one source (its balanced, mislabeled... copies) are averaged into
one row first: they share their data and move together, so they are not independent evidence.
``null="rows"`` shuffles transfer within each source row (keeps row effects only: anti-conservative
when targets have main effects); ``null="cells"`` shuffles all cells (looser still).
Cells where the source and target are the same task can be left out (``exclude``): there the adapter
trained on the target's own task, which trivially makes both similarity and transfer high.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure as MplFigure
from matplotlib.patches import Rectangle
from scipy.stats import rankdata

from ..files import new_figure, save_figure, save_table
from ..sections import Figure, Section
from .base import RunData
from .features import embed_texts, sample_texts, style_features

KINDS = ("style", "semantic")
NULLS = ("margins", "rows", "cells")
ALPHA = 0.05
DPI = 150
SIMILARITY_LABELS = {
    "style": "style similarity 1 / (1 + RMS z-distance)",
    "semantic": "semantic similarity (cosine of mean embeddings)",
}


class DatasetSimilarity:
    """Similarity between every source and target dataset, and its rank correlation with transfer."""

    def __init__(self, kind: str = "style", n_permutations: int = 1000, seed: int = 0, null: str = "margins",
                 max_texts: int | None = 200):
        self.kind = kind
        self.n_permutations = n_permutations
        self.seed = seed  # of the permutations and of the text sample
        self.null = null
        self.max_texts = max_texts  # semantic only: embedding is the slow part, style features use every text

    def fit(self, source_texts: dict[str, list[str]], target_texts: dict[str, list[str]],
            transfer: pd.DataFrame | None = None, exclude=(), clusters: dict[str, str] | None = None
            ) -> DatasetSimilarity:
        """Similarity of every source/target pair; with ``transfer`` (sources x targets, adapter minus base) the test.

        ``exclude``: (source, target) cells left out of the test (e.g. same-task cells). ``clusters`` maps a
        source to the cluster it belongs to (a variant to its original source; default: each its own);
        under the ``margins`` null a cluster's rows are averaged into one.
        """
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.null not in NULLS:
            raise ValueError(f"null must be one of {', '.join(NULLS)}, got {self.null!r}")
        if self.n_permutations < 1:
            raise ValueError(f"n_permutations must be positive, got {self.n_permutations}")
        if not source_texts or not target_texts:
            raise ValueError("need at least one source and one target dataset")
        datasets = {("source", name): list(texts) for name, texts in source_texts.items()}
        datasets |= {("target", name): list(texts) for name, texts in target_texts.items()}
        for (role, name), texts in datasets.items():
            if not texts:
                raise ValueError(f"{role} {name!r} has no texts")

        if self.kind == "style":
            self.vectors_ = pd.DataFrame({key: style_features(texts) for key, texts in datasets.items()}).T
            pairwise = style_similarity(self.vectors_)
        else:
            self.vectors_ = self._mean_embeddings(datasets)
            pairwise = cosine_similarity(self.vectors_)
        sources, targets = list(source_texts), list(target_texts)
        self.similarity_ = pd.DataFrame(
            [[pairwise.loc[("source", s), ("target", t)] for t in targets] for s in sources],
            index=pd.Index(sources, name="source"), columns=pd.Index(targets, name="target"),
        )
        self.spearman_, self.p_value_, self.n_cells_ = float("nan"), float("nan"), 0
        self.null_distribution_ = np.array([])
        if transfer is not None:
            aligned = self._aligned(transfer)
            if self.null == "margins":
                self._test_interaction(aligned, exclude, clusters or {})
            else:
                self._test(aligned, exclude)
        return self

    def _mean_embeddings(self, datasets: dict[tuple, list[str]]) -> pd.DataFrame:
        samples = {key: sample_texts(texts, self.max_texts, self.seed) for key, texts in datasets.items()}
        # Embed each distinct text once: identical datasets then get bit-identical means (similarity exactly 1)
        # and texts shared between datasets are not embedded twice.
        unique = list(dict.fromkeys(text for texts in samples.values() for text in texts))
        row_of = {text: row for row, text in enumerate(unique)}
        vectors = embed_texts(unique).astype(np.float64)
        means = {key: vectors[[row_of[text] for text in texts]].mean(axis=0) for key, texts in samples.items()}
        return pd.DataFrame(means).T

    def _aligned(self, transfer: pd.DataFrame) -> pd.DataFrame:
        missing = [name for name in self.similarity_.index if name not in transfer.index]
        missing += [name for name in self.similarity_.columns if name not in transfer.columns]
        if missing:
            raise ValueError(f"transfer has no row/column for {', '.join(map(repr, missing))}")
        aligned = transfer.loc[self.similarity_.index, self.similarity_.columns].astype(float)
        if aligned.isna().to_numpy().any():
            raise ValueError("transfer has missing values")
        return aligned

    def _test(self, transfer: pd.DataFrame, exclude) -> None:
        excluded = set(map(tuple, exclude))
        cells = [(i, j) for i, s in enumerate(transfer.index) for j, t in enumerate(transfer.columns)
                 if (s, t) not in excluded]
        self.n_cells_ = len(cells)
        if self.n_cells_ < 3:
            return
        rows = np.array([i for i, _ in cells])
        columns = np.array([j for _, j in cells])
        similarity = self.similarity_.to_numpy()[rows, columns]
        values = transfer.to_numpy()[rows, columns]
        rng = np.random.default_rng(self.seed)
        self.spearman_, self.p_value_, self.null_distribution_ = permutation_spearman(
            similarity, values, rows if self.null == "rows" else np.zeros_like(rows), self.n_permutations, rng)


    def _test_interaction(self, transfer: pd.DataFrame, exclude, clusters: dict[str, str]) -> None:
        excluded = set(map(tuple, exclude))
        # An Index, not a list: a list of strings would be read as column names where a target shares one.
        cluster_of = pd.Index([clusters.get(source, source) for source in transfer.index], name="cluster")
        names = list(dict.fromkeys(cluster_of))
        similarity = self.similarity_.groupby(cluster_of, sort=False).mean().loc[names].to_numpy()
        values = transfer.groupby(cluster_of, sort=False).mean().loc[names].to_numpy()
        # Variants share their source's task, so a cluster's cell is same-task exactly when its members' are.
        tested = np.array([[(source, target) not in excluded for target in transfer.columns]
                           for source in transfer.index])
        tested = pd.DataFrame(tested).groupby(cluster_of, sort=False).all().to_numpy()
        self.n_cells_ = int(tested.sum())
        if self.n_cells_ < 3 or min(values.shape) < 3:
            return
        rng = np.random.default_rng(self.seed)
        self.spearman_, self.p_value_, self.null_distribution_ = mantel_interaction(
            similarity, values, tested, self.n_permutations, rng)


RESIDUAL_DECIMALS = 9  # far below any real difference of scores, far above float64 noise


def double_centred(values: np.ndarray, tested: np.ndarray, sweeps: int = 50, tolerance: float = 1e-12) -> np.ndarray:
    """``values`` minus additive row and column effects fitted on the ``tested`` cells (others: NaN)."""
    kept = np.where(tested, values, np.nan)
    rows, columns = np.zeros(kept.shape[0]), np.zeros(kept.shape[1])
    grand = np.nanmean(kept)
    for _ in range(sweeps):  # alternating means: exact in one sweep when every cell is tested
        previous = columns
        rows = np.nanmean(kept - grand - columns[None, :], axis=1)
        columns = np.nanmean(kept - grand - rows[:, None], axis=0)
        if np.max(np.abs(columns - previous)) < tolerance:  # converged: further sweeps change nothing
            break
    return kept - grand - rows[:, None] - columns[None, :]


def _residual_ranks(values: np.ndarray, tested: np.ndarray) -> np.ndarray:
    """Centred ranks of the tested cells' double-centred residuals. Rounded first: transfer matrices are sparse
    (many cells where adapter and base answer alike), so many residuals tie exactly, and after centring such
    ties differ only by float noise, which would otherwise order them."""
    return _centred_ranks(np.round(double_centred(values, tested)[tested], RESIDUAL_DECIMALS))


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    return rankdata(values) - (len(values) + 1) / 2


def _rank_correlation(x_ranks: np.ndarray, y_ranks: np.ndarray) -> float:
    """Spearman rho from centred ranks; NaN when either is constant."""
    scale = np.sqrt((x_ranks**2).sum() * (y_ranks**2).sum())
    return float(x_ranks @ y_ranks / scale) if scale > 0 else float("nan")


def mantel_interaction(similarity: np.ndarray, transfer: np.ndarray, tested: np.ndarray, n_permutations: int,
                       rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """Spearman rho between the double-centred similarity and transfer on the tested cells, and its two-sided
    p-value against permutations of the similarity matrix's rows and columns (each margin kept whole).

    Returns (rho, p, null rhos); rho and p are NaN when either residual is constant.
    """
    residual_ranks = _residual_ranks(transfer, tested)  # fixed: ranked once

    def rho_of(matrix: np.ndarray) -> float:
        return _rank_correlation(_residual_ranks(matrix, tested), residual_ranks)

    rho = rho_of(similarity)
    if np.isnan(rho):
        return float("nan"), float("nan"), np.array([])
    n_rows, n_columns = similarity.shape
    null = np.array([rho_of(similarity[np.ix_(rng.permutation(n_rows), rng.permutation(n_columns))])
                     for _ in range(n_permutations)])
    extreme = np.abs(np.nan_to_num(null)) >= abs(rho) - 1e-12
    return rho, float((1 + extreme.sum()) / (1 + n_permutations)), null


def style_similarity(features: pd.DataFrame) -> pd.DataFrame:
    """1 / (1 + d) between the rows (datasets), d the block-weighted RMS distance of z-scored features."""
    spread = features.std(ddof=0)
    # A feature equal in every dataset cannot tell them apart: z = 0 rather than 0/0.
    z = ((features - features.mean()) / spread.where(spread > 0)).fillna(0.0).to_numpy()
    function_words = features.columns.str.startswith("fw_")
    blocks = [block for block in (~function_words, function_words) if block.any()]
    weights = np.zeros(features.shape[1])
    for block in blocks:
        weights[block] = 1.0 / (block.sum() * len(blocks))
    differences = z[:, None, :] - z[None, :, :]
    distance = np.sqrt((differences**2 * weights).sum(axis=2))
    return pd.DataFrame(1.0 / (1.0 + distance), index=features.index, columns=features.index)


def cosine_similarity(vectors: pd.DataFrame) -> pd.DataFrame:
    """Cosine between rows as 1 - |u - v|^2 / 2 on unit vectors (exactly 1 for identical rows)."""
    values = vectors.to_numpy(dtype=np.float64)
    units = values / np.linalg.norm(values, axis=1, keepdims=True)
    squared = ((units[:, None, :] - units[None, :, :]) ** 2).sum(axis=2)
    return pd.DataFrame(1.0 - squared / 2.0, index=vectors.index, columns=vectors.index)


def permutation_spearman(x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_permutations: int,
                         rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """Spearman rho of x and y and its two-sided permutation p-value, shuffling y only within ``groups``.

    Returns (rho, p, null rhos); rho and p are NaN when x or y is constant. p = (1 + #|null| >= |rho|) / (1 + n).
    """
    x_ranks, y_ranks = _centred_ranks(x), _centred_ranks(y)
    rho = _rank_correlation(x_ranks, y_ranks)
    if np.isnan(rho):
        return float("nan"), float("nan"), np.array([])
    scale = np.sqrt((x_ranks**2).sum() * (y_ranks**2).sum())
    # Sorting by group then a random key shuffles within each group; cells of a group must be contiguous.
    order = np.argsort(groups, kind="stable")
    if not np.array_equal(order, np.arange(len(groups))):
        raise ValueError("cells of a permutation group must be contiguous")
    keys = rng.random((n_permutations, len(y))) + 2.0 * groups
    permuted = y_ranks[np.argsort(keys, axis=1)]
    null = permuted @ x_ranks / scale
    # A small tolerance: permutations that reproduce rho exactly must count, whatever the float rounding.
    extreme = np.abs(null) >= abs(rho) - 1e-12
    return rho, float((1 + extreme.sum()) / (1 + n_permutations)), null


# --------------------------------------------------------------------------------------------- run


def rendered_texts(spec, examples) -> list[str]:
    """The texts as the model saw them: prompt (instruction, input, trigger) plus the gold completion."""
    return [spec.prompt(example) + spec.completion(example) for example in examples]


def same_task_cells(run: RunData) -> list[tuple[str, str]]:
    return [(source, target) for source in run.sources for target in run.targets
            if run.source_spec(source).name == run.target_spec(target).name]


def analyze(run: RunData, out_dir: Path, n_permutations: int = 1000, null: str = "margins", seed: int = 0) -> Section:
    """Writes similarity_{style,semantic}.csv/.png, similarity_tests.csv and similarity_vs_transfer.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source_texts = {name: rendered_texts(run.source_spec(name), run.train_examples(name)) for name in run.sources}
    target_texts = {name: rendered_texts(run.target_spec(name), run.eval_examples(name)) for name in run.targets}
    excluded = same_task_cells(run)
    transfer = run.delta

    fits, tables, figures, rows = {}, [], [], []
    for kind in KINDS:
        started = time.perf_counter()
        fit = DatasetSimilarity(kind, n_permutations=n_permutations, null=null, seed=seed).fit(
            source_texts, target_texts, transfer, exclude=excluded, clusters=run.clusters)
        fits[kind] = fit
        rows.append({"kind": kind, "spearman": fit.spearman_, "p_value": fit.p_value_, "n_cells": fit.n_cells_,
                     "n_permutations": n_permutations, "null": null, "seconds": time.perf_counter() - started})
        table = out_dir / f"similarity_{kind}.csv"
        save_table(fit.similarity_, table, float_format="%.6g")
        tables.append(table)
        path = out_dir / f"similarity_{kind}.png"
        save_figure(_heatmap(fit.similarity_, kind, excluded), path, DPI)
        figures.append(Figure(
            f"{kind.capitalize()} similarity of source and target data",
            f"{SIMILARITY_LABELS[kind].capitalize()} between each source's training texts (rows) and each "
            "target's evaluation texts (columns); outlined cells are the same task.", path))
    tests = out_dir / "similarity_tests.csv"
    save_table(pd.DataFrame(rows), tests, index=False, float_format="%.6g")
    tables.append(tests)

    path = out_dir / "similarity_vs_transfer.png"
    save_figure(_scatter(fits, transfer, excluded), path, DPI)
    figures.append(Figure(
        "Similarity against transfer",
        f"Each point is one adapter on one target; Spearman rho and the permutation p ({n_permutations} "
        f"permutations; null: {NULL_TEXT[null]}) use the cross-task cells only (hollow points are same-task "
        "cells).", path))

    section = Section("similarity", "Dataset similarity and transfer", reading(fits, null=null), tables=tables,
                      figures=figures)
    if all(np.isnan(fit.spearman_) for fit in fits.values()):
        section.skipped = (f"only {fits['style'].n_cells_} cross-task cells or constant transfer: "
                           "no correlation to test")
    return section


def _p_text(p: float) -> str:
    return f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


NULL_TEXT = {
    "margins": "rows and columns of the similarity matrix permuted, both matrices double-centred, so every "
               "source's and target's own effect is kept; a source's variants count as one source",
    "rows": "transfer shuffled within each source row (keeps each adapter's average gain, not the targets')",
    "cells": "transfer shuffled across all cells",
}


def reading(fits: dict[str, DatasetSimilarity], alpha: float = ALPHA, null: str = "margins") -> str:
    """Sentences from the two tests, naming the null; similarity explains transfer only where p < alpha."""
    return _verdict(fits, alpha) + f" (Null: {NULL_TEXT[null]}.)"


def _verdict(fits: dict[str, DatasetSimilarity], alpha: float) -> str:
    n_cells = fits["style"].n_cells_
    if all(np.isnan(fit.spearman_) for fit in fits.values()):
        return (f"Similarity cannot be tested against transfer in this run: {n_cells} cross-task cells, "
                "or transfer that does not vary across them.")
    stats = {kind: f"ρ = {fit.spearman_:+.2f}, p = {_p_text(fit.p_value_)}" if not np.isnan(fit.spearman_)
             else "untestable" for kind, fit in fits.items()}
    significant = [kind for kind, fit in fits.items() if fit.p_value_ < alpha]
    if not significant:
        return (f"Neither style similarity ({stats['style']}) nor semantic similarity ({stats['semantic']}) "
                f"explains which cross-task transfers work in this run ({n_cells} cells, Spearman with "
                "permutation p): adapters do not gain more on targets whose data resemble their training data.")
    direction = {kind: "closer to" if fits[kind].spearman_ > 0 else "farther from" for kind in significant}
    if len(significant) == 2:
        if direction["style"] == direction["semantic"]:
            how = f"adapters gain more on targets whose data are {direction['style']} their training data"
        else:
            how = (f"adapters gain more on targets {direction['style']} their training data in style "
                   f"but {direction['semantic']} it in meaning")
        return (f"Both style similarity ({stats['style']}) and semantic similarity ({stats['semantic']}) track "
                f"transfer across this run's {n_cells} cross-task cells: {how}.")
    kind = significant[0]
    other = "semantic" if kind == "style" else "style"
    return (f"{kind.capitalize()} similarity tracks transfer ({stats[kind]}) but {other} similarity does not "
            f"({stats[other]}) across this run's {n_cells} cross-task cells: adapters gain more on targets "
            f"whose data are {direction[kind]} their training data in {'style' if kind == 'style' else 'meaning'}.")


def _heatmap(similarity: pd.DataFrame, kind: str, outlined: list[tuple[str, str]]) -> MplFigure:
    n_sources, n_targets = similarity.shape
    figure = new_figure(figsize=(1.1 * n_targets + 3.2, 0.55 * n_sources + 2.4), layout="constrained")
    axes = figure.add_subplot()
    sns.heatmap(similarity, ax=axes, annot=n_sources * n_targets <= 150, fmt=".2f", cmap="viridis",
                linewidths=0.5, linecolor="white", annot_kws={"fontsize": 8},
                cbar_kws={"label": SIMILARITY_LABELS[kind]})
    for source, target in outlined:
        row, column = similarity.index.get_loc(source), similarity.columns.get_loc(target)
        axes.add_patch(Rectangle((column, row), 1, 1, fill=False, edgecolor="crimson", linewidth=2))
    axes.set_title(f"{kind.capitalize()} similarity: source training data vs target evaluation data")
    axes.set_xlabel("target (evaluation texts)")
    axes.set_ylabel("source (training texts)")
    axes.tick_params(axis="x", labelrotation=35)
    for label in axes.get_xticklabels():
        label.set_horizontalalignment("right")
    return figure


def _scatter(fits: dict[str, DatasetSimilarity], transfer: pd.DataFrame, excluded: list[tuple[str, str]]) -> MplFigure:
    figure = new_figure(figsize=(10, 4.4), layout="constrained")
    panels = figure.subplots(1, len(fits), sharey=True)
    excluded = set(excluded)
    for axes, (kind, fit) in zip(np.atleast_1d(panels), fits.items()):
        long = fit.similarity_.stack().rename("similarity").to_frame()
        long["transfer"] = transfer.loc[fit.similarity_.index, fit.similarity_.columns].stack().to_numpy()
        same = np.array([cell in excluded for cell in long.index])
        axes.scatter(long.loc[~same, "similarity"], long.loc[~same, "transfer"], s=28, alpha=0.8,
                     color="tab:blue", label="cross-task cell")
        if same.any():
            axes.scatter(long.loc[same, "similarity"], long.loc[same, "transfer"], s=40, facecolors="none",
                         edgecolors="crimson", linewidths=1.5, label="same task")
        axes.axhline(0, color="grey", linewidth=0.8, linestyle="--")
        stat = "untestable" if np.isnan(fit.spearman_) else f"ρ = {fit.spearman_:+.2f}, p = {_p_text(fit.p_value_)}"
        axes.set_title(f"{kind.capitalize()} similarity ({stat}, n = {fit.n_cells_})")
        axes.set_xlabel(SIMILARITY_LABELS[kind])
        axes.grid(alpha=0.3)
    first = np.atleast_1d(panels)[0]
    first.set_ylabel("transfer (adapter − base score)")
    first.legend(loc="best", fontsize=8)
    figure.suptitle("Does dataset similarity explain transfer?")
    return figure

"""What every analysis of a finished run reads (:class:`RunData`) and hands to the report (a Section).

An analysis module has two layers, like scikit-learn estimators wrapped by a script:

* a class that takes parameters in ``__init__``, learns in ``fit`` from plain DataFrames/arrays and
  exposes its results as ``attr_`` (usable in a notebook without any run directory);
* a function ``analyze(run: RunData, out_dir: Path) -> Section`` that feeds the class from a run,
  writes its table(s) and figure(s) into ``out_dir`` and returns a :class:`Section` whose ``reading``
  is one sentence computed from this run's numbers.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd

from ..config import Experiment, TaskRef, parse_experiment
from ..errors import CrosstaskError
from ..files import new_figure, save_figure
from ..tasks.base import Example, TaskSpec
from ..tasks.data import resolve


class RunData:
    """A finished run directory, loaded lazily: settings, matrix, items, and the exact examples used."""

    def __init__(self, root: str | Path, device: str | None = None):
        from ..pipeline import open_store

        self.root = Path(root)
        self.store = open_store(self.root)
        self.device = device  # where models of later work (head patterns) run; default: the run's setting

    @classmethod
    def of(cls, run: RunData | str | Path) -> RunData:
        return run if isinstance(run, RunData) else cls(run)

    @cached_property
    def experiment(self) -> Experiment:
        from ..pipeline import stored_experiment

        experiment = stored_experiment(self.root)
        if self.device is None:
            return experiment
        return parse_experiment(experiment.model_dump() | {"device": self.device}, "--device")

    @property
    def sources(self) -> list[str]:
        return [ref.label for ref in self.experiment.source_refs]

    @property
    def targets(self) -> list[str]:
        return [ref.label for ref in self.experiment.target_refs]

    def targets_of(self, answer_type: str) -> list[str]:
        """The targets whose task has this answer type ("choice" or "generate")."""
        return [target for target in self.targets if self.target_spec(target).answer_type == answer_type]

    @property
    def models(self) -> list[str]:
        return ["base", *self.sources]

    @property
    def evaluated_models(self) -> list[str]:
        """Every evaluated model: ``base`` and each source's adapter of every training seed."""
        from ..pipeline import evaluated_models

        return evaluated_models(self.experiment)

    @property
    def clusters(self) -> dict[str, str]:
        """Each variant adapter -> its original source: they share their data and move together."""
        return {variant: source for source, variant in self.experiment.variant_pairs()}

    @property
    def n_seeds(self) -> int:
        return len(self.experiment.seeds or [0])

    @cached_property
    def matrix(self) -> pd.DataFrame:
        """Scores in [0, 1]: rows ``base`` then the sources (mean over their seeds' adapters), columns the targets."""
        from ..pipeline import mean_matrix

        _ = self.plan  # the store must hold this run's results, and all of them
        return mean_matrix(self.store, self.experiment, self.targets).astype(float)

    @property
    def delta(self) -> pd.DataFrame:
        """Adapter rows minus the base row."""
        return self.matrix.drop(index="base") - self.matrix.loc["base"]

    @cached_property
    def items(self) -> pd.DataFrame:
        """Every evaluated item (see :meth:`Store.items`), with ``logliks`` parsed into dicts; ``model`` is
        the matrix row, ``adapter`` the seed's adapter that was evaluated, ``replicate`` its training seed."""
        from ..pipeline import replicated_items

        return replicated_items(self.store, self.experiment, self.targets, parse_logliks=True)

    @property
    def first_seed_items(self) -> pd.DataFrame:
        """The items of the base model and of each source's first-seed adapter (one row per model and item)."""
        return self.items[self.items["adapter"] == self.items["model"]]

    @cached_property
    def plan(self):
        """The run's jobs, rebuilt from its settings (the exact examples, specs and content keys), with data
        paths resolved as the run resolved them; fails in one line when the store does not hold exactly
        the results of these settings."""
        from ..pipeline import current_plan, plan, stored_base_dir

        # The store is checked against the run's own plan: a --device override may change the dtype, hence
        # the keys, of the work still to do.
        as_run = current_plan(self.root)
        return as_run if self.device is None else plan(self.experiment, stored_base_dir(self.root), self.root)

    def _ref(self, label: str, refs: list[TaskRef]) -> TaskRef:
        for ref in refs:
            if ref.label == label:
                return ref
        raise CrosstaskError(f"{self.root}: no task named {label!r} in this run")

    def source_spec(self, source: str) -> TaskSpec:
        return resolve(self._ref(source, self.experiment.source_refs)).spec

    def target_spec(self, target: str) -> TaskSpec:
        """The target task's spec (zero-shot: describes the data, without the few-shot context of its prompts)."""
        return resolve(self._ref(target, self.experiment.target_refs)).spec

    def evaluated_spec(self, target: str) -> TaskSpec:
        """The spec the target was evaluated with: its prompts include the few-shot examples, if any."""
        return self._eval_job(target).spec

    def train_examples(self, source: str) -> list[Example]:
        """The exact training examples of a source adapter (rebuilt deterministically from the settings)."""
        if source not in self.sources:
            raise CrosstaskError(f"{self.root}: no source named {source!r} in this run")
        return list(self.plan.train_job(source).examples)

    def eval_examples(self, target: str) -> list[Example]:
        return list(self._eval_job(target).examples)

    def _eval_job(self, target: str):
        if target not in self.targets:
            raise CrosstaskError(f"{self.root}: no target named {target!r} in this run")
        return self.plan.eval_cell("base", target)[0]

    @cached_property
    def tokenizer(self):
        from ..models import load_tokenizer

        return load_tokenizer(self.plan.model)

    def token_lengths(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def adapter_dir(self, source: str) -> Path:
        from ..workspace import adapter_folder

        return adapter_folder(self.root, source)


def diverging_heatmap(path: Path, values: pd.DataFrame, *, title: str, xlabel: str, ylabel: str, colorbar: str,
                      fmt: str, square: bool = False) -> None:
    """An annotated heatmap centred on zero (white = no change), sized to the frame, saved as a PNG."""
    import numpy as np
    import seaborn as sns

    n_rows, n_cols = values.shape
    figure = new_figure(figsize=(max(4.5, 2.2 + 0.85 * n_cols), max(3.4, 1.6 + (0.6 if square else 0.42) * n_rows)),
                       layout="constrained")
    axes = figure.add_subplot()
    finite = np.abs(values.to_numpy(dtype=float))
    limit = float(np.nanmax(finite)) if np.isfinite(finite).any() else 0.0
    sns.heatmap(values, ax=axes, cmap="vlag", vmin=-(limit or 1.0), vmax=limit or 1.0, annot=True, fmt=fmt,
                square=square, annot_kws={"fontsize": 8}, linewidths=0.6, linecolor="white",
                cbar_kws={"label": colorbar})
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.tick_params(axis="x", labelrotation=35)
    axes.tick_params(axis="y", labelrotation=0)
    for label in axes.get_xticklabels():
        label.set(ha="right", rotation_mode="anchor")
    save_figure(figure, path, 150)


def with_leading(table: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    """The same table with the ``first`` columns moved to the front."""
    return table[[*first, *[column for column in table.columns if column not in first]]]

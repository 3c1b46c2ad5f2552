"""Pattern-guided data mixing for a scarce complex task (paper 2's practical method).

1. Train one LoRA adapter per basic task (``basic_examples`` each) and one on the scarce complex data
   (``scarce_examples``); measure head activation patterns (:mod:`crosstask.heads`) before and after.
2. Regress the complex task's pattern change ΔA on the basic tasks' changes with non-negative least
   squares (:class:`~crosstask.heads.HeadCombination`); the weights α, scaled to sum to one, are the
   mixture proportions.
3. Warm up a fresh adapter on ``warmup_examples`` basic-task items mixed in those proportions, then
   continue training the same adapter on the scarce data.
4. Compare with plain scarce SFT and with a uniform warm-up of the same size on the complex task's
   held-out items: accuracy per seed, and paired bootstrap intervals of the difference from plain SFT.

Where ΔA is measured (``heads.delta_on``): ``"own"`` (default, paper 2 as written) measures each task's
change on its own probe items (the complex adapter on complex items, the sentiment adapter on sentiment
items, ...): "which heads does each task's training move for that task", and the complex change is
explained as a sum of those. ``"complex"`` measures every adapter on the complex task's probe items:
"how does training on task i move the heads the complex task uses", which is closer to what a warm-up
does to the complex task but is no longer a property of the basic tasks alone. Both fits are written
to ``alpha.csv``; the chosen one drives the warm-up.

Probe items are never training items of the adapter measured on them. A basic task's probes are
``probe_examples`` further items of its training split. The complex task has only its scarce set (its
eval items must stay unseen), so with ``heads.complex_probe: held_out`` (default) α's complex adapter is
trained on the scarce set without its first ``probe_examples`` items, which are its probes; with
``training`` the plain-SFT adapter is measured on its own first training items, as a study with no
items to spare would. Either way α is fitted on one half of each task's probes and its R² is scored on
the other half, against the same fit with every basic change shuffled over the heads; changes are taken
between patterns scaled to unit norm (:func:`crosstask.heads.combination.unit_change`), because a
gradient pattern scales with the loss.

α comes from the first seed's adapters; every seed then draws its own scarce set and warm-up data
and trains its own adapters. Every piece is a job (training, continued training from the warm-up
adapter, head pattern, evaluation) run by the study's executor and committed to ``OUT/results.sqlite``
under its content key, so a rerun skips finished pieces and redoes only what a change affects.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from .analysis.bootstrap import paired_bootstrap
from .config import (
    EvalSettings,
    ExecutorSettings,
    LoraSettings,
    Resources,
    Strict,
    TaskRef,
    read_settings_file,
    validate_settings,
)
from .devices import DEVICE_PATTERN
from .errors import CrosstaskError
from .files import write_atomically
from .heads.combination import HeadCombination, unit_change
from .jobs import BackendSpec, Cell, EvalJob, ModelSpec, PatternJob, TrainJob
from .keys import BASE
from .models import resolve_model, with_lr
from .progress import Reporter, reporting
from .sections import Figure, Section
from .tasks.base import Example, TaskSpec
from .tasks.data import build_examples, resolve
from .workspace import Workspace

METHODS = ("base", "plain", "alpha", "uniform")  # base: no training at all, for scale
MIXING_COLUMNS = ["method", "seed", "accuracy", "n_items", "difference", "low", "high"]
ALPHA_PERMUTATIONS = 1000  # shuffles of the heads behind alpha.csv's r2_p_value


class HeadsSettings(Strict):
    """How patterns are measured for α (see :func:`crosstask.heads.activation_pattern`)."""

    mode: Literal["abs", "signed"] = "abs"
    normalize: Optional[Literal["layer"]] = None
    batch_size: int = Field(8, ge=1)
    delta_on: Literal["own", "complex"] = "own"  # where each task's pattern change is measured (module doc)
    complex_probe: Literal["held_out", "training"] = "held_out"  # the complex adapter's probes (module doc)


class MixingStudy(Strict):
    """One pattern-guided mixing study, as written in its YAML file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base_model: str = "smollm2-135m-instruct"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    resources: Resources = Field(default_factory=Resources)
    complex: TaskRef
    basics: list[TaskRef] = Field(min_length=1)
    scarce_examples: int = Field(32, ge=1)
    scarce_epochs: Optional[float] = Field(None, gt=0)  # epochs on the scarce data (default: lora.epochs)
    warmup_examples: int = Field(128, ge=1)
    basic_examples: int = Field(128, ge=1)  # per basic task, for the adapters that give α
    probe_examples: int = Field(16, ge=2)  # per task; halved: α is fitted on one half and scored on the other
    eval_examples: int = Field(200, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    heads: HeadsSettings = Field(default_factory=HeadsSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @field_validator("complex", mode="before")
    @classmethod
    def _complex_ref(cls, entry):
        return {"task": entry} if isinstance(entry, str) else entry

    @field_validator("basics", mode="before")
    @classmethod
    def _basic_refs(cls, entries):
        return [{"task": entry} if isinstance(entry, str) else entry for entry in entries or []]

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds):
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @model_validator(mode="after")
    def _check(self):
        refs = [self.complex, *self.basics]
        labels = [ref.label for ref in refs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"complex and basic tasks need distinct names, got {labels}")
        if any(ref.variants or ref.fewshot for ref in refs):
            raise ValueError("variants and fewshot do not apply to a mixing study")
        if self.complex.examples is not None:
            raise ValueError("set the complex task's training size with scarce_examples, not complex.examples")
        if self.heads.complex_probe == "held_out" and self.probe_examples >= self.scarce_examples:
            raise ValueError(f"probe_examples ({self.probe_examples}) must be below scarce_examples "
                             f"({self.scarce_examples}): the complex probes are held out of the scarce data")
        if self.probe_examples > self.scarce_examples:
            raise ValueError(f"probe_examples ({self.probe_examples}) must not exceed scarce_examples "
                             f"({self.scarce_examples}): the complex probe comes from the scarce data")
        return self

    @property
    def scarce_lora(self) -> LoraSettings:
        if self.scarce_epochs is None:
            return self.lora
        return self.lora.model_copy(update={"epochs": self.scarce_epochs})


def load_mixing_study(source: Union[str, Path, dict, MixingStudy]) -> MixingStudy:
    """A study from a YAML path, a dict of settings or a :class:`MixingStudy`; bad input → one-line ConfigError."""
    if isinstance(source, MixingStudy):
        return source
    if isinstance(source, dict):
        study = validate_settings(MixingStudy, source, "mixing study")
    else:
        study = validate_settings(MixingStudy, read_settings_file(source, "mixing study"), str(source))
    for ref in [study.complex, *study.basics]:
        resolve(ref).options(ref.options)  # unknown task or bad options fail here, before any work
    return study


@dataclass
class MixingOutcome:
    """What :func:`run_mixing` produced: the tables (also written as CSV), the figure and its reading."""

    out_dir: Path
    table: pd.DataFrame  # mixing.csv
    alpha: pd.DataFrame  # alpha.csv
    reading: str
    figure: Figure
    seconds: float


# A warm-up mixes tasks with different prompts, so its items carry their rendered prompts as inputs.
@dataclass(frozen=True)
class _RenderedPrompts(TaskSpec):
    def prompt(self, example: Example) -> str:
        return example.input


MIXED = _RenderedPrompts(name="warmup_mixture", instruction="", trigger="", answer_type="generate")


def warmup_counts(proportions: pd.Series, total: int) -> pd.Series:
    """Items per basic task for a warm-up of ``total`` items (largest remainder, so they sum to ``total``)."""
    raw = proportions * total
    counts = np.floor(raw).astype(int)
    for name in (raw - counts).sort_values(ascending=False, kind="stable").index[: total - counts.sum()]:
        counts[name] += 1
    return counts


def run_mixing(study: Union[str, Path, dict, MixingStudy], out_dir: Union[str, Path],
               progress: Union[bool, Reporter] = False, executor=None) -> MixingOutcome:
    """Run (or resume) a mixing study into ``out_dir``; writes mixing.csv, alpha.csv, mixing.png, summary.json.

    Every adapter, pattern and evaluated item goes to ``out_dir/results.sqlite`` through the same jobs
    and executors as an experiment (``executor`` default: the study's own ``executor:`` setting).
    """
    from .pipeline import check_where, make_executor

    study = load_mixing_study(study)
    started = time.perf_counter()
    runner = _Runner(study, Path(out_dir))  # builds every dataset before anything is written
    executor = executor or make_executor(study)
    check_where(study, executor)
    with reporting(progress) as reporter:
        runner.open()
        jobs_run = runner.workspace.run_jobs(runner.alpha_jobs(), executor, reporter)
        alpha = runner.fit_alpha()
        jobs_run += runner.workspace.run_jobs(runner.comparison_jobs(alpha), executor, reporter)
    return runner.finish(alpha, runner.accuracy(), time.perf_counter() - started, jobs_run)


class _Runner:
    """The study as jobs: adapters, patterns and evaluations named by role, keyed by content."""

    def __init__(self, study: MixingStudy, out: Path):
        from .backends import check_backend
        from .devices import planned_dtype
        from .pipeline import model_key

        self.study, self.out = study, out
        resolved = resolve_model(study.base_model)
        self.base = ModelSpec(resolved, planned_dtype(study.precision, study.device), study.device)
        self.base_key = model_key(resolved, self.base.dtype)
        self.backend_version = check_backend("hf", {})
        self._build_data()
        self.adapter_keys: dict[str, str] = {}

    def open(self) -> None:
        self.workspace = Workspace(self.out)
        self.workspace.clear_scratch()
        self.workspace.store.start_run(self.study.model_dump_json(), self.base.model.name, self.base.model.key)

    # --- data -------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        study, first = self.study, self.study.seeds[0]
        self.complex_label = study.complex.label
        self.specs = {ref.label: resolve(ref).spec for ref in [study.complex, *study.basics]}
        self.eval_items = build_examples(study.complex, "eval", study.eval_examples, first)
        held_out = frozenset(example.input for example in self.eval_items)
        self.scarce = {seed: build_examples(study.complex, "train", study.scarce_examples, seed, held_out)
                       for seed in study.seeds}
        self.basic_train, self.probes = {}, {self.complex_label: self.scarce[first][: study.probe_examples]}
        for ref in study.basics:  # one draw, split: the probes are never training items of the basic adapter
            size = ref.examples or study.basic_examples
            items = build_examples(ref, "train", size + study.probe_examples, first)
            self.basic_train[ref.label], self.probes[ref.label] = items[:size], items[size:]

    def warmup_items(self, counts: pd.Series, seed: int, method: str) -> list[Example]:
        """The warm-up set: ``counts[task]`` items of each basic task, prompts rendered, shuffled."""
        items = []
        for ref in self.study.basics:
            if counts[ref.label] > 0:
                spec = self.specs[ref.label]
                items += [Example(spec.prompt(example), example.target, example.answer)
                          for example in build_examples(ref, "train", int(counts[ref.label]), seed)]
        random.Random(f"warmup|{method}|{seed}").shuffle(items)
        return items

    # --- jobs -------------------------------------------------------------------------------------
    def _train(self, name: str, spec: TaskSpec, examples: list[Example], settings: LoraSettings, seed: int,
               start_from: Optional[str] = None) -> TrainJob:
        from .pipeline import train_key

        parent = self._ref(start_from) if start_from else None
        settings = with_lr(settings, self.base.model)
        key = train_key(self.base_key, spec, examples, settings, seed, parent.key if parent else None)
        self.adapter_keys[name] = key
        return TrainJob(name, key, spec.name, spec, tuple(examples), self.base, settings, seed, parent)

    def _ref(self, name: str):
        return self.workspace.adapter_ref(name, self.adapter_keys[name])

    def _patterns(self, model: str, task: str) -> list[PatternJob]:
        """``model``'s pattern on each half of ``task``'s probe items (stored as tasks ``fit:<task>``, ...)."""
        from .heads.run import HALVES, pattern_key

        heads, probe, spec = self.study.heads, self.probes[task], self.specs[task]
        adapter = None if model == BASE else self._ref(model)
        half = len(probe) // 2
        jobs = []
        for prefix, examples in zip(HALVES, (tuple(probe[:half]), tuple(probe[half:2 * half]))):
            key = pattern_key(self.base_key, self.base.dtype, adapter.key if adapter else None, spec, examples,
                              heads.mode, heads.normalize)
            jobs.append(PatternJob(model, prefix + task, key, spec, examples, self.base, adapter, heads.mode,
                                   heads.normalize, heads.batch_size))
        return jobs

    @property
    def complex_alpha_adapter(self) -> str:
        """The complex adapter whose pattern change α explains (module doc: ``heads.complex_probe``)."""
        first = self.study.seeds[0]
        return f"plain_s{first}" if self.study.heads.complex_probe == "training" else f"probe_heldout_s{first}"

    def _evaluation(self, models: list[str]) -> EvalJob:
        from .pipeline import eval_key

        spec = self.specs[self.complex_label]
        cells = []
        for model in models:
            adapter = None if model == BASE else self._ref(model)
            cells.append(Cell(model, eval_key(self.base_key, self.backend_version, adapter.key if adapter else None,
                                              spec, self.eval_items), adapter))
        return EvalJob(self.complex_label, spec.name, spec, tuple(self.eval_items), tuple(cells), self.base,
                       BackendSpec("hf", {}, self.study.eval.batch_size, self.study.eval.generate_batch_size))

    def alpha_jobs(self) -> list:
        """The first seed's basic and scarce adapters, and the patterns α is fitted on."""
        study, first, complex_label = self.study, self.study.seeds[0], self.complex_label
        jobs = [self._train(f"basic_{ref.label}", self.specs[ref.label], self.basic_train[ref.label], study.lora,
                            first) for ref in study.basics]
        scarce = self.scarce[first]
        if study.heads.complex_probe == "held_out":
            scarce = scarce[study.probe_examples:]
        jobs.append(self._train(self.complex_alpha_adapter, self.specs[complex_label], scarce, study.scarce_lora,
                                first))
        for task in [complex_label, *self.basic_train]:
            jobs += self._patterns(BASE, task)
        for ref in study.basics:
            for task in (ref.label, complex_label):
                jobs += self._patterns(f"basic_{ref.label}", task)
        jobs += self._patterns(self.complex_alpha_adapter, complex_label)
        return jobs

    def comparison_jobs(self, alpha: pd.DataFrame) -> list:
        """Per seed: plain scarce SFT, α and uniform warm-ups continued on the scarce data, and their evaluation."""
        study, spec = self.study, self.specs[self.complex_label]
        used = alpha[alpha["used"]].set_index("basic")["proportion"]
        mixtures = {"alpha": used, "uniform": pd.Series(1 / len(used), index=used.index)}
        jobs, evaluated = [], [BASE]
        for seed in study.seeds:
            jobs.append(self._train(f"plain_s{seed}", spec, self.scarce[seed], study.scarce_lora, seed))
            for method, proportions in mixtures.items():
                warmup = self.warmup_items(warmup_counts(proportions, study.warmup_examples), seed, method)
                jobs.append(self._train(f"{method}_s{seed}_warmup", MIXED, warmup, study.lora, seed))
                jobs.append(self._train(f"{method}_s{seed}", spec, self.scarce[seed], study.scarce_lora, seed,
                                        start_from=f"{method}_s{seed}_warmup"))
            evaluated += [f"{method}_s{seed}" for method in ("plain", *mixtures)]
        jobs += [self._evaluation([model]) for model in evaluated]
        return jobs

    # --- results ----------------------------------------------------------------------------------
    def fit_alpha(self) -> pd.DataFrame:
        """The NNLS fit of the complex task's pattern change on the basic tasks', for both places of measuring ΔA:
        fitted on one half of the probe items, R² scored on the other half against shuffled heads."""
        from .heads.run import HALVES

        study, complex_label = self.study, self.complex_label
        store, basics = self.workspace.store, [ref.label for ref in study.basics]

        def change(model: str, task: str, half: str) -> np.ndarray:
            return unit_change(store.pattern(BASE, half + task), store.pattern(model, half + task))

        rows = []
        for delta_on in ("own", "complex"):
            probe_of = {basic: basic if delta_on == "own" else complex_label for basic in basics}
            fit_half, held_out_half = (
                (change(self.complex_alpha_adapter, complex_label, half),
                 {basic: change(f"basic_{basic}", probe_of[basic], half) for basic in basics})
                for half in HALVES)
            fitted = HeadCombination(non_negative=True, n_permutations=ALPHA_PERMUTATIONS).fit(*fit_half)
            fitted.held_out(*held_out_half)
            try:
                proportions = fitted.mixture_proportions()
            except ValueError:  # every weight is zero
                proportions = pd.Series(np.nan, index=basics)
            for basic in basics:
                rows.append({"delta_on": delta_on, "basic": basic, "weight": fitted.weights_[basic],
                             "proportion": proportions[basic], "r2_fit": fitted.r2_, "r2": fitted.held_out_r2_,
                             "r2_null_median": float(np.median(fitted.held_out_null_)),
                             "r2_p_value": fitted.held_out_p_value_, "used": delta_on == study.heads.delta_on})
        alpha = pd.DataFrame(rows)
        if alpha.loc[alpha["used"], "proportion"].isna().any():
            raise CrosstaskError(f"no basic task's pattern change (measured on {study.heads.delta_on!r} items) "
                                 f"has a positive weight in {complex_label}'s change: α-guided mixing is undefined")
        write_atomically(self.out / "alpha.csv", alpha.to_csv(index=False, float_format="%.6g"))
        return alpha

    def accuracy(self) -> pd.DataFrame:
        """Per-item correctness of every method and seed on the complex task's held-out items (from the store)."""
        items = self.workspace.store.items(targets=[self.complex_label])
        rows = []
        for seed in self.study.seeds:
            for method in METHODS:
                model = BASE if method == "base" else f"{method}_s{seed}"
                correct = items.loc[items["model"] == model].sort_values("item")["correct"].astype(bool)
                rows += [{"method": method, "seed": seed, "item": i, "correct": c} for i, c in enumerate(correct)]
        return pd.DataFrame(rows)

    def finish(self, alpha: pd.DataFrame, accuracy: pd.DataFrame, seconds: float, jobs_run: int) -> MixingOutcome:
        from .heads.figures import mixing_figure, mixing_reading

        table = mixing_table(accuracy, self.study.eval.bootstrap_resamples, self.study.seeds[0])
        write_atomically(self.out / "mixing.csv", table.to_csv(index=False, float_format="%.4f"))
        figure = mixing_figure(table, alpha, self.out / "mixing.png", self.complex_label)
        reading = mixing_reading(table, alpha, self.complex_label)
        summary = {"study": self.study.model_dump(mode="json", exclude_none=True), "reading": reading,
                   "seconds": round(seconds, 1), "jobs_run": jobs_run}
        write_atomically(self.out / "summary.json", json.dumps(summary, indent=2))
        self._report(reading, figure)
        return MixingOutcome(self.out, table, alpha, reading, figure, seconds)

    def _report(self, reading: str, figure: Figure) -> None:
        from .report import write_study_report

        section = Section("mixing", f"Pattern-guided data mixing for {self.complex_label}", reading,
                          tables=[self.out / "mixing.csv", self.out / "alpha.csv"], figures=[figure])
        subtitle = (f"{self.complex_label} with {self.study.scarce_examples} training items: α-weighted warm-up vs "
                    f"uniform warm-up vs plain SFT, {len(self.study.seeds)} seed(s)")
        write_study_report(self.out, self.study.name, subtitle,
                           self.study.model_dump(mode="json", exclude_none=True), [section])


def mixing_table(accuracy: pd.DataFrame, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Accuracy per method and seed, and per method over all seeds ("all"), with the paired bootstrap
    difference from plain SFT. Within a seed the items are paired; over all seeds the bootstrap is
    clustered by item: it draws seeds, then items, and an item drawn counts in every seed drawn (every
    seed is scored on the same held-out items), so an item's difficulty is not counted as seed-to-seed
    evidence."""
    rows = []
    groups = [(str(s), part) for s, part in accuracy.groupby("seed", sort=False)]
    for label, part in [*groups, ("all", accuracy)]:
        items = part.assign(target="complex", model=part["method"], replicate=part["seed"])[
            ["model", "target", "item", "replicate", "correct"]]
        intervals = paired_bootstrap(items, n_resamples=n_resamples, seed=seed, base="plain").set_index("model")
        for method in [m for m in METHODS if m in set(part["method"])]:
            scores = part.loc[part["method"] == method, "correct"].astype(float)
            interval = intervals.loc[method] if method in intervals.index else None
            rows.append({"method": method, "seed": label, "accuracy": scores.mean(), "n_items": len(scores),
                         "difference": 0.0 if interval is None else interval["delta"],
                         "low": np.nan if interval is None else interval["low"],
                         "high": np.nan if interval is None else interval["high"]})
    return pd.DataFrame(rows, columns=MIXING_COLUMNS)


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
to ``alpha.csv``; the chosen one drives the warm-up. Probe items are the first ``probe_examples`` of
each task's training data: the complex task has nothing else (its eval items must stay unseen), and
every task is treated alike.

α comes from the first seed's adapters; every seed then draws its own scarce set and warm-up data
and trains its own adapters. Each piece (adapter, pattern, evaluation) is stored under a content key
in ``OUT/ledger.json``, so a rerun skips finished pieces and redoes only what a change affects.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from .analysis.base import Figure, Section
from .analysis.bootstrap import paired_bootstrap
from .config import EvalSettings, LoraSettings, Strict, TaskRef, read_settings_file, validate_settings
from .errors import CrosstaskError
from .evaluation import SCORING_VERSION, evaluate
from .heads.combination import HeadCombination
from .heads.patterns import activation_pattern, save_pattern, write_atomically
from .models import choose_dtype, load_model, load_tokenizer, resolve_model
from .progress import Reporter
from .tasks.base import Example, TaskSpec
from .tasks.data import build_examples, examples_digest, resolve
from .training import TRAINING_VERSION, count_steps, new_adapter, train_adapter

# Part of every piece's content key: bump it when a change here would change stored results.
MIXING_VERSION = 1
METHODS = ("base", "plain", "alpha", "uniform")  # base: no training at all, for scale
MIXING_COLUMNS = ["method", "seed", "accuracy", "n_items", "difference", "low", "high"]


class HeadsSettings(Strict):
    """How patterns are measured for α (see :func:`crosstask.heads.activation_pattern`)."""

    mode: Literal["abs", "signed"] = "abs"
    normalize: Optional[Literal["layer"]] = None
    batch_size: int = Field(8, ge=1)
    delta_on: Literal["own", "complex"] = "own"  # where each task's pattern change is measured (module doc)


class MixingStudy(Strict):
    """One pattern-guided mixing study, as written in its YAML file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base_model: str = "smollm2-135m-instruct"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    complex: TaskRef
    basics: list[TaskRef] = Field(min_length=1)
    scarce_examples: int = Field(32, ge=1)
    scarce_epochs: Optional[float] = Field(None, gt=0)  # epochs on the scarce data (default: lora.epochs)
    warmup_examples: int = Field(128, ge=1)
    basic_examples: int = Field(128, ge=1)  # per basic task, for the adapters that give α
    probe_examples: int = Field(16, ge=1)
    eval_examples: int = Field(200, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    heads: HeadsSettings = Field(default_factory=HeadsSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)

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
        if self.probe_examples > self.scarce_examples:
            raise ValueError(f"probe_examples ({self.probe_examples}) must not exceed scarce_examples "
                             f"({self.scarce_examples}): the complex probe comes from the scarce data")
        small = [ref.label for ref in self.basics if (ref.examples or self.basic_examples) < self.probe_examples]
        if small:
            raise ValueError(f"basic task {small[0]!r} has fewer training examples than probe_examples")
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
               progress: Union[bool, Reporter] = False) -> MixingOutcome:
    """Run (or resume) a mixing study into ``out_dir``; writes mixing.csv, alpha.csv, mixing.png, summary.json."""
    study = load_mixing_study(study)
    reporter = progress if isinstance(progress, Reporter) else Reporter(enabled=bool(progress))
    started = time.perf_counter()
    with reporter if not isinstance(progress, Reporter) else nullcontext():
        runner = _Runner(study, Path(out_dir), reporter)
        alpha = runner.fit_alpha()
        accuracy = runner.compare(alpha)
    return runner.finish(alpha, accuracy, time.perf_counter() - started)


class _Ledger:
    """Finished pieces by name: their content key and results, in one JSON file rewritten atomically."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def get(self, name: str, key: str) -> Optional[dict]:
        entry = self.entries.get(name)
        return entry if entry and entry.get("key") == key else None

    def put(self, name: str, key: str, **values) -> None:
        self.entries[name] = {"key": key, **values}
        write_atomically(self.path, lambda stream: json.dump(self.entries, stream, indent=1))


class _Runner:
    """Builds the data, then trains, measures and evaluates each piece unless the ledger has it."""

    def __init__(self, study: MixingStudy, out: Path, reporter: Reporter):
        from .pipeline import content_key

        self.study, self.out, self.reporter, self.key = study, out, reporter, content_key
        self.resolved = resolve_model(study.base_model)
        self.dtype = choose_dtype(study.precision)
        self.model_key = content_key(MIXING_VERSION, self.resolved.key, str(self.dtype))
        self._build_data()  # before anything is written: bad data leaves no output directory behind
        (out / "adapters").mkdir(parents=True, exist_ok=True)
        for leftover in (out / "adapters").glob(".scratch-*"):  # from a run killed mid-training
            shutil.rmtree(leftover, ignore_errors=True)
        self.ledger = _Ledger(out / "ledger.json")
        self.tokenizer = load_tokenizer(self.resolved)
        self._base = None
        self._held: Optional[tuple[str, object, bool]] = None  # (adapter, PeftModel, trainable) kept in memory
        self.timings: dict[str, float] = {}

    # --- data -------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        study, first = self.study, self.study.seeds[0]
        self.complex_label = study.complex.label
        self.specs = {ref.label: resolve(ref).spec for ref in [study.complex, *study.basics]}
        self.eval_items = build_examples(study.complex, "eval", study.eval_examples, first)
        held_out = frozenset(example.input for example in self.eval_items)
        self.scarce = {seed: build_examples(study.complex, "train", study.scarce_examples, seed, held_out)
                       for seed in study.seeds}
        self.basic_train = {ref.label: build_examples(ref, "train", ref.examples or study.basic_examples, first)
                            for ref in study.basics}
        self.probes = {self.complex_label: self.scarce[first][: study.probe_examples],
                       **{label: items[: study.probe_examples] for label, items in self.basic_train.items()}}

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

    # --- models -----------------------------------------------------------------------------------
    def adapter_dir(self, name: str) -> Path:
        return self.out / "adapters" / name.replace(os.sep, "_")

    def base(self):
        """The base model, loaded once and never wrapped in an adapter."""
        if self._base is None:
            self._base = load_model(self.resolved, self.dtype)
        return self._base

    def adapter_model(self, name: str, trainable: bool = False):
        """Base + a trained adapter: the one just trained if it is still in memory, else loaded from disk."""
        if self._held and self._held[0] == name and (self._held[2] or not trainable):
            model = self._held[1]
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(load_model(self.resolved, self.dtype), str(self.adapter_dir(name)),
                                              is_trainable=trainable)
            self._held = (name, model, trainable)
        if not trainable:
            model.eval()
        return model

    def train(self, name: str, spec: TaskSpec, examples: list[Example], settings: LoraSettings, seed: int,
              start_from: Optional[str] = None) -> str:
        """Train adapter ``name`` (continuing adapter ``start_from`` if given) unless done; returns its key."""
        parent = self.ledger.entries[start_from]["key"] if start_from else None
        key = self.key("train", TRAINING_VERSION, self.model_key, parent, examples_digest(spec, examples),
                       settings.model_dump(), seed)
        final = self.adapter_dir(name)
        if self.ledger.get(name, key) and (final / "adapter_model.safetensors").is_file():
            return key
        # A PeftModel either way, so the model in memory after training is the trained adapter.
        model = (self.adapter_model(start_from, trainable=True) if start_from
                 else new_adapter(load_model(self.resolved, self.dtype), settings, seed))
        scratch = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".scratch-{final.name}-"))
        with self.reporter.bar(f"  train {name} (steps)", count_steps(len(examples), settings)) as advance:
            done = {"step": 0}

            def on_step(step: int) -> None:
                advance(step - done["step"])
                done["step"] = step

            metrics = train_adapter(model, self.tokenizer, spec, examples, settings, seed, scratch, on_step)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(scratch, final)
        self._held = (name, model, True)
        self.ledger.put(name, key, examples=len(examples), seconds=round(metrics["seconds"], 2),
                        train_loss=metrics["train_loss"], start_from=start_from)
        self.timings[f"train {name}"] = metrics["seconds"]
        return key

    # --- measurements -----------------------------------------------------------------------------
    def _model(self, name: str):
        return self.base() if name == "base" else self.adapter_model(name)

    def _adapter_key(self, name: str) -> str:
        return "base" if name == "base" else self.ledger.entries[name]["key"]

    def pattern(self, model_name: str, task: str) -> np.ndarray:
        heads, probe, spec = self.study.heads, self.probes[task], self.specs[task]
        key = self.key("pattern", self.model_key, self._adapter_key(model_name), examples_digest(spec, probe),
                       heads.mode, heads.normalize)
        piece, npy = f"pattern {model_name} on {task}", self.out / "heads" / f"{model_name}__{task}.npy"
        if self.ledger.get(piece, key) and npy.is_file():
            return np.load(npy)
        started = time.perf_counter()
        pattern = activation_pattern(self._model(model_name), self.tokenizer, spec, probe, heads.batch_size,
                                     heads.mode, heads.normalize)
        save_pattern(pattern, self.out, model_name, task)
        self.ledger.put(piece, key, seconds=round(time.perf_counter() - started, 2))
        self.timings[piece] = time.perf_counter() - started
        return pattern

    def correct(self, model_name: str) -> list[bool]:
        """Per-item correctness of a model on the complex task's held-out items."""
        spec = self.specs[self.complex_label]
        key = self.key("eval", SCORING_VERSION, self.model_key, self._adapter_key(model_name),
                       examples_digest(spec, self.eval_items))
        piece = f"eval {model_name}"
        entry = self.ledger.get(piece, key)
        if entry:
            return entry["correct"]
        started = time.perf_counter()
        with self.reporter.bar(f"  evaluate {model_name} (items)", len(self.eval_items)) as advance:
            results = evaluate(self._model(model_name), self.tokenizer, spec, self.eval_items,
                               self.study.eval.batch_size, advance)
        correct = [bool(result.correct) for result in results]
        self.ledger.put(piece, key, correct=correct, seconds=round(time.perf_counter() - started, 2))
        self.timings[piece] = time.perf_counter() - started
        return correct

    # --- the study --------------------------------------------------------------------------------
    def fit_alpha(self) -> pd.DataFrame:
        """Adapters and patterns of the first seed, and the NNLS fit for both places of measuring ΔA."""
        study, first, complex_label = self.study, self.study.seeds[0], self.complex_label
        basics = [ref.label for ref in study.basics]
        after: dict[str, dict[str, np.ndarray]] = {}  # basic task -> probe task -> pattern of its adapter
        with self.reporter.stage("α: basic and scarce adapters, head patterns", len(basics) + 1) as advance:
            for ref in study.basics:
                self.train(f"basic_{ref.label}", self.specs[ref.label], self.basic_train[ref.label], study.lora,
                           first)
                after[ref.label] = {task: self.pattern(f"basic_{ref.label}", task)
                                    for task in (ref.label, complex_label)}
                advance(1)
            self.train(f"plain_s{first}", self.specs[complex_label], self.scarce[first], study.scarce_lora, first)
            complex_delta = self.pattern(f"plain_s{first}", complex_label) - self.pattern("base", complex_label)
            advance(1)
        base = {task: self.pattern("base", task) for task in [complex_label, *basics]}
        rows = []
        for delta_on in ("own", "complex"):
            probe_of = {basic: basic if delta_on == "own" else complex_label for basic in basics}
            deltas = {basic: after[basic][probe_of[basic]] - base[probe_of[basic]] for basic in basics}
            fitted = HeadCombination(non_negative=True).fit(complex_delta, deltas)
            try:
                proportions = fitted.mixture_proportions()
            except ValueError:  # every weight is zero
                proportions = pd.Series(np.nan, index=basics)
            for basic in basics:
                rows.append({"delta_on": delta_on, "basic": basic, "weight": fitted.weights_[basic],
                             "proportion": proportions[basic], "r2": fitted.r2_,
                             "used": delta_on == study.heads.delta_on})
        alpha = pd.DataFrame(rows)
        used = alpha[alpha["used"]]
        if used["proportion"].isna().any():
            raise CrosstaskError(f"no basic task's pattern change (measured on {study.heads.delta_on!r} items) "
                                 f"has a positive weight in {complex_label}'s change: α-guided mixing is undefined")
        alpha.to_csv(self.out / "alpha.csv", index=False, float_format="%.6g")
        return alpha

    def compare(self, alpha: pd.DataFrame) -> pd.DataFrame:
        """Plain SFT, α warm-up + SFT and uniform warm-up + SFT for every seed; per-item correctness."""
        study, complex_label = self.study, self.complex_label
        used = alpha[alpha["used"]].set_index("basic")["proportion"]
        mixtures = {"alpha": used, "uniform": pd.Series(1 / len(used), index=used.index)}
        spec = self.specs[complex_label]
        rows = [{"method": "base", "seed": seed, "item": i, "correct": c}
                for seed in study.seeds for i, c in enumerate(self.correct("base"))]
        with self.reporter.stage("warm-up and scarce fine-tuning per seed", len(study.seeds)) as advance:
            for seed in study.seeds:
                self.train(f"plain_s{seed}", spec, self.scarce[seed], study.scarce_lora, seed)
                outcomes = {"plain": self.correct(f"plain_s{seed}")}
                for method, proportions in mixtures.items():
                    warmup = self.warmup_items(warmup_counts(proportions, study.warmup_examples), seed, method)
                    self.train(f"{method}_s{seed}_warmup", MIXED, warmup, study.lora, seed)
                    self.train(f"{method}_s{seed}", spec, self.scarce[seed], study.scarce_lora, seed,
                               start_from=f"{method}_s{seed}_warmup")
                    outcomes[method] = self.correct(f"{method}_s{seed}")
                rows += [{"method": method, "seed": seed, "item": i, "correct": c}
                         for method, correct in outcomes.items() for i, c in enumerate(correct)]
                advance(1)
        return pd.DataFrame(rows)

    def finish(self, alpha: pd.DataFrame, accuracy: pd.DataFrame, seconds: float) -> MixingOutcome:
        from .heads.figures import mixing_figure, mixing_reading

        table = mixing_table(accuracy, self.study.eval.bootstrap_resamples, self.study.seeds[0])
        table.to_csv(self.out / "mixing.csv", index=False, float_format="%.4f")
        figure = mixing_figure(table, alpha, self.out / "mixing.png", self.complex_label)
        reading = mixing_reading(table, alpha, self.complex_label)
        summary = {"study": self.study.model_dump(mode="json", exclude_none=True), "reading": reading,
                   "seconds": round(seconds, 1), "computed": {name: round(value, 2)
                                                             for name, value in self.timings.items()}}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
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
    difference from plain SFT (items paired within a seed; over all seeds, (seed, item) pairs are resampled)."""
    rows = []
    groups = [(str(s), part.assign(item=part["item"].astype(str))) for s, part in accuracy.groupby("seed", sort=False)]
    pooled = accuracy.assign(item=accuracy["seed"].astype(str) + ":" + accuracy["item"].astype(str))
    for label, part in [*groups, ("all", pooled)]:
        items = part.assign(target="complex", model=part["method"])[["model", "target", "item", "correct"]]
        intervals = paired_bootstrap(items, n_resamples=n_resamples, seed=seed, base="plain").set_index("model")
        for method in [m for m in METHODS if m in set(part["method"])]:
            scores = part.loc[part["method"] == method, "correct"].astype(float)
            interval = intervals.loc[method] if method in intervals.index else None
            rows.append({"method": method, "seed": label, "accuracy": scores.mean(), "n_items": len(scores),
                         "difference": 0.0 if interval is None else interval["delta"],
                         "low": np.nan if interval is None else interval["low"],
                         "high": np.nan if interval is None else interval["high"]})
    return pd.DataFrame(rows, columns=MIXING_COLUMNS)


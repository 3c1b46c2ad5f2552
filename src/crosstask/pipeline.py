"""config -> tasks/data -> jobs -> results store -> matrix, traits, intervals -> report.

:func:`plan` validates everything and builds every dataset before anything is written, so bad input
never leaves a half-made run directory. :func:`run` executes the jobs that are not done yet (each
keyed by a content hash of model, data and settings) and exports the tables and the report.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd
import yaml

from .analysis.bootstrap import paired_bootstrap
from .analysis.suite import SECTIONS_FILE, cells_key, read_sections
from .analysis.traits import LatentTraits
from .config import Experiment, TaskRef, parse_experiment
from .errors import CrosstaskError
from .evaluation import SCORING_VERSION
from .jobs import BASE, EvalJob, Job, LocalExecutor, TrainJob, Workspace
from .models import ResolvedModel, choose_dtype, resolve_model
from .progress import Reporter
from .store import Store
from .tasks.base import Example
from .tasks.data import build_examples, examples_digest, register_definitions, resolve, with_fewshot
from .training import TRAINING_VERSION


def content_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class Plan:
    experiment: Experiment
    model: ResolvedModel
    dtype: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def rows(self) -> list[str]:
        return [BASE] + [ref.label for ref in self.experiment.source_refs]

    @property
    def columns(self) -> list[str]:
        return [ref.label for ref in self.experiment.target_refs]


def plan(experiment: Experiment, base_dir: Path = Path(".")) -> Plan:
    register_definitions(experiment.tasks)
    for ref in experiment.source_refs + experiment.target_refs:
        family = resolve(ref)
        family.options(ref.options)
    model = resolve_model(experiment.base_model)
    dtype = str(choose_dtype(experiment.precision)).removeprefix("torch.")
    model_key = content_key(model.key, dtype)

    eval_sets = {ref.label: _examples(ref, "eval", experiment.eval_examples, experiment, base_dir)
                 for ref in experiment.target_refs}
    held_out: dict[str, set[str]] = {}
    for ref in experiment.target_refs:
        held_out.setdefault(ref.task, set()).update(example.input for example in eval_sets[ref.label])

    result = Plan(experiment, model, dtype)
    adapter_keys = {}
    for ref in experiment.source_refs:
        examples = _examples(ref, "train", experiment.train_examples, experiment, base_dir,
                             frozenset(held_out.get(ref.task, ())))
        spec = resolve(ref).spec
        seed = experiment.seed if ref.seed is None else ref.seed
        lora = experiment.lora_for(ref)
        key = content_key("train", TRAINING_VERSION, model_key, examples_digest(spec, examples),
                          lora.model_dump(), seed)
        adapter_keys[ref.label] = key
        result.jobs.append(TrainJob(ref.label, key, ref.task, spec, tuple(examples), model, dtype, lora, seed))
    target_specs = {ref.label: _target_spec(ref, experiment, base_dir, held_out) for ref in experiment.target_refs}
    for model_name in result.rows:
        for ref in experiment.target_refs:
            spec = target_specs[ref.label]
            examples = eval_sets[ref.label]
            key = content_key("eval", SCORING_VERSION, model_key, adapter_keys.get(model_name, BASE),
                              examples_digest(spec, examples))
            result.jobs.append(EvalJob(model_name, ref.label, key, ref.task, spec, tuple(examples), model, dtype,
                                       experiment.eval.batch_size, adapter_keys.get(model_name)))
    return result


def _target_spec(ref: TaskRef, experiment: Experiment, base_dir: Path, held_out: dict[str, set[str]]):
    """The target's spec, with its few-shot examples (from the train split, never an evaluated item) if any."""
    spec = resolve(ref).spec
    if not ref.fewshot:
        return spec
    # The shots get their own seed stream, so they are not the first training items of a source.
    seed = (experiment.seed if ref.seed is None else ref.seed) + 7919
    shots = build_examples(ref.model_copy(update={"noise": 0.0}), "train", ref.fewshot, seed,
                           frozenset(held_out.get(ref.task, ())), base_dir)
    return with_fewshot(spec, shots)


def _examples(ref: TaskRef, split: str, default_n: int, experiment: Experiment, base_dir: Path,
              exclude: frozenset[str] = frozenset()) -> list[Example]:
    seed = experiment.seed if ref.seed is None else ref.seed
    return build_examples(ref, split, ref.examples or default_n, seed, exclude, base_dir)


def pending(jobs: list[Job], workspace: Workspace) -> list[Job]:
    todo = []
    for job in jobs:
        if isinstance(job, TrainJob):
            done = workspace.adapter_ready(job.adapter, job.key)
        else:
            done = workspace.store.cell_key(job.model_name, job.target) == job.key
        if not done:
            todo.append(job)
    return todo


def run(experiment: Experiment, out_dir: Path, base_dir: Path = Path("."), executor=None,
        reporter: Optional[Reporter] = None) -> Path:
    """Run (or resume) an experiment into ``out_dir``; returns the path of the report."""
    reporter = reporter or Reporter(enabled=False)
    the_plan = plan(experiment, base_dir)
    workspace = Workspace(out_dir)
    (workspace.root / "experiment.yaml").write_text(yaml.safe_dump(experiment.compact_dump(), sort_keys=False))
    run_id = workspace.store.start_run(experiment.model_dump_json(), the_plan.model.name, the_plan.model.key)
    todo = pending(the_plan.jobs, workspace)
    reporter.log(f"{experiment.name}: {len(the_plan.jobs) - len(todo)} of {len(the_plan.jobs)} jobs already done")
    started = time.perf_counter()
    with reporter:
        (executor or LocalExecutor()).run(todo, workspace, reporter)
    workspace.store.finish_run(run_id)
    reporter.log(f"jobs finished in {time.perf_counter() - started:.0f} s")
    return export(workspace, the_plan.rows, the_plan.columns, experiment)


def matrix_from_store(store: Store, rows: list[str], columns: list[str]) -> pd.DataFrame:
    cells = store.cells()
    table = cells.pivot(index="model", columns="target", values="score")
    missing = [(r, c) for r in rows for c in columns if r not in table.index or c not in table.columns]
    if missing:
        model, target = missing[0]
        raise CrosstaskError(f"the store has no result for {model!r} on {target!r}; run the experiment first")
    matrix = table.loc[rows, columns]
    matrix.index.name, matrix.columns.name = "model", None
    return matrix


def _write_atomically(path: Path, text: str) -> None:
    """A reader (or a kill) never sees half a table: write beside, then rename into place."""
    scratch = path.with_name(f".{path.name}.partial")
    scratch.write_text(text)
    os.replace(scratch, path)


def export(workspace: Workspace, rows: list[str], columns: list[str], experiment: Experiment) -> Path:
    """Write matrix.csv, intervals.csv, traits.json and the report from the store."""
    from .report import write_report

    root = workspace.root
    matrix = matrix_from_store(workspace.store, rows, columns)
    _write_atomically(root / "matrix.csv", matrix.to_csv(float_format="%.4f"))
    items = workspace.store.items(models=rows, targets=columns)
    intervals = paired_bootstrap(items[["model", "target", "item", "correct"]],
                                 n_resamples=experiment.eval.bootstrap_resamples, seed=experiment.seed)
    _write_atomically(root / "intervals.csv", intervals.to_csv(index=False, float_format="%.4f"))
    traits, traits_skipped = None, None
    (root / "traits.json").unlink(missing_ok=True)  # never leave the traits of an earlier matrix behind
    try:
        traits = LatentTraits(experiment.analysis.n_components, experiment.analysis.input).fit(matrix)
        _write_atomically(root / "traits.json", json.dumps(traits.to_dict(), indent=2))
    except ValueError as reason:  # too few adapters or tasks, or no variance between adapters
        traits_skipped = f"Latent traits were not computed: {reason}."
    latest = workspace.store.latest_run() or {}
    meta = {
        "traits_skipped": traits_skipped,
        "name": experiment.name,
        "base_model": experiment.base_model,
        "settings": experiment.compact_dump(),
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(latest.get("started", time.time()))),
        "timings": _timings(workspace),
    }
    sections = read_sections(root, cells_key(workspace.store, rows, columns))
    if not sections and (root / "analysis" / SECTIONS_FILE).is_file():
        meta["analyses_note"] = ("The analyses in analysis/ were made from earlier results; "
                                 "run `crosstask analyze` again to bring them up to date.")
    return write_report(root, matrix, intervals, traits, meta, list(sections.values()))


def _timings(workspace: Workspace) -> dict[str, float]:
    adapters = workspace.store.adapters()
    training = sum(json.loads(metrics).get("seconds", 0.0) for metrics in adapters["metrics"])
    evaluation = float(workspace.store.cells()["seconds"].sum())
    return {"training (all adapters)": training, "evaluation (all cells)": evaluation}


def report(root: Path) -> Path:
    """Rebuild the tables and the report of a run directory from its store."""
    root = Path(root)
    if not (root / "results.sqlite").is_file():
        raise CrosstaskError(f"{root} is not a crosstask run directory (no results.sqlite)")
    workspace = Workspace(root)
    latest = workspace.store.latest_run()
    if latest is None:
        raise CrosstaskError(f"{root}: the store holds no run yet")
    experiment = parse_experiment(json.loads(latest["experiment"]), str(root))
    rows = [BASE] + [ref.label for ref in experiment.source_refs]
    return export(workspace, rows, [ref.label for ref in experiment.target_refs], experiment)

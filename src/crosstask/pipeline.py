"""config -> tasks/data -> jobs -> executor -> results store -> matrix, traits, intervals -> report.

:func:`plan` validates everything and builds every dataset before anything is written, so bad input
never leaves a half-made run directory. :func:`run` hands the jobs that are not done yet (each keyed
by a content hash of model, data and settings) to an executor, commits each result as it arrives, and
exports the tables and the report.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd
import yaml

from .analysis.bootstrap import paired_bootstrap
from .analysis.traits import LatentTraits
from .backends import backend_class, check_backend
from .config import Experiment, TaskRef, parse_experiment
from .devices import planned_dtype
from .errors import CrosstaskError
from .files import write_atomically
from .jobs import AdapterRef, BackendSpec, Cell, EvalJob, Job, ModelSpec, TrainJob
from .keys import BASE, SCORING_VERSION, TRAINING_VERSION, content_key
from .models import ResolvedModel, check_available, check_target_modules, resolve_model, with_lr
from .progress import Reporter
from .sections import cells_key, read_sections, recorded_sections_exist
from .store import Store
from .tasks.base import Example
from .tasks.data import build_examples, data_dir_of, examples_digest, register_definitions, resolve, with_fewshot
from .workspace import Workspace, adapter_folder


@dataclass
class Plan:
    experiment: Experiment
    model: ResolvedModel
    dtype: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def rows(self) -> list[str]:
        """The matrix's rows: the base model, then one per source (the mean over its seeds' adapters)."""
        return [BASE] + [ref.label for ref in self.experiment.source_refs]

    @property
    def models(self) -> list[str]:
        """Every model that is evaluated: the base model and every adapter of every seed."""
        return evaluated_models(self.experiment)

    @property
    def columns(self) -> list[str]:
        return [ref.label for ref in self.experiment.target_refs]

    @property
    def base(self) -> ModelSpec:
        return ModelSpec(self.model, self.dtype, self.experiment.device)

    def train_job(self, adapter: str) -> TrainJob:
        return next(job for job in self.jobs if isinstance(job, TrainJob) and job.adapter == adapter)

    def eval_cell(self, model: str, target: str) -> tuple[EvalJob, Cell]:
        """The job that evaluates ``model`` on ``target``, and its cell."""
        for job in self.jobs:
            if isinstance(job, EvalJob) and job.target == target:
                for cell in job.cells:
                    if cell.model == model:
                        return job, cell
        raise KeyError((model, target))


def model_key(model: ResolvedModel, dtype: str) -> str:
    return content_key(model.key, dtype)


def train_key(base_key: str, spec, examples, lora, seed: int, start_from: Optional[str] = None) -> str:
    """The content key of an adapter: base model, exact data, LoRA settings, seed (and the adapter it continues)."""
    parts = ["train", TRAINING_VERSION, base_key, examples_digest(spec, examples), lora.model_dump(), seed]
    return content_key(*parts, *([start_from] if start_from else []))


def eval_key(base_key: str, backend_version: str, adapter_key: Optional[str], spec, examples) -> str:
    """The content key of a cell: base model, the adapter's key, the backend and its version, exact items."""
    return content_key("eval", SCORING_VERSION, base_key, adapter_key or BASE, examples_digest(spec, examples),
                       backend_version)


def plan(experiment: Experiment, base_dir: Path = Path("."), root: Path = Path(".")) -> Plan:
    """Every job of ``experiment``; adapters are read from ``root/adapters`` (the run directory)."""
    register_definitions(experiment.tasks)
    for ref in experiment.source_refs + experiment.target_refs:
        resolve(ref).options(ref.options)
    for ref in experiment.target_refs:
        about = resolve(ref).about or {}
        if not about.get("as_target", True):
            raise CrosstaskError(f"targets: {ref.task!r} is a training source only: {about.get('notes', '')}")
    # The data first: a dataset that is not at hand fails before the model is fetched or converted.
    eval_sets = {ref.label: _examples(ref, "eval", experiment.eval_examples, experiment, base_dir)
                 for ref in experiment.target_refs}
    held_out: dict[str, set[str]] = {}
    for ref in experiment.target_refs:
        held_out.setdefault(ref.task, set()).update(example.input for example in eval_sets[ref.label])
    train_sets = {ref.label: _examples(ref, "train", experiment.train_examples, experiment, base_dir,
                                       frozenset(held_out.get(ref.task, ())))
                  for ref in experiment.source_refs}

    backend_version = check_backend(experiment.backend.name, experiment.backend.options)
    model = resolve_model(experiment.base_model)
    check_available(model)
    for ref in experiment.source_refs:
        where = "lora.target_modules" if "target_modules" not in ref.lora else f"{ref.label}: lora.target_modules"
        check_target_modules(model, experiment.lora_for(ref).target_modules, where)
    dtype = planned_dtype(experiment.precision, experiment.device)
    base_key = model_key(model, dtype)

    result = Plan(experiment, model, dtype)
    adapters: dict[str, AdapterRef] = {}
    for ref in experiment.source_refs:
        examples = train_sets[ref.label]
        spec = resolve(ref).spec
        lora = with_lr(experiment.lora_for(ref), model)
        for name, seed in experiment.replicates(ref):
            key = train_key(base_key, spec, examples, lora, seed)
            adapters[name] = AdapterRef(name, key, str(adapter_folder(root, name).resolve()))
            result.jobs.append(TrainJob(name, key, ref.task, spec, tuple(examples), result.base, lora, seed))

    chosen = backend_class(experiment.backend.name)
    options = chosen.plan_options(experiment.backend.options, [job.lora.r for job in result.jobs])
    backend = BackendSpec(experiment.backend.name, options, experiment.eval.batch_size,
                          experiment.eval.generate_batch_size)
    targets = [(ref, _target_spec(ref, experiment, base_dir, held_out)) for ref in experiment.target_refs]

    def cell(name: str, ref, spec) -> Cell:
        adapter = adapters.get(name)
        return Cell(name, eval_key(base_key, backend_version, adapter.key if adapter else None, spec,
                                   eval_sets[ref.label]), adapter)

    def job(ref, spec, cells: list[Cell]) -> EvalJob:
        return EvalJob(ref.label, ref.task, spec, tuple(eval_sets[ref.label]), tuple(cells), result.base, backend)

    if chosen.mixes_models:  # one job per target: the backend batches every model's requests together
        result.jobs += [job(ref, spec, [cell(name, ref, spec) for name in result.models]) for ref, spec in targets]
    else:  # one job per cell, model by model, so a worker holds one adapter at a time
        result.jobs += [job(ref, spec, [cell(name, ref, spec)]) for name in result.models for ref, spec in targets]
    return result


def replicate_names(experiment: Experiment) -> dict[str, list[str]]:
    """Matrix row -> the models evaluated for it: ``base`` alone, each source's adapters of every seed."""
    return {BASE: [BASE]} | {ref.label: [name for name, _ in experiment.replicates(ref)]
                             for ref in experiment.source_refs}


def evaluated_models(experiment: Experiment) -> list[str]:
    return [name for names in replicate_names(experiment).values() for name in names]


def replicated_items(store: Store, experiment: Experiment, targets: Optional[list[str]] = None,
                     parse_logliks: bool = False) -> pd.DataFrame:
    """Every stored item of the experiment's models, ``model`` being the matrix row (source label or base),
    ``adapter`` the evaluated model (a seed's adapter) and ``replicate`` its training seed (0 for base)."""
    seed_of = {BASE: (BASE, 0)} | {name: (ref.label, seed) for ref in experiment.source_refs
                                   for name, seed in experiment.replicates(ref)}
    items = store.items(models=list(seed_of), targets=targets, parse_logliks=parse_logliks)
    items = items.rename(columns={"model": "adapter"})
    items.insert(0, "model", items["adapter"].map(lambda name: seed_of[name][0]))
    items.insert(2, "replicate", items["adapter"].map(lambda name: seed_of[name][1]))
    return items


def mean_matrix(store: Store, experiment: Experiment, columns: list[str]) -> pd.DataFrame:
    """The transfer matrix: each row the mean score over that row's models (a source's seeds); every
    cell must be stored."""
    names = replicate_names(experiment)
    by_model = store.matrix(evaluated_models(experiment), columns)
    matrix = pd.DataFrame([by_model.loc[group].mean() for group in names.values()], index=list(names))
    matrix.index.name, matrix.columns.name = "model", None
    return matrix


def _target_spec(ref: TaskRef, experiment: Experiment, base_dir: Path, held_out: dict[str, set[str]]):
    """The target's spec, with its few-shot examples (from the train split, never an evaluated item) if any."""
    spec = resolve(ref).spec
    if not ref.fewshot:
        return spec
    # The shots get their own seed stream, so they are not the first training items of a source.
    seed = (experiment.seed if ref.seed is None else ref.seed) + 7919
    shots = build_examples(ref.model_copy(update={"noise": 0.0}), "train", ref.fewshot, seed,
                           frozenset(held_out.get(ref.task, ())), base_dir, data_dir_of(experiment.data_dir, base_dir))
    return with_fewshot(spec, shots)


def _examples(ref: TaskRef, split: str, default_n: int, experiment: Experiment, base_dir: Path,
              exclude: frozenset[str] = frozenset()) -> list[Example]:
    seed = experiment.seed if ref.seed is None else ref.seed
    return build_examples(ref, split, ref.examples or default_n, seed, exclude, base_dir,
                          data_dir_of(experiment.data_dir, base_dir))


def pin_data_dir(experiment: Experiment, base_dir: Path) -> Experiment:
    """The experiment with its data directory (the YAML's ``data_dir``, else CROSSTASK_DATA_DIR) as an absolute
    path, so that what is stored with the run finds the same local copies later, whatever the environment."""
    data_dir = data_dir_of(experiment.data_dir, base_dir)
    if data_dir is None:
        return experiment
    return experiment.model_copy(update={"data_dir": str(data_dir.resolve())})


def make_executor(experiment: Experiment):
    """The executor the experiment's ``executor:`` and ``resources:`` settings describe."""
    from .executors import executor_class

    return executor_class(experiment.executor.name).from_settings(experiment.executor, experiment.resources)


def check_where(experiment, executor) -> None:
    """Fail in one line, before anything is written, when the jobs could not run: a device this process
    cannot honour (local executor; a cluster's workers check their own) or resources no node has."""
    from .devices import resolve_device
    from .executors.local import LocalExecutor

    if isinstance(executor, LocalExecutor):
        resolve_device(experiment.device)
    executor.check()


def run(experiment: Experiment, out_dir: Path, base_dir: Path = Path("."), executor=None,
        reporter: Optional[Reporter] = None, replace: bool = False) -> Path:
    """Run (or resume) an experiment into ``out_dir``; returns the path of the report.

    A directory that holds another experiment's results (another name) is refused unless ``replace``,
    which discards them first; nothing is written before the plan is complete.
    """
    reporter = reporter or Reporter(enabled=False)
    out_dir = Path(out_dir)
    experiment = pin_data_dir(experiment, base_dir)
    the_plan = plan(experiment, base_dir, out_dir)
    executor = executor or make_executor(experiment)
    check_where(experiment, executor)
    _claim(out_dir, experiment.name, replace)
    workspace = Workspace(out_dir)
    workspace.clear_scratch()
    write_atomically(workspace.root / "experiment.yaml", yaml.safe_dump(experiment.compact_dump(), sort_keys=False))
    run_id = workspace.store.start_run(experiment.model_dump_json(), the_plan.model.name, the_plan.model.key,
                                       str(Path(base_dir).resolve()))
    todo = workspace.pending(the_plan.jobs)
    reporter.log(f"{experiment.name}: {len(the_plan.jobs) - len(todo)} of {len(the_plan.jobs)} jobs already done"
                 f" ({executor.name} executor, {experiment.backend.name} backend)")
    started = time.perf_counter()
    with reporter:
        workspace.run_jobs(todo, executor, reporter)
    workspace.store.finish_run(run_id)
    reporter.log(f"jobs finished in {time.perf_counter() - started:.0f} s")
    return export(workspace.root, workspace.store, experiment)


def describe(the_plan: Plan) -> str:
    """What a run of this plan would do, for ``crosstask run --dry-run``: every check of the plan passed."""
    from .training import count_steps

    experiment = the_plan.experiment
    trains = [job for job in the_plan.jobs if isinstance(job, TrainJob)]
    evals = [job for job in the_plan.jobs if isinstance(job, EvalJob)]
    lines = [f"{experiment.name}: {the_plan.model.name} ({the_plan.dtype}, device {experiment.device}), "
             f"{experiment.backend.name} backend, {experiment.executor.name} executor",
             f"{len(trains)} adapters to train ({len(experiment.source_refs)} sources x "
             f"{len(experiment.seeds or [experiment.seed])} seed(s)); {len(the_plan.models)} models x "
             f"{len(the_plan.columns)} targets = {sum(len(job.cells) for job in evals)} cells", "sources:"]
    for ref in experiment.source_refs:
        job = the_plan.train_job(ref.label)
        steps = count_steps(len(job.examples), job.lora)
        lines.append(f"  {ref.label}: {len(job.examples)} examples ({ref.task}), {steps} steps of "
                     f"{job.lora.batch_size}, r {job.lora.r}, lr {job.lora.lr:g}")
    lines.append("targets:")
    for ref in experiment.target_refs:
        job = next(job for job in evals if job.target == ref.label)
        kind = job.spec.answer_type + (f", {ref.fewshot}-shot" if ref.fewshot else "")
        lines.append(f"  {ref.label}: {len(job.examples)} items ({ref.task}, {kind})")
    return "\n".join(lines)


RUN_OUTPUTS = ("results.sqlite", "results.sqlite-wal", "results.sqlite-shm", "adapters", "analysis", "heads")


def _claim(out_dir: Path, name: str, replace: bool) -> None:
    """Refuse a run directory that holds another experiment's results, or (``replace``) discard them."""
    latest = Store.peek_latest_run(out_dir / "results.sqlite")
    if latest is None:
        return
    stored_name = json.loads(latest["experiment"]).get("name")
    if stored_name == name:
        return
    if not replace:
        raise CrosstaskError(f"{out_dir} holds the results of experiment {stored_name!r}, not {name!r}; give "
                             "another --out, or --replace to discard them")
    for entry in RUN_OUTPUTS:
        path = out_dir / entry
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def export(root: Path, store: Store, experiment: Experiment) -> Path:
    """Write matrix.csv, intervals.csv, traits.json and the report of run directory ``root`` from its store."""
    from .report import learning_check, write_report

    columns = [ref.label for ref in experiment.target_refs]
    matrix = mean_matrix(store, experiment, columns)
    write_atomically(root / "matrix.csv", matrix.to_csv(float_format="%.4f"))
    items = replicated_items(store, experiment, columns)
    if experiment.seeds and len(experiment.seeds) > 1:
        per_seed = items.groupby(["model", "replicate", "target"], sort=False)["correct"].mean().unstack("target")
        write_atomically(root / "matrix_by_seed.csv", per_seed[columns].rename_axis(index=["model", "seed"])
                         .to_csv(float_format="%.4f"))
    else:
        (root / "matrix_by_seed.csv").unlink(missing_ok=True)
    intervals = paired_bootstrap(items[["model", "target", "item", "replicate", "correct"]],
                                 n_resamples=experiment.eval.bootstrap_resamples, seed=experiment.seed)
    write_atomically(root / "intervals.csv", intervals.to_csv(index=False, float_format="%.4f"))
    traits, traits_skipped = None, None
    (root / "traits.json").unlink(missing_ok=True)  # never leave the traits of an earlier matrix behind
    try:
        traits = LatentTraits(experiment.analysis.n_components, experiment.analysis.input).fit(matrix)
        write_atomically(root / "traits.json", json.dumps(traits.to_dict(), indent=2))
    except ValueError as reason:  # too few adapters or tasks, or no variance between adapters
        traits_skipped = f"Latent traits were not computed: {reason}."
    latest = store.latest_run() or {}
    meta = {
        "learning_check": learning_check(intervals, own_targets(experiment), training_metrics(store)),
        "training": training_metrics(store),
        "own_targets": own_targets(experiment),
        "traits_skipped": traits_skipped,
        "name": experiment.name,
        "base_model": experiment.base_model,
        "settings": experiment.compact_dump(),
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(latest.get("started", time.time()))),
        "timings": _timings(store),
    }
    sections = read_sections(root, cells_key(store.cells(), evaluated_models(experiment), columns))
    if not sections and recorded_sections_exist(root):
        meta["analyses_note"] = ("The analyses in analysis/ were made from earlier results; "
                                 "run `crosstask analyze` again to bring them up to date.")
    return write_report(root, matrix, intervals, traits, meta, list(sections.values()))


def own_targets(experiment: Experiment) -> dict[str, Optional[str]]:
    """Adapter -> the target of its source's task (the first, if several), or None."""
    register_definitions(experiment.tasks)
    by_task = {}
    for ref in experiment.target_refs:
        by_task.setdefault(resolve(ref).spec.name, ref.label)
    return {ref.label: by_task.get(resolve(ref).spec.name) for ref in experiment.source_refs}


def training_metrics(store: Store) -> dict[str, dict]:
    """Each stored adapter's training metrics (losses, loss curve, truncation counts, time)."""
    adapters = store.adapters()
    return {name: json.loads(text) for name, text in zip(adapters["name"], adapters["metrics"])}


def stored_learning_check(root: Path) -> str:
    """The report's own-task check of a finished run, from its intervals.csv and store."""
    from .report import learning_check

    intervals = pd.read_csv(Path(root) / "intervals.csv")
    return learning_check(intervals, own_targets(stored_experiment(root)), training_metrics(open_store(root)))


def _timings(store: Store) -> dict[str, float]:
    adapters = store.adapters()
    training = sum(json.loads(metrics).get("seconds", 0.0) for metrics in adapters["metrics"])
    evaluation = float(store.cells()["seconds"].sum())
    return {"training (all adapters)": training, "evaluation (all cells)": evaluation}


def open_store(root: Path) -> Store:
    """The store of an existing run directory (read without touching anything else in it)."""
    if not (Path(root) / "results.sqlite").is_file():
        raise CrosstaskError(f"{root} is not a crosstask run directory (no results.sqlite)")
    return Store(Path(root) / "results.sqlite")


def stored_experiment(root: Path) -> Experiment:
    """The experiment a run directory was last run with."""
    latest = open_store(root).latest_run()
    if latest is None:
        raise CrosstaskError(f"{root}: the store holds no run yet")
    return parse_experiment(json.loads(latest["experiment"]), str(root))


def stored_base_dir(root: Path) -> Path:
    """The folder of the experiment file a run directory was last run from (its data paths resolve against it)."""
    latest = open_store(root).latest_run() or {}
    return Path(latest.get("base_dir") or ".")


def check_current(store: Store, the_plan: Plan, root: Path) -> None:
    """Fail in one line when the stored cells are not all those of the plan: missing ones (an unfinished
    run) or ones made with other settings (a run killed after its settings changed)."""
    stored = store.cells().set_index(["model", "target"])["key"].to_dict()
    missing, stale = [], []
    for job in the_plan.jobs:
        for cell in getattr(job, "cells", ()):
            key = stored.get((cell.model, job.target))
            if key is None:
                missing.append((cell.model, job.target))
            elif key != cell.key:
                stale.append((cell.model, job.target))
    if not (missing or stale):
        return
    total = sum(len(getattr(job, "cells", ())) for job in the_plan.jobs)
    parts = []
    if stale:
        parts.append(f"{len(stale)} of {total} cells were made with other settings than the run's "
                     f"(e.g. {stale[0][0]!r} on {stale[0][1]!r})")
    if missing:
        parts.append(f"{len(missing)} of {total} cells are missing (e.g. {missing[0][0]!r} on {missing[0][1]!r})")
    raise CrosstaskError(f"{root}: {' and '.join(parts)}; run `crosstask run` on its experiment again to bring "
                         "them up to date")


def current_plan(root: Path) -> Plan:
    """The plan of a run directory's stored settings, checked against its store."""
    the_plan = plan(stored_experiment(root), stored_base_dir(root), root)
    check_current(open_store(root), the_plan, root)
    return the_plan


def report(root: Path) -> Path:
    """Rebuild the tables and the report of a run directory from its store."""
    the_plan = current_plan(Path(root))
    return export(Path(root), open_store(root), the_plan.experiment)

"""The Python API: everything the CLI does, callable from a notebook.

>>> import crosstask
>>> crosstask.run("experiments/demo.yaml", out_dir="runs/demo")
>>> crosstask.load_matrix("runs/demo")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import pandas as pd

from . import pipeline
from .config import Experiment, TaskRef, load_experiment, parse_experiment, validate_settings
from .errors import CrosstaskError
from .files import save_table
from .progress import Reporter, reporting
from .store import Store
from .tasks.base import Example
from .tasks.catalog import list_families
from .tasks.data import build_examples, register_definitions, resolve
from .tasks.registry import TaskFamily

ExperimentLike = Union[str, Path, dict, Experiment]


def experiment(spec: ExperimentLike) -> Experiment:
    """An experiment from a YAML path, a dict of settings, or an :class:`Experiment`."""
    if isinstance(spec, Experiment):
        return spec
    if isinstance(spec, dict):
        return parse_experiment(spec)
    return load_experiment(spec)


def run(spec: ExperimentLike, out_dir: Optional[Union[str, Path]] = None, progress: bool = True,
        executor=None, device: Optional[str] = None, backend: Optional[str] = None,
        address: Optional[str] = None, replace: bool = False, seeds: Optional[list[int]] = None,
        data_dir: Optional[Union[str, Path]] = None) -> Path:
    """Run or resume an experiment; returns the path of ``report.html``.

    ``device``, ``backend`` and ``executor`` (a name such as "ray", or an executor object) override the
    experiment's settings; ``address`` is the Ray cluster to join ("auto", "ray://host:10001");
    ``seeds`` its training seeds; ``data_dir`` where local copies of datasets are (relative to the
    current directory).
    An ``out_dir`` holding another experiment's results is refused unless ``replace`` (which discards them).
    """
    parsed = with_overrides(experiment(spec), device=device, backend=backend, executor=executor, address=address)
    if seeds is not None:
        parsed = validate_settings(Experiment, parsed.model_dump() | {"seeds": list(seeds)}, "--seeds")
    if data_dir is not None:
        parsed = parsed.model_copy(update={"data_dir": str(Path(data_dir).resolve())})
    base_dir = Path(spec).parent if isinstance(spec, (str, Path)) else Path(".")
    out = Path(out_dir) if out_dir is not None else Path("runs") / parsed.name
    return pipeline.run(parsed, out, base_dir=base_dir, executor=None if isinstance(executor, (str, type(None)))
                        else executor, reporter=Reporter(enabled=progress), replace=replace)


def dry_run(spec: ExperimentLike, device: Optional[str] = None, backend: Optional[str] = None,
            seeds: Optional[list[int]] = None, data_dir: Optional[Union[str, Path]] = None) -> str:
    """Check an experiment as :func:`run` would (settings, data, model, LoRA modules, backend) and describe
    the jobs it would run, without running or writing anything."""
    parsed = with_overrides(experiment(spec), device=device, backend=backend)
    if seeds is not None:
        parsed = validate_settings(Experiment, parsed.model_dump() | {"seeds": list(seeds)}, "--seeds")
    if data_dir is not None:
        parsed = parsed.model_copy(update={"data_dir": str(Path(data_dir).resolve())})
    base_dir = Path(spec).parent if isinstance(spec, (str, Path)) else Path(".")
    parsed = pipeline.pin_data_dir(parsed, base_dir)
    return pipeline.describe(pipeline.plan(parsed, base_dir))


def with_overrides(settings, device: Optional[str] = None, backend: Optional[str] = None, executor=None,
                   address: Optional[str] = None):
    """The experiment (or mixing study) with command-line choices of device, backend and executor applied."""
    changes: dict = {}
    if device is not None:
        changes["device"] = device
    if backend is not None:
        changes["backend"] = {"name": backend}
    if isinstance(executor, str) or address is not None:
        current = settings.executor.model_dump()
        changes["executor"] = current | ({"name": executor} if isinstance(executor, str) else {}) \
            | ({"address": address} if address is not None else {})
    if not changes:
        return settings
    return validate_settings(type(settings), settings.model_dump() | changes, "command line")


def report(run_dir: Union[str, Path]) -> Path:
    """Rebuild matrix.csv, intervals.csv, traits.json and report.html from a run's store."""
    return pipeline.report(Path(run_dir))


def analyze(run_dir: Union[str, Path], only: Optional[list[str]] = None, progress: bool = True) -> Path:
    """Run the analyses (all, or those named in ``only``) into ``RUN_DIR/analysis/``; rebuild the report."""
    from .analysis.suite import analyze_run

    reporter = Reporter(enabled=progress)
    analyze_run(run_dir, only, on_start=lambda name: reporter.log(f"analysis: {name}"))
    return pipeline.report(Path(run_dir))


def heads(run_dir: Union[str, Path], models: Optional[list[str]] = None, tasks: Optional[list[str]] = None,
          n_items: Optional[int] = 32, batch_size: int = 8, mode: str = "abs", normalize: Optional[str] = None,
          complex_task: Optional[str] = None, basics: Optional[list[str]] = None, dynamics: Optional[str] = None,
          every: int = 5, progress: bool = True, executor=None, device: Optional[str] = None,
          address: Optional[str] = None):
    """Head activation patterns of a finished run, kept in its store and exported to ``RUN_DIR/heads/``.

    With ``models``/``tasks`` only those patterns are computed and their table (one row per pattern,
    with the .npy path) is returned. Otherwise every model × target is computed, the heads section
    (before/after, concentration, shared heads, and the combination of ``basics`` explaining
    ``complex_task`` if given) is added to the report, and the report's path is returned. ``dynamics``
    names a source whose adapter is retrained with a pattern snapshot every ``every`` steps.
    ``executor``, ``device`` and ``address`` override the run's settings, as in :func:`run`.
    """
    from .analysis.base import RunData
    from .analysis.suite import analyze_run
    from .heads.run import compute_run_patterns

    run_data = RunData(run_dir, device=device)
    chosen = executor if executor is not None and not isinstance(executor, str) else \
        pipeline.make_executor(with_overrides(run_data.experiment, executor=executor, address=address))
    with reporting(progress) as reporter:
        if models or tasks:
            return compute_run_patterns(run_data, models, tasks, n_items, batch_size, mode, normalize, reporter,
                                        chosen)
        options = {"n_items": n_items, "batch_size": batch_size, "mode": mode, "normalize": normalize,
                   "complex_task": complex_task, "basics": basics, "dynamics": dynamics, "every": every,
                   "progress": reporter, "executor": chosen}
        analyze_run(run_data, ["heads"], options={"heads": options})
    return pipeline.report(Path(run_dir))


def predict(run_dir: Union[str, Path], source: Union[str, dict, TaskRef]) -> pd.DataFrame:
    """Rank a finished run's targets by the predicted gain of an adapter trained on ``source`` (never trained).

    ``source`` is a task name, a source entry as in the YAML (``{"task": ..., "options": ...}``) or a TaskRef.
    The table is also written to ``RUN_DIR/analysis/predict_<name>.csv``.
    """
    from .analysis.base import RunData
    from .analysis.prediction import predict_new_source

    run = RunData(run_dir)
    ref = _source_ref(source, run.experiment)
    table = predict_new_source(run, ref)
    out = Path(run_dir) / "analysis"
    out.mkdir(exist_ok=True)
    save_table(table, out / f"predict_{ref.label}.csv", index=False, float_format="%.4f")
    return table


def export_lm_eval(run_dir: Union[str, Path], out: Union[str, Path]) -> Path:
    """Write every target of a finished run as lm-evaluation-harness task files into ``out``, with the
    exact prompts and items that were scored, and ``commands.sh`` to re-score each model with ``lm_eval``."""
    from .analysis.base import RunData
    from .lmeval import export_run

    run = RunData(run_dir)
    return export_run(run, Path(out), run.plan.dtype)


def _source_ref(source: Union[str, dict, TaskRef], experiment: Experiment) -> TaskRef:
    if isinstance(source, TaskRef):
        return source
    entry = {"task": source} if isinstance(source, str) else source
    # Validated as a source of this run's experiment, so bad keys fail with the usual one-line message.
    settings = experiment.model_dump(mode="json", exclude_none=True) | {"sources": [entry]}
    ref = parse_experiment(settings, "source").source_refs[0]
    register_definitions(experiment.tasks)
    resolve(ref).options(ref.options)
    return ref


def mix(study: Union[str, Path, dict], out_dir: Optional[Union[str, Path]] = None, progress: bool = True,
        executor=None, device: Optional[str] = None, address: Optional[str] = None):
    """Run (or resume) a pattern-guided mixing study (:mod:`crosstask.mixing`); returns a ``MixingOutcome``.

    ``study`` is a YAML path or a dict of settings; ``out_dir`` defaults to ``runs/<name>``. Writes
    mixing.csv, alpha.csv, mixing.png, summary.json, the adapters and ``results.sqlite`` there.
    ``executor``, ``device`` and ``address`` override the study's settings, as in :func:`run`.
    """
    from .mixing import load_mixing_study, run_mixing

    parsed = with_overrides(load_mixing_study(study), device=device, executor=executor, address=address)
    out = Path(out_dir) if out_dir is not None else Path("runs") / parsed.name
    return run_mixing(parsed, out, progress=progress,
                      executor=None if isinstance(executor, (str, type(None))) else executor)


def tasks() -> list[TaskFamily]:
    return list_families()


def example(task: str, seed: int = 0, data_dir: Optional[Union[str, Path]] = None) -> Example:
    """One example of a registered task with its default options."""
    return sample(task, 1, seed, data_dir=data_dir)[0]


def _store(run_dir: Union[str, Path]) -> Store:
    path = Path(run_dir) / "results.sqlite"
    if not path.is_file():
        raise CrosstaskError(f"{run_dir} is not a crosstask run directory (no results.sqlite)")
    return Store(path)


def load_matrix(run_dir: Union[str, Path]) -> pd.DataFrame:
    """The transfer matrix: rows 'base' then one per source adapter, columns the targets."""
    return pd.read_csv(Path(run_dir) / "matrix.csv", index_col="model")


def load_items(run_dir: Union[str, Path]) -> pd.DataFrame:
    """Every evaluated item: prompt, gold, prediction, correct, log-likelihoods, generated text."""
    return _store(run_dir).items(parse_logliks=True)


def load_cells(run_dir: Union[str, Path]) -> pd.DataFrame:
    return _store(run_dir).cells()


def load_traits(run_dir: Union[str, Path]) -> dict:
    return json.loads((Path(run_dir) / "traits.json").read_text())


def sample(task: str, n: int, seed: int = 0, split: str = "train", data_dir: Optional[Union[str, Path]] = None,
           **options) -> list[Example]:
    """Examples of a registered task, e.g. ``sample("word_problems", 5, solution_style="verbose")``; a catalogue
    task reads ``data_dir`` (default: CROSSTASK_DATA_DIR), else the Hugging Face hub or its cache."""
    return build_examples(TaskRef(task=task, options=options), split, n, seed,
                          data_dir=Path(data_dir) if data_dir is not None else None)


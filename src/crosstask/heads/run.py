"""Activation patterns for every model × target of a finished run, written to ``RUN_DIR/heads/``.

The base model is loaded once and adapters are switched on it (:class:`crosstask.jobs.EvalSession`,
as evaluation does). Each pattern is keyed in ``heads/index.json`` by the model, the adapter, the
exact examples and the settings, so a second call does no work and a changed setting recomputes
only what it affects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Optional, Union

import pandas as pd

from ..analysis.base import RunData
from ..errors import CrosstaskError
from ..jobs import BASE, EvalJob, EvalSession
from ..progress import Reporter
from ..tasks.data import examples_digest
from .patterns import Mode, Normalize, activation_pattern, pattern_stem, save_pattern, write_atomically

# Part of every pattern's content key: bump it when a change here would change the stored patterns.
HEADS_VERSION = 1
INDEX_NAME = "index.json"


class _AdapterFolders:
    """What :meth:`EvalSession.model_for` needs from a workspace: where an adapter lives.

    A full :class:`crosstask.jobs.Workspace` would also clear training scratch folders, which an
    analysis of a run directory must not touch.
    """

    def __init__(self, run: RunData):
        self.run = run

    def adapter_path(self, name: str) -> Path:
        return self.run.adapter_dir(name)


def compute_run_patterns(run_dir: Union[str, Path], models: Optional[Iterable[str]] = None,
                         tasks: Optional[Iterable[str]] = None, n_items: Optional[int] = None, batch_size: int = 8,
                         mode: Mode = "abs", normalize: Normalize = None,
                         progress: Union[bool, Reporter] = False) -> pd.DataFrame:
    """Compute (or reuse) the activation pattern of each model (``base``, adapters) on each target.

    ``n_items`` takes the first n eval examples of each target (default: all of them). Returns one
    row per model × task: ``model, task, items, mode, normalize, npy, csv, computed`` (``computed``
    is False when a stored pattern with the same key was reused). ``progress`` is a bool or a
    :class:`crosstask.progress.Reporter`.
    """
    run = RunData(run_dir)
    models = _choose(list(models) if models is not None else run.models, run.models, "model")
    tasks = _choose(list(tasks) if tasks is not None else run.targets, run.targets, "target")
    if n_items is not None and n_items < 1:
        raise CrosstaskError(f"n_items must be at least 1, got {n_items}")
    plan = run._plan
    jobs = {(job.model_name, job.target): job for job in plan.jobs if isinstance(job, EvalJob)}
    heads_dir = run.root / "heads"
    index = _read_index(heads_dir / INDEX_NAME)
    own_reporter = not isinstance(progress, Reporter)
    reporter = Reporter(enabled=bool(progress)) if own_reporter else progress
    # The base first: while no adapter has been loaded it is the plain model, not a PeftModel.
    pairs = [(model, task) for model in sorted(models, key=lambda name: name != BASE) for task in tasks]
    session, rows = None, []
    with (reporter if own_reporter else nullcontext()), \
            reporter.stage("head activation patterns", len(pairs)) as advance_stage:
        for model_name, task in pairs:
            job = jobs[(model_name, task)]
            examples = list(job.examples)[:n_items]
            stem = pattern_stem(model_name, task)
            key = _pattern_key(plan, job, examples, mode, normalize)
            entry = index.get(stem, {})
            done = entry.get("key") == key and all((heads_dir / f"{stem}{suffix}").is_file()
                                                   for suffix in (".npy", ".csv"))
            if not done:
                _check_adapter(run, job)
                session = session or EvalSession(plan.model, plan.dtype)
                started = time.perf_counter()
                with reporter.bar(f"  {model_name} on {task} (items)", len(examples)) as advance, \
                        _model_for(session, job, _AdapterFolders(run)) as model:
                    pattern = activation_pattern(model, session.tokenizer, job.spec, examples, batch_size,
                                                 mode, normalize, advance)
                save_pattern(pattern, run.root, model_name, task)
                entry = {"model": model_name, "task": task, "key": key, "items": len(examples), "mode": mode,
                         "normalize": normalize, "seconds": round(time.perf_counter() - started, 3)}
                index[stem] = entry
                write_atomically(heads_dir / INDEX_NAME, lambda stream: json.dump(index, stream, indent=2))
            rows.append({"model": model_name, "task": task, "items": entry["items"], "mode": mode,
                         "normalize": normalize, "npy": heads_dir / f"{stem}.npy", "csv": heads_dir / f"{stem}.csv",
                         "computed": not done})
            advance_stage(1)
    return pd.DataFrame(rows)


def _choose(wanted: list[str], known: list[str], what: str) -> list[str]:
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise CrosstaskError(f"no {what} named {unknown[0]!r} in this run; known: {', '.join(known)}")
    return list(dict.fromkeys(wanted))


def _pattern_key(plan, job: EvalJob, examples, mode: str, normalize: Optional[str]) -> str:
    from ..pipeline import content_key

    return content_key("heads", HEADS_VERSION, plan.model.key, plan.dtype, job.adapter_key or BASE,
                       examples_digest(job.spec, examples), mode, normalize)


def _read_index(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no index yet (or an unreadable one): everything is recomputed


def _check_adapter(run: RunData, job: EvalJob) -> None:
    if job.model_name == BASE:
        return
    trained = run.store.adapter_key(job.model_name) == job.adapter_key
    if not trained or not (run.adapter_dir(job.model_name) / "adapter_model.safetensors").is_file():
        raise CrosstaskError(f"{run.root}: adapter {job.model_name!r} is missing or was trained with other "
                             "settings; finish the run first (crosstask run)")


@contextmanager
def _model_for(session: EvalSession, job: EvalJob, adapters: _AdapterFolders) -> Iterator:
    """The module to gate: the base (adapters disabled once a PeftModel exists) or base + adapter."""
    if job.model_name != BASE:
        yield session.model_for(job, adapters)
    elif session.peft_model is None:
        yield session.base
    else:
        # EvalSession's own base view is a callable wrapper, not a module the gates could hook.
        with session.peft_model.disable_adapter():
            yield session.peft_model

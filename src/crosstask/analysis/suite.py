"""``crosstask analyze``: run the registered analyses on a finished run and record their sections.

Analyses are looked up by name in a string-keyed registry (like lm-evaluation-harness tasks), so a
user can add one from their own code with :func:`register_analysis` without touching crosstask.
Each analysis writes into a scratch folder that is moved into ``RUN_DIR/analysis/`` only when it
finished, so an interrupted or failing analysis never leaves half a table behind. The sections are
recorded in ``analysis/sections.json`` together with the content keys of the cells they read; the
report shows them only while those keys still match (a rerun with changed settings marks them stale).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union

from ..errors import CrosstaskError
from .base import RunData, Section

Analysis = Callable[[RunData, Path], Section]

# name -> "module:function" (imported on first use: some analyses load spaCy or sentence-transformers)
_REGISTRY: dict[str, Union[str, Analysis]] = {
    "lengths": "crosstask.analysis.lengths:analyze",
    "labels": "crosstask.analysis.labels:analyze",
    "variants": "crosstask.analysis.variants:analyze",
    "similarity": "crosstask.analysis.similarity:analyze",
    "syntax": "crosstask.analysis.syntax:analyze",
    "asymmetry": "crosstask.analysis.asymmetry:analyze",
    "prediction": "crosstask.analysis.prediction:analyze",
    "heads": "crosstask.heads.section:analyze",
}
# Run by `crosstask analyze` without --only; head patterns cost a backward pass per batch of every
# model x target, so they run from `crosstask heads` (or --only heads) instead.
OPT_IN = {"heads"}
SECTIONS_FILE = "sections.json"


def register_analysis(name: str, analysis: Analysis) -> None:
    """Add (or replace) an analysis: ``analysis(run: RunData, out_dir: Path) -> Section``."""
    _REGISTRY[name] = analysis


def list_analyses() -> list[str]:
    return list(_REGISTRY)


def _load(name: str) -> Analysis:
    target = _REGISTRY[name]
    if callable(target):
        return target
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def cells_key(store, models: list[str], targets: list[str]) -> str:
    """A digest of the content keys of every cell the analyses read."""
    cells = store.cells()
    cells = cells[cells["model"].isin(models) & cells["target"].isin(targets)]
    keys = sorted(f"{row.model}/{row.target}/{row.key}" for row in cells.itertuples())
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]


def analyze_run(run_dir: Union[str, Path], only: Optional[list[str]] = None,
                on_start: Callable[[str], None] = lambda name: None,
                options: Optional[dict[str, dict]] = None) -> list[Section]:
    """Run the analyses named in ``only`` (default: all but the opt-in ones) and return every recorded section.

    ``options`` maps an analysis name to keyword arguments for it (e.g. ``{"heads": {"n_items": 16}}``).
    """
    names = only or [name for name in _REGISTRY if name not in OPT_IN]
    unknown = [name for name in names if name not in _REGISTRY]
    if unknown:
        raise CrosstaskError(f"unknown analysis {unknown[0]!r}; known: {', '.join(_REGISTRY)}")
    run = RunData(run_dir)
    _ = run.matrix  # fail early, before any analysis, when the run is unfinished
    out_dir = run.root / "analysis"
    out_dir.mkdir(exist_ok=True)
    key = cells_key(run.store, run.models, run.targets)
    recorded = read_sections(run.root, key)
    for name in names:
        on_start(name)
        scratch = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".partial-{name}-"))
        try:
            section = _load(name)(run, scratch, **(options or {}).get(name, {}))
            recorded[name] = _move_into(section, scratch, out_dir)
        except CrosstaskError:
            raise
        except Exception as error:
            raise CrosstaskError(f"analysis {name!r} failed: {type(error).__name__}: {error}") from error
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        _write_sections(out_dir, key, recorded)
    return [recorded[name] for name in _REGISTRY if name in recorded]


def _move_into(section: Section, scratch: Path, out_dir: Path) -> Section:
    for produced in scratch.iterdir():
        os.replace(produced, out_dir / produced.name)
    return Section.from_dict(section.to_dict(), out_dir)


def _write_sections(out_dir: Path, key: str, sections: dict[str, Section]) -> None:
    payload = {"cells_key": key, "sections": [section.to_dict() for section in sections.values()]}
    partial = out_dir / f".{SECTIONS_FILE}.partial"
    partial.write_text(json.dumps(payload, indent=2))
    os.replace(partial, out_dir / SECTIONS_FILE)


def read_sections(root: Path, key: str) -> dict[str, Section]:
    """The recorded sections of a run whose cells still have content digest ``key`` (else none: they are stale)."""
    path = Path(root) / "analysis" / SECTIONS_FILE
    if not path.is_file():
        return {}
    payload = json.loads(path.read_text())
    if payload.get("cells_key") != key:
        return {}
    return {entry["name"]: Section.from_dict(entry, path.parent) for entry in payload["sections"]}

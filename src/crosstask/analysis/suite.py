"""``crosstask analyze``: run the registered analyses on a finished run and record their sections.

Analyses are looked up by name in a string-keyed registry (like lm-evaluation-harness tasks), so a
user can add one from their own code with :func:`register_analysis` without touching crosstask.
Each analysis writes into a scratch folder that is moved into ``RUN_DIR/analysis/`` only when it
finished, so an interrupted or failing analysis never leaves half a table behind. The sections are
recorded in ``analysis/sections.json`` together with the content keys of the cells they read; the
report shows them only while those keys still match (a rerun with changed settings marks them stale).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union

from ..errors import CrosstaskError
from ..plugins import Registry
from ..sections import Section, cells_key, read_sections, write_sections
from .base import RunData

Analysis = Callable[[RunData, Path], Section]

# Imported on first use: some analyses load spaCy or sentence-transformers.
ANALYSES = Registry("analysis", {
    "lengths": "crosstask.analysis.lengths:analyze",
    "labels": "crosstask.analysis.labels:analyze",
    "variants": "crosstask.analysis.variants:analyze",
    "similarity": "crosstask.analysis.similarity:analyze",
    "syntax": "crosstask.analysis.syntax:analyze",
    "asymmetry": "crosstask.analysis.asymmetry:analyze",
    "prediction": "crosstask.analysis.prediction:analyze",
    "heads": "crosstask.heads.section:analyze",
})
# Run by `crosstask analyze` without --only; head patterns cost a backward pass per batch of every
# model x target, so they run from `crosstask heads` (or --only heads) instead.
OPT_IN = {"heads"}


def register_analysis(name: str, analysis: Analysis) -> None:
    """Add (or replace) an analysis: ``analysis(run: RunData, out_dir: Path) -> Section``."""
    ANALYSES.register(name, analysis)


def list_analyses() -> list[str]:
    return ANALYSES.names()


def analyze_run(run_dir: Union[str, Path, RunData], only: Optional[list[str]] = None,
                on_start: Callable[[str], None] = lambda name: None,
                options: Optional[dict[str, dict]] = None) -> list[Section]:
    """Run the analyses named in ``only`` (default: all but the opt-in ones) and return every recorded section.

    ``options`` maps an analysis name to keyword arguments for it (e.g. ``{"heads": {"n_items": 16}}``).
    """
    names = only or [name for name in ANALYSES.names() if name not in OPT_IN]
    for name in names:
        ANALYSES.get(name)  # an unknown name fails here, before any analysis runs
    run = RunData.of(run_dir)
    _ = run.matrix  # fail early, before any analysis, when the run is unfinished
    out_dir = run.root / "analysis"
    out_dir.mkdir(exist_ok=True)
    key = cells_key(run.store.cells(), run.evaluated_models, run.targets)
    recorded = read_sections(run.root, key)
    for name in names:
        on_start(name)
        scratch = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".partial-{name}-"))
        try:
            section = ANALYSES.get(name)(run, scratch, **(options or {}).get(name, {}))
            recorded[name] = _move_into(section, scratch, out_dir)
        except CrosstaskError:
            raise
        except Exception as error:
            raise CrosstaskError(f"analysis {name!r} failed: {type(error).__name__}: {error}") from error
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        write_sections(out_dir, key, recorded)
    return [recorded[name] for name in ANALYSES.names() if name in recorded]


def _move_into(section: Section, scratch: Path, out_dir: Path) -> Section:
    for produced in scratch.iterdir():
        os.replace(produced, out_dir / produced.name)
    return Section.from_dict(section.to_dict(), out_dir)

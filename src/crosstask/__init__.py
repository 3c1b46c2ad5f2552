"""crosstask: fine-tune LoRA adapters on many sources, evaluate them on many targets, explain the transfer.

The names below are imported on first use, so that ``import crosstask`` (and ``crosstask --help``)
stays fast and does not load torch.
"""

from __future__ import annotations

import importlib

from .errors import CrosstaskError

__version__ = "0.1.0"
_LAZY = {
    "LatentTraits": "crosstask.analysis.traits", "paired_bootstrap": "crosstask.analysis.bootstrap",
    **{name: "crosstask.api" for name in ("example", "experiment", "load_cells", "load_items", "load_matrix",
                                          "load_traits", "report", "run", "sample", "tasks")},
}
__all__ = ["CrosstaskError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crosstask' has no attribute {name!r}")

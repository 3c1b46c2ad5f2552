"""crosstask: fine-tune LoRA adapters on many sources, evaluate them on many targets, explain the transfer."""

from .analysis import LatentTraits, paired_bootstrap
from .api import (
    example,
    experiment,
    load_cells,
    load_items,
    load_matrix,
    load_traits,
    report,
    run,
    sample,
    tasks,
)
from .errors import CrosstaskError

__version__ = "0.1.0"
__all__ = [
    "CrosstaskError", "LatentTraits", "example", "experiment", "load_cells", "load_items", "load_matrix",
    "load_traits", "paired_bootstrap", "report", "run", "sample", "tasks",
]

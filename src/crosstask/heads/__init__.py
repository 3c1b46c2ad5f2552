"""Attention-head activation patterns (paper 2): which heads a task uses, and how fine-tuning moves them.

* :class:`HeadGates` — multiplicative gates on every head's output (hooks on ``o_proj``'s input).
* :func:`activation_pattern` — the L×H first-order effect of each head on the answer loss, from one
  forward and backward pass per batch; :func:`ablation_effects` is the slow exact counterpart.
* :class:`PatternShift`, :func:`gini`, :func:`coefficient_of_variation`, :func:`top_heads`,
  :func:`pattern_correlation` — concentration and change of patterns.
* :class:`HeadCombination` — a complex task's pattern change as a combination of basic tasks' changes.
* :func:`compute_run_patterns` — every model × target of a finished run, into ``RUN_DIR/heads/``.
"""

from .combination import HeadCombination
from .compare import PatternShift, coefficient_of_variation, gini, pattern_correlation, top_heads
from .gates import HeadGates, find_attention_layout
from .patterns import ablation_effects, activation_pattern, load_pattern, save_pattern
from .run import compute_run_patterns

__all__ = [
    "HeadCombination", "HeadGates", "PatternShift", "ablation_effects", "activation_pattern",
    "coefficient_of_variation", "compute_run_patterns", "find_attention_layout", "gini", "load_pattern",
    "pattern_correlation", "save_pattern", "top_heads",
]

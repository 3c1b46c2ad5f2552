"""What identifies a stored result: the base model's row name and the content keys of all work.

Every adapter, cell and head pattern in a run's store carries the content key of the work that made
it: a hash of the model, the exact data and the settings, and the version of the code that computes
it. A second run skips work whose key is already stored; a changed setting re-runs only the work
whose key it changes. Bump a version when a change to that code would change what it stores.
"""

from __future__ import annotations

import hashlib
import json

BASE = "base"  # the base model's row in every matrix; never an adapter name

# 4: acc_norm divides by len(label), as lm-eval does (3 divided by len(" " + label)).
# 5: generation refills freed batch rows; a row is decoded beside other rows than before, which in bf16
#    can turn a near-tie (fp32: 100 of 100 GSM8K answers unchanged).
SCORING_VERSION = 5  # choice scoring and greedy generation (crosstask.evaluation and the backends)
# 3: an example longer than lora.max_length loses the start of its input, never the end of its answer.
# 4: a step's examples run packed into rows without padding, the instruction they share once per row;
#    the same loss and gradients up to float rounding (1e-6 relative in fp32), in another summation order.
# 5: a step packs only when each of its examples fits the model's sliding attention window (else padded
#    rows under the model's own masks); version 4 let longer examples attend past the window. Models
#    without a window (Llama, SmolLM2) train exactly as in version 4.
TRAINING_VERSION = 5  # LoRA training (crosstask.training)
HEADS_VERSION = 1  # activation patterns (crosstask.heads.patterns)


def content_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

"""One quick question to the Hugging Face hub, asked before a run writes anything.

transformers and datasets, offline or behind a dead endpoint, retry for ~25-50 s and then print a page
of traceback; crosstask asks once, with a short timeout, and turns the answer into one line.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Literal, Optional

HUB_PROBE_TIMEOUT = 5.0  # seconds: one request, no retries


class NotOnHub(LookupError):
    """The hub answered that it does not know this repository."""


def unreachable(kind: Literal["models", "datasets"], repo_id: str) -> Optional[str]:
    """None when the hub answers for ``repo_id`` (a gated or private one too: the user's token will be used);
    else why it cannot be asked. Raises NotOnHub, with a one-line reason, when the hub does not know it."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = f"{constants.ENDPOINT}/api/{kind}/{repo_id}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HUB_PROBE_TIMEOUT).close()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise NotOnHub(f"does not exist on {constants.ENDPOINT} (or is private: log in with `hf auth login`)") \
                from None
    except (urllib.error.URLError, OSError) as error:
        return f"{constants.ENDPOINT} is unreachable ({getattr(error, 'reason', error)})"
    return None

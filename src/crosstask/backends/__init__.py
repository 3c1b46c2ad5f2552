"""Model backends, registered by name: ``hf`` (transformers + PEFT, any device) and ``vllm`` (multi-LoRA engine).

Add your own with :func:`register_backend` (a :class:`~crosstask.backends.base.Backend` subclass, or
"module:Class" to import it on first use); experiments choose one with ``backend: NAME``.
"""

from __future__ import annotations

from ..errors import CrosstaskError
from ..plugins import Registry

# Imported on first use: the vllm backend needs vllm, which the default install does not have.
BACKENDS = Registry("backend", {
    "hf": "crosstask.backends.hf:HFBackend",
    "vllm": "crosstask.backends.vllm:VLLMBackend",
})
register_backend = BACKENDS.register
list_backends = BACKENDS.names
backend_class = BACKENDS.get


class BackendError(CrosstaskError):
    """Bad backend options, or a backend whose library is missing (shown to the user as one line)."""


def check_backend(name: str, options: dict) -> str:
    """The backend's version, after checking that it exists, is installed and takes these options."""
    cls = backend_class(name)
    try:
        cls.check_options(options)
    except ValueError as error:
        raise BackendError(f"backend {name!r}: {str(error).splitlines()[0]}") from None
    return cls.version()

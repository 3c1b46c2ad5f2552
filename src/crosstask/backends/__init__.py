"""Model backends, registered by name: ``hf`` (transformers + PEFT, any device) and ``vllm`` (multi-LoRA engine).

Add your own with :func:`register_backend` (a :class:`~crosstask.backends.base.Backend` subclass, or
"module:Class" to import it on first use); experiments choose one with ``backend: NAME``.
"""

from __future__ import annotations

import importlib
from typing import Union

from ..errors import CrosstaskError

# Imported on first use: the vllm backend needs vllm, which the default install does not have.
_REGISTRY: dict[str, Union[str, type]] = {
    "hf": "crosstask.backends.hf:HFBackend",
    "vllm": "crosstask.backends.vllm:VLLMBackend",
}


class BackendError(CrosstaskError):
    """An unknown backend or bad backend options (shown to the user as one line)."""


def register_backend(name: str, backend: Union[str, type]) -> None:
    _REGISTRY[name] = backend


def list_backends() -> list[str]:
    return list(_REGISTRY)


def backend_class(name: str):
    if name not in _REGISTRY:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(_REGISTRY)}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, attribute = target.split(":")
        target = getattr(importlib.import_module(module), attribute)
    return target


def check_backend(name: str, options: dict) -> str:
    """The backend's version, after checking that it exists, is installed and takes these options."""
    cls = backend_class(name)
    try:
        cls.check_options(options)
    except ValueError as error:
        raise BackendError(f"backend {name!r}: {str(error).splitlines()[0]}") from None
    return cls.version()

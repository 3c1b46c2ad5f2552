"""Executors, registered by name: ``local`` (this process) and ``ray`` (a local Ray instance or a cluster).

An executor receives jobs (:mod:`crosstask.jobs`) and yields their results; the driver commits each
one. Add your own with :func:`register_executor` (a class, or "module:Class" imported on first use).
"""

from __future__ import annotations

import importlib
from typing import Union

from ..errors import CrosstaskError

_REGISTRY: dict[str, Union[str, type]] = {
    "local": "crosstask.executors.local:LocalExecutor",
    "ray": "crosstask.executors.ray:RayExecutor",
}


def register_executor(name: str, executor: Union[str, type]) -> None:
    _REGISTRY[name] = executor


def executor_class(name: str):
    if name not in _REGISTRY:
        raise CrosstaskError(f"unknown executor {name!r}; known: {', '.join(_REGISTRY)}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, attribute = target.split(":")
        target = getattr(importlib.import_module(module), attribute)
    return target

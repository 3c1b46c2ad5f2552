"""Executors, registered by name: ``local`` (this process) and ``ray`` (a local Ray instance or a cluster).

An executor receives jobs (:mod:`crosstask.jobs`) and yields their results; the driver commits each
one. Add your own with :func:`register_executor` (a class, or "module:Class" imported on first use).
"""

from __future__ import annotations

from ..plugins import Registry

EXECUTORS = Registry("executor", {
    "local": "crosstask.executors.local:LocalExecutor",
    "ray": "crosstask.executors.ray:RayExecutor",
})
register_executor = EXECUTORS.register
executor_class = EXECUTORS.get

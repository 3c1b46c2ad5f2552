"""String-keyed registries (like lm-evaluation-harness's): backends, executors and analyses by name.

An entry is the object itself or ``"module:attribute"``, imported on first use, so that naming a
backend whose library is not installed (vLLM) costs nothing until it is chosen.
"""

from __future__ import annotations

import importlib
from typing import Any, Union

from .errors import CrosstaskError


class Registry:
    def __init__(self, what: str, entries: dict[str, Union[str, Any]]):
        self.what, self._entries = what, dict(entries)

    def register(self, name: str, entry: Union[str, Any]) -> None:
        """Add or replace ``name``: the object itself, or "module:attribute" to import on first use."""
        self._entries[name] = entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise CrosstaskError(f"unknown {self.what} {name!r}; known: {', '.join(self._entries)}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, attribute = entry.split(":")
            entry = getattr(importlib.import_module(module), attribute)
        return entry

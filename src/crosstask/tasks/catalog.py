"""Every task crosstask knows: the built-in families and the catalogue of real datasets, registered when this
module is imported, and the user's.

The built-in modules register themselves through :mod:`.registry`; looking a task up here guarantees
they have been imported, without the registry itself depending on them.
"""

from __future__ import annotations

from . import generators  # noqa: F401  (registers the built-in families)
from .base import TaskError
from .real import register_catalogue
from .registry import TaskFamily, registered

register_catalogue()


def get_family(name: str) -> TaskFamily:
    try:
        return registered()[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(registered()))}") from None


def list_families() -> list[TaskFamily]:
    families = registered()
    return [families[name] for name in sorted(families)]

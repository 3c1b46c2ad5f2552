"""The catalogue of real datasets: one YAML file per dataset in this folder, registered like the built-in tasks.

Each file is an lm-evaluation-harness-style task spec (a :class:`~crosstask.config.TaskDefinition`:
instruction, trigger, answer type, labels, extraction, and ``data``: the Hugging Face dataset id,
config, splits and field mapping) plus where it comes from (``dataset``, ``reference``, ``url``,
``license``, ``notes``). Prompts follow paper 1's layout, ``instruction\\ninput\\n<Trigger>:\\n<target>``
(``target_delimiter: "\\n"``). To add a dataset, copy the shortest file here (``imdb.yaml``).

Data come from the hub through ``datasets`` when it is reachable, or from a local copy: a ``data_dir``
setting (or ``CROSSTASK_DATA_DIR``) under which :func:`crosstask.tasks.loaders.local_copy` looks for the
dataset by its name, or an entry's own ``data: {path: FILE}``, which keeps the catalogue's field mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...config import DataSource, TaskDefinition, read_settings_file, validate_settings
from ..base import TaskError
from ..loaders import local_copy
from ..registry import TaskFamily, family_of, register_family

FOLDER = Path(__file__).parent


class CatalogueEntry(TaskDefinition):
    """A task definition that also says which public dataset it is and where that was checked."""

    dataset: str  # the dataset as paper 1 names it, e.g. "GSM8K"
    reference: str  # its paper
    url: str  # its page on the hub (where the id, splits and fields were read)
    license: str = "unknown"
    in_paper: bool = True  # one of paper 1's sources (else an extra, e.g. SST-2)
    as_target: bool = True  # False: a training source only (no automatic scorer); ``notes`` say why
    notes: str = ""  # subsets, substitutions: anything a user must know before citing numbers


def load_entry(path: Path) -> CatalogueEntry:
    return validate_settings(CatalogueEntry, read_settings_file(path, "catalogue entry"), str(path))


def entries() -> list[CatalogueEntry]:
    return [load_entry(path) for path in sorted(FOLDER.glob("*.yaml"))]


def register_catalogue() -> None:
    for entry in entries():
        about = entry.model_dump(include={"dataset", "reference", "url", "license", "in_paper", "as_target", "notes"})
        register_family(family_of(entry, about))


def availability(family: TaskFamily, data_dir: Optional[Path]) -> str:
    """Where a catalogue task's data would come from on this machine without network: a local copy, the
    Hugging Face cache, or nowhere."""
    source = DataSource(**family.data).resolved(family.spec.name)
    if data_dir is not None:
        local = local_copy(family.spec.name, source, data_dir)
        if local is not None and local.data_files:
            return "local copy: " + ", ".join(f"{split} split {file}" for split, file in local.data_files.items())
        if local is not None:
            return f"local copy: {local.path or local.hf_dataset}"
    if _in_hub_cache(source.hf_dataset):
        return "in the Hugging Face cache"
    return "not available offline (no local copy, not in the Hugging Face cache)"


def _in_hub_cache(dataset_id: str) -> bool:
    """Whether ``datasets`` or ``huggingface_hub`` has this dataset cached (either cache will do offline)."""
    import datasets.config
    from huggingface_hub import constants

    hub = Path(constants.HF_HUB_CACHE) / f"datasets--{dataset_id.replace('/', '--')}"
    prepared = Path(datasets.config.HF_DATASETS_CACHE) / dataset_id.replace("/", "___")
    return hub.is_dir() or prepared.is_dir()


__all__ = ["CatalogueEntry", "TaskError", "availability", "entries", "load_entry", "register_catalogue"]

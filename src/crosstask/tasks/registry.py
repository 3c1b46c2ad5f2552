"""String-keyed registry of task families, so users add tasks without touching core code.

Lookups go through :mod:`crosstask.tasks.catalog`, which registers the built-in families first.
A *family* couples a :class:`TaskSpec` with a way to make examples:

* built-in generators (deterministic for a seed), registered with :func:`register_generator`;
* file-backed tasks (JSONL/CSV/Parquet or a Hugging Face dataset), registered with
  :func:`register_task` from Python or declared in a YAML ``tasks:`` block.

Generators of ``choice`` tasks make one example *for a requested label*, so that label balance is
exact; generators of ``generate`` tasks make one example from their options. Every generator declares
a pydantic model of its own options (``extra="forbid"``), so a misspelt option fails with its name.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from pydantic import BaseModel, ConfigDict

from ..config import TaskDefinition
from .base import Example, TaskError, TaskSpec


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


ChoiceMaker = Callable[[random.Random, str, BaseModel], str]  # (rng, label, options) -> input text
GenerateMaker = Callable[[random.Random, BaseModel], Example]  # (rng, options) -> example


@dataclass(frozen=True)
class TaskFamily:
    spec: TaskSpec
    options_model: type[BaseModel] = NoOptions
    make_choice_input: Optional[ChoiceMaker] = None
    make_generate_example: Optional[GenerateMaker] = None
    data: Optional[dict] = None  # file-backed tasks: the DataSource settings (see tasks.loaders)
    about: Optional[dict] = None  # catalogue tasks: the dataset, its paper, url, licence and notes (tasks.real)

    @property
    def is_generator(self) -> bool:
        return self.data is None

    def options(self, raw: dict) -> BaseModel:
        try:
            return self.options_model(**raw)
        except Exception as error:  # pydantic.ValidationError, shown as one line
            raise TaskError(f"task {self.spec.name!r}: bad options: {_one_line(error)}") from None


_REGISTRY: dict[str, TaskFamily] = {}


def _one_line(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors()]
        return "; ".join(parts)
    return str(error).splitlines()[0]


def family_of(definition: TaskDefinition, about: Optional[dict] = None) -> TaskFamily:
    """The family a YAML task definition describes (an experiment's ``tasks:`` block, or a catalogue file)."""
    spec = TaskSpec(
        name=definition.name,
        instruction=definition.instruction,
        trigger=definition.trigger,
        answer_type=definition.answer_type,
        labels=tuple(definition.labels),
        extractor=definition.extractor,
        max_new_tokens=definition.max_new_tokens,
        stop=tuple(definition.stop),
        description=definition.description,
        label_meanings=dict(definition.label_meanings),
        answer_end=definition.answer_end,
        target_delimiter=definition.target_delimiter,
    )
    return TaskFamily(spec, data=definition.data.model_dump(exclude_none=True), about=about)


def register_family(family: TaskFamily, *, replace: bool = False) -> TaskFamily:
    name = family.spec.name
    if name in _REGISTRY and not replace:
        raise TaskError(f"task {name!r} is already registered")
    _REGISTRY[name] = family
    return family


def register_generator(spec: TaskSpec, options_model: type[BaseModel] = NoOptions):
    """Decorator for a built-in generator; choice tasks get ``(rng, label, options) -> input``,
    generate tasks get ``(rng, options) -> Example``."""

    def decorate(function):
        if spec.answer_type == "choice":
            family = TaskFamily(spec, options_model, make_choice_input=function)
        else:
            family = TaskFamily(spec, options_model, make_generate_example=function)
        register_family(family)
        return function

    return decorate


def registered() -> dict[str, TaskFamily]:
    """The families registered so far, by name (:mod:`crosstask.tasks.catalog` adds the built-in ones)."""
    return _REGISTRY

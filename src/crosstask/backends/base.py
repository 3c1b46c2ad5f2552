"""The interface every model backend implements, in the spirit of lm-evaluation-harness's ``LM``.

A backend holds one base model and any number of named LoRA adapters on it, on a device it owns. It
answers two kinds of plain-data requests (:mod:`crosstask.requests`): the summed log-likelihood of
each continuation of a choice item, and a greedy generation with stop rules. Each request names the
model that answers it (``None`` = the base model). The task renders the requests and scores the
answers (:mod:`crosstask.evaluation`); the backend sees nothing else of a task. Before each job the
run sets the backend's ``batch_size`` and ``generate_batch_size`` (the experiment's ``eval:`` settings);
a backend that schedules its own batches (vLLM) may ignore them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

from ..requests import ChoiceRequest, GenerateRequest, Generation

Progress = Callable[[int], None]  # called with the number of requests just answered


def no_progress(n: int) -> None:
    pass


class Backend(ABC):
    name: ClassVar[str]
    # True when one call answers requests of many models at once (vLLM routes a LoRA per request), so
    # the planner gives it every model of a target in one job; False: one job per model and target.
    mixes_models: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def version(cls) -> str:
        """Part of every cell's content key: changes when this backend could score differently."""

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Raise a one-line error for options this backend does not take (called before any work)."""
        if options:
            raise ValueError(f"backend {cls.name!r} takes no options, got {sorted(options)}")

    @classmethod
    def plan_options(cls, options: dict, lora_ranks: Sequence[int]) -> dict:
        """The options this backend runs a plan with, given the LoRA ranks of its adapters (e.g. to size
        an engine's LoRA slots); by default the options as given."""
        return options

    @property
    @abstractmethod
    def device(self) -> str:
        """Where the model runs, for the record (e.g. "cpu", "cuda:0")."""

    @abstractmethod
    def load_adapter(self, name: str, path: str) -> None:
        """Hold the PEFT adapter folder ``path`` under ``name``, replacing any adapter of that name."""

    @abstractmethod
    def unload_adapter(self, name: str) -> None:
        """Release adapter ``name`` and its memory; ``load_adapter`` brings it back."""

    @abstractmethod
    def adapters(self) -> list[str]:
        """The names of the adapters this backend holds."""

    @abstractmethod
    def loglikelihoods(self, requests: Sequence[ChoiceRequest], progress: Progress = no_progress
                       ) -> list[tuple[float, ...]]:
        """Per request, the summed log-likelihood of each continuation after the prompt, in order."""

    @abstractmethod
    def generate(self, requests: Sequence[GenerateRequest], progress: Progress = no_progress) -> list[Generation]:
        """Per request, the greedy continuation of the prompt cut at its stop rules."""

    def close(self) -> None:  # noqa: B027  (most backends have nothing to release)
        """Release the model (and any engine processes)."""

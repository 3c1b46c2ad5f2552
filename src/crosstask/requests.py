"""What a task asks of a model backend, and what it gets back: plain data, nothing of the task itself.

Like lm-evaluation-harness's ``Instance`` requests: a choice item asks for the summed log-likelihood
of each continuation after the prompt; a generate item asks for a greedy continuation that ends at a
stop string or where the answer is complete. ``model`` names the model that answers: ``None`` for the
base model, else the name of an adapter the backend holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ChoiceRequest:
    prompt: str
    continuations: tuple[str, ...]  # each scored after the prompt, e.g. (" positive", " negative")
    model: Optional[str] = None


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    max_new_tokens: int
    stop: tuple[str, ...] = ()  # the answer ends before the first of these
    answer_end: str = ""  # a regex: the answer ends right after its first match (e.g. "####\\s*\\S+\\n")
    model: Optional[str] = None

    def cut(self, text: str) -> str:
        return cut_at_stops(text, self.stop, self.answer_end)


@dataclass(frozen=True)
class Generation:
    text: str  # the generated text, cut at the first stop
    tokens: int  # its length in tokens


def cut_at_stops(text: str, stop: tuple[str, ...], answer_end: str = "") -> str:
    """``text`` up to the first stop string or the end of the first ``answer_end`` match, whichever is first."""
    ends = [text.find(marker) for marker in stop if marker in text]
    match = re.search(answer_end, text) if answer_end else None
    if match:
        ends.append(match.end())
    return text[: min(ends)] if ends else text

"""What a task is: a small spec (prompt template, answer type, metric) plus where examples come from.

A task renders every example in the plain-text format of paper 1:

    <instruction>
    <input>
    <trigger>:<space><target>

For ``choice`` tasks the target is one label of a fixed set and the model is scored by the
log-likelihood of each label after the prompt (lm-evaluation-harness ``multiple_choice``). For
``generate`` tasks the target is free text (e.g. a worked solution ending in ``#### 42``); the model
generates greedily, the task extracts the answer from the text, and its *checker* scores it: exact
match by default; the ``code`` family runs hidden unit tests on the extracted code instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..errors import CrosstaskError
from ..requests import cut_at_stops

AnswerType = Literal["choice", "generate"]
TARGET_DELIMITER = " "  # the default: lm-evaluation-harness's


class TaskError(CrosstaskError):
    """Bad task definition or data (shown to the user as one line)."""


@dataclass(frozen=True)
class Example:
    input: str
    target: str  # the text the model is trained to write after the trigger
    answer: str  # what the checker scores against: a label, e.g. the final number, or hidden unit tests


def extract_final_number(text: str) -> str:
    """The answer of a worked solution: the number after ``####``, else the last number in the text."""
    marked = re.search(r"####\s*(-?[\d,]*\.?\d+)", text)
    numbers = [marked.group(1)] if marked else re.findall(r"-?[\d,]*\.?\d+", text)
    if not numbers:
        return ""
    return normalize_number(numbers[-1])


def normalize_number(number: str) -> str:
    cleaned = number.replace(",", "").strip()
    if re.fullmatch(r"-?\d+\.0*", cleaned):
        cleaned = cleaned.split(".")[0]
    return cleaned


def first_line(text: str) -> str:
    return text.strip().split("\n")[0].strip()


NUMBER = r"-?[\d,]*\.?\d+"


def _clean_answer(answer: str) -> str:
    """An answer phrase without its closing full stop; a number in canonical form."""
    answer = answer.strip().rstrip(".").strip()
    return normalize_number(answer) if re.fullmatch(NUMBER, answer) else answer


def answer_is(text: str) -> str:
    """What follows the last "The answer is:" (MetaMathQA) or "So the answer is" (CoT rationales), to the line's end."""
    found = re.findall(r"answer is:?[ \t]*([^\n]*)", text, flags=re.IGNORECASE)
    return _clean_answer(found[-1]) if found else ""


def after_equals(text: str) -> str:
    """What follows the last "=" to the line's end: Goat's "5697 / 47 = 121 R 10" gives "121 R 10"."""
    found = re.findall(r"=[ \t]*([^\n=]*)", text)
    return _clean_answer(found[-1]) if found else ""


EXTRACTORS: dict[str, Callable[[str], str]] = {
    "final_number": extract_final_number,
    "first_line": first_line,
    "answer_is": answer_is,
    "after_equals": after_equals,
}


def exact_match(prediction: str, example: Example) -> bool:
    return prediction == example.answer


# How a generate task scores an extracted answer, (prediction, example) -> correct; the code family
# adds "unit_tests".
CHECKERS: dict[str, Callable[[str, Example], bool]] = {
    "exact": exact_match,
}


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to render, train and score a task; the examples come from ``source``."""

    name: str
    instruction: str
    trigger: str
    answer_type: AnswerType
    labels: tuple[str, ...] = ()
    extractor: str = "final_number"  # generate tasks: key of EXTRACTORS
    checker: str = "exact"  # generate tasks: key of CHECKERS
    max_new_tokens: int = 32
    stop: tuple[str, ...] = ("\n\n",)  # generate tasks: stop strings besides end-of-sequence
    answer_end: str = ""  # generate tasks: a regex that, once matched, ends the answer (e.g. "####\\s*\\S+\\n")
    description: str = ""
    # label -> meaning shared across tasks (e.g. sentiment_binary "positive" -> "positive")
    label_meanings: dict[str, str] = field(default_factory=dict)
    # between the prompt's "<trigger>:" and the target, as lm-eval's target_delimiter: " " (built-in tasks),
    # "\n" (paper 1's layout, used by the catalogue of real datasets)
    target_delimiter: str = TARGET_DELIMITER

    def __post_init__(self) -> None:
        if self.answer_type not in ("choice", "generate"):
            raise TaskError(f"task {self.name!r}: answer_type must be 'choice' or 'generate', got {self.answer_type!r}")
        if self.answer_type == "choice" and len(self.labels) < 2:
            raise TaskError(f"task {self.name!r}: a choice task needs at least two labels")
        if self.answer_type == "generate" and self.extractor not in EXTRACTORS:
            raise TaskError(f"task {self.name!r}: unknown extractor {self.extractor!r}; known: {sorted(EXTRACTORS)}")
        if self.answer_type == "generate" and self.checker not in CHECKERS:
            raise TaskError(f"task {self.name!r}: unknown checker {self.checker!r}; known: {sorted(CHECKERS)}")

    def prompt(self, example: Example) -> str:
        return f"{self.instruction}\n{example.input}\n{self.trigger}:"

    def completion(self, example: Example) -> str:
        return self.target_delimiter + example.target

    def extract(self, generated: str) -> str:
        return EXTRACTORS[self.extractor](generated)

    def check(self, generated: str, example: Example) -> bool:
        """Whether a generation answers ``example``: the checker applied to the extracted answer."""
        return CHECKERS[self.checker](self.extract(generated), example)

    def cut(self, generated: str) -> str:
        """The answer part of a generation: up to the first stop string or the end of the answer."""
        return cut_at_stops(generated, self.stop, self.answer_end)

    def validate(self, examples: list[Example], where: str) -> None:
        if not examples:
            raise TaskError(f"{where}: the dataset is empty")
        if self.answer_type == "choice":
            allowed = set(self.labels)
            for index, example in enumerate(examples):
                if example.answer not in allowed:
                    raise TaskError(
                        f"{where}: item {index} has label {example.answer!r}, not one of {list(self.labels)}"
                    )

"""Score models on a task through a backend: the task renders requests, the backend answers, the task scores.

Choice tasks follow lm-evaluation-harness ``multiple_choice``: the continuations are the task's target
delimiter (``" "``, or paper 1's ``"\\n"``) + label; ``acc`` picks the label with the highest summed
log-likelihood, ``acc_norm`` divides it by the label's length in characters, without the delimiter
(lm-eval: ``len(choice)`` in ``Task.process_results``), and breaks ties towards the first label as
``np.argmax`` does. Generate tasks are answered greedily; the task extracts the answer from the text
and its checker scores it (exact match unless the task says otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

from .backends.base import Backend, Progress, no_progress
from .requests import ChoiceRequest, GenerateRequest
from .tasks.base import Example, TaskSpec


@dataclass
class ItemResult:
    index: int
    prompt: str
    gold: str
    prediction: str
    correct: bool
    prediction_norm: Optional[str] = None  # choice: argmax of length-normalised log-likelihood
    correct_norm: Optional[bool] = None
    logliks: dict[str, float] = field(default_factory=dict)  # choice: label -> summed log-likelihood
    generated: Optional[str] = None  # generate: the text the model wrote
    generated_tokens: Optional[int] = None


def evaluate(backend: Backend, spec: TaskSpec, examples: Sequence[Example], models: Sequence[Optional[str]] = (None,),
             progress: Progress = no_progress) -> list[list[ItemResult]]:
    """Every item of ``examples`` scored for each of ``models`` (None: the base model) in one backend call;
    returns one list of results per model, in order."""
    prompts = [spec.prompt(example) for example in examples]
    if spec.answer_type == "choice":
        continuations = tuple(spec.target_delimiter + label for label in spec.labels)
        answers = backend.loglikelihoods(
            [ChoiceRequest(prompt, continuations, model) for model in models for prompt in prompts], progress)
        score = _choice_result
    else:
        answers = backend.generate(
            [GenerateRequest(prompt, spec.max_new_tokens, spec.stop, spec.answer_end, model)
             for model in models for prompt in prompts], progress)
        score = _generate_result
    n = len(examples)
    return [[score(spec, index, prompts[index], examples[index], answers[offset * n + index]) for index in range(n)]
            for offset in range(len(models))]


def _choice_result(spec: TaskSpec, index: int, prompt: str, example: Example, logliks) -> ItemResult:
    label_chars = [len(label) for label in spec.labels]
    best = spec.labels[max(range(len(logliks)), key=logliks.__getitem__)]
    normalised = [value / chars for value, chars in zip(logliks, label_chars)]
    best_norm = spec.labels[max(range(len(normalised)), key=normalised.__getitem__)]
    return ItemResult(index=index, prompt=prompt, gold=example.answer, prediction=best, correct=best == example.answer,
                      prediction_norm=best_norm, correct_norm=best_norm == example.answer,
                      logliks=dict(zip(spec.labels, logliks)))


def _generate_result(spec: TaskSpec, index: int, prompt: str, example: Example, generation) -> ItemResult:
    return ItemResult(index=index, prompt=prompt, gold=example.answer, prediction=spec.extract(generation.text),
                      correct=spec.check(generation.text, example), generated=generation.text,
                      generated_tokens=generation.tokens)

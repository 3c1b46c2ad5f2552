"""arithmetic_large: Goat-like. The target restates the equation, so the answer is its last number.

The shortest family: one options model, one generator. Copy it to add a ``generate`` task.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field, model_validator

from ..base import Example, TaskSpec
from ..registry import register_generator
from .text import Options, check_range, fill

OPERATION_WORDS = {"+": "plus", "-": "minus", "*": "times"}
ARITHMETIC_TEMPLATES = ("What is {a} {op} {b}?", "Calculate {a} {op} {b}.", "Compute {a} {op} {b}.",
                        "{a} {op} {b} = ?", "What is {a} {word} {b}?", "Work out {a} {op} {b}.",
                        "Solve {a}{op}{b}.", "Find the value of {a} {op} {b}.")


class ArithmeticOptions(Options):
    # Defaults: 2-4 digit addition and subtraction. The base demo model is at the floor for any digit
    # count (2 % for 3-6 digits with *, 9 % even for 1-2 digits), so the defaults aim at learnability:
    # 200 training items lift it from 2 % to about 19 % (1-3 digits: 6 % to 27 %).
    # Multiplication (add "*" to operations) and longer numbers remain available as harder variants.
    min_digits: int = Field(2, ge=1, le=18)
    max_digits: int = Field(4, ge=1, le=18)
    operations: tuple[Literal["+", "-", "*"], ...] = ("+", "-")
    max_multiplier_digits: int = Field(2, ge=1, le=18, description="digits of the shorter factor")

    @model_validator(mode="after")
    def _check(self):
        check_range(self.min_digits, self.max_digits, "digits")
        if not self.operations:
            raise ValueError("operations must name at least one of '+', '-', '*'")
        return self


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(max(2, 10 ** (digits - 1)), 10**digits - 1)  # no trivial 0 or 1 operands


@register_generator(
    TaskSpec(
        name="arithmetic_large",
        instruction="Solve the arithmetic problem and write the equation with its result.",
        trigger="Answer",
        answer_type="generate",
        max_new_tokens=32,  # a 4-digit target is about 15 SmolLM tokens, a 6-digit product about 24
        stop=("\n\n", "\n"),
        description="Goat-like multi-digit addition and subtraction (multiplication optional).",
    ),
    ArithmeticOptions,
)
def arithmetic_large(rng: random.Random, options: ArithmeticOptions) -> Example:
    op = rng.choice(options.operations)
    a = _number(rng, rng.randint(options.min_digits, options.max_digits))
    if op == "*":
        b = _number(rng, rng.randint(1, min(options.max_multiplier_digits, options.max_digits)))
        if rng.random() < 0.5:
            a, b = b, a
        result = a * b
    else:
        b = _number(rng, rng.randint(options.min_digits, options.max_digits))
        if op == "-" and b > a:  # keep results non-negative
            a, b = b, a
        result = a + b if op == "+" else a - b
    question = fill(rng, rng.choice(ARITHMETIC_TEMPLATES), a=a, b=b, op=op, word=OPERATION_WORDS[op])
    return Example(input=question, target=f"{a} {op} {b} = {result}", answer=str(result))

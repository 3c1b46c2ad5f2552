"""How crosstask tokenizes a prompt and its continuation, the same way for training, scoring and patterns.

The prompt is encoded alone (with the tokenizer's special tokens), the continuation (``" " + target``)
alone without them: the tokens a training example's loss covers are exactly those evaluation scores.
"""

from __future__ import annotations


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    return tokenizer(prompt)["input_ids"]


def encode_continuation(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]

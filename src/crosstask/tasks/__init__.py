"""Tasks: specs, the registry, built-in generators and real-data loaders."""

from . import (
    code,  # noqa: F401  (registers the code family, its extractor and its checker)
    composite,  # noqa: F401  (registers arithmetic_sentiment, a complex task built on two basic ones)
)
from .base import Example, TaskError, TaskSpec, extract_final_number
from .data import build_examples, register_definitions
from .registry import TaskFamily, get_family, list_families, register_family, register_generator

__all__ = [
    "Example", "TaskError", "TaskSpec", "TaskFamily", "extract_final_number", "build_examples",
    "register_definitions", "get_family", "list_families", "register_family", "register_generator",
]

"""Tasks: specs, the registry, built-in generators and real-data loaders."""

from .base import Example, TaskError, TaskSpec, extract_final_number
from .catalog import get_family, list_families
from .data import build_examples, register_definitions
from .registry import TaskFamily, register_family, register_generator

__all__ = [
    "Example", "TaskError", "TaskSpec", "TaskFamily", "extract_final_number", "build_examples",
    "register_definitions", "get_family", "list_families", "register_family", "register_generator",
]

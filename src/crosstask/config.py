"""The experiment file: one YAML, validated by pydantic so a bad key or value fails with its name."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import CrosstaskError


class ConfigError(CrosstaskError):
    """A bad experiment file (shown to the user as one line)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(Strict):
    """Where a file-backed task's examples come from, and how its fields map onto a task example.

    ``input`` and ``target`` are field names or ``str.format`` templates over the record's fields
    (``"Premise: {premise}\\nHypothesis: {hypothesis}"``). ``label_map`` maps raw values of a choice
    task's target field (e.g. ``0``/``1``) onto its labels.
    """

    path: Optional[str] = None  # local .jsonl / .json / .csv / .tsv / .parquet
    hf_dataset: Optional[str] = None  # a Hugging Face dataset name, loaded through `datasets`
    hf_config: Optional[str] = None
    train_split: str = "train"
    eval_split: str = "test"
    input: str
    target: str
    answer: Optional[str] = None  # field or template holding the canonical answer, if not derived from target
    label_map: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.path is None) == (self.hf_dataset is None):
            raise ValueError("give exactly one of 'path' or 'hf_dataset'")
        return self


class TaskDefinition(Strict):
    """A user task declared in YAML: a spec plus a data source (lm-evaluation-harness style)."""

    name: str
    answer_type: Literal["choice", "generate"]
    instruction: str
    trigger: str = "Answer"
    labels: list[str] = Field(default_factory=list)
    extractor: str = "final_number"
    max_new_tokens: int = Field(32, ge=1, le=4096)
    stop: list[str] = Field(default_factory=lambda: ["\n\n"])
    label_meanings: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    data: DataSource


class TaskRef(Strict):
    """One source or target entry: a registered task plus the options of this use of it."""

    task: str
    name: Optional[str] = None  # row/column label in the matrix; defaults to the task name
    examples: Optional[int] = Field(None, ge=1)  # overrides train_examples / eval_examples
    seed: Optional[int] = None  # overrides the experiment seed
    balance: Optional[dict[str, float]] = None  # label -> share, e.g. {positive: 0.9, negative: 0.1}
    noise: float = Field(0.0, ge=0.0, le=1.0)  # share of items whose label is replaced by a wrong one
    options: dict = Field(default_factory=dict)  # generator options (see `crosstask tasks`)
    data: Optional[DataSource] = None  # read this task's examples from a file instead

    @property
    def label(self) -> str:
        return self.name or self.task

    @field_validator("balance")
    @classmethod
    def _positive_shares(cls, balance):
        if balance is not None:
            if any(share < 0 for share in balance.values()) or sum(balance.values()) <= 0:
                raise ValueError("label shares must be non-negative and not all zero")
        return balance


class LoraSettings(Strict):
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    epochs: float = Field(1.0, gt=0)
    lr: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(256, ge=8)
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    scheduler: str = "cosine"
    weight_decay: float = Field(0.0, ge=0.0)


class EvalSettings(Strict):
    batch_size: int = Field(16, ge=1)
    bootstrap_resamples: int = Field(1000, ge=100)


class AnalysisSettings(Strict):
    n_components: Optional[int] = Field(None, ge=1)
    input: Literal["delta", "raw", "standardized"] = "delta"


class Experiment(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base_model: str = "smollm2-135m-instruct"
    sources: list[Union[str, TaskRef]] = Field(min_length=1)
    targets: list[Union[str, TaskRef]] = Field(min_length=1)
    train_examples: int = Field(200, ge=1)
    eval_examples: int = Field(100, ge=1)
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    tasks: list[TaskDefinition] = Field(default_factory=list)

    @field_validator("sources", "targets")
    @classmethod
    def _as_refs(cls, entries):
        refs = [TaskRef(task=entry) if isinstance(entry, str) else entry for entry in entries]
        labels = [ref.label for ref in refs]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"names must be unique; repeated: {duplicates} (give each a distinct 'name')")
        if "base" in labels:
            raise ValueError("'base' is reserved for the base model row; give the task another 'name'")
        return refs

    @property
    def source_refs(self) -> list[TaskRef]:
        return list(self.sources)  # type: ignore[arg-type]

    @property
    def target_refs(self) -> list[TaskRef]:
        return list(self.targets)  # type: ignore[arg-type]

    def compact_dump(self) -> dict:
        """The settings as a user would write them: plain task names where an entry has no options."""
        settings = self.model_dump(mode="json", exclude_none=True)
        for key, refs in (("sources", self.source_refs), ("targets", self.target_refs)):
            settings[key] = [ref.model_dump(mode="json", exclude_defaults=True) for ref in refs]
            settings[key] = [entry["task"] if list(entry) == ["task"] else entry for entry in settings[key]]
        return settings


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"] if not str(part).startswith(("str", "TaskRef")))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(dict.fromkeys(parts))


def parse_experiment(raw: dict, origin: str = "experiment") -> Experiment:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of settings at the top level")
    try:
        return Experiment(**raw)
    except ValidationError as error:
        raise ConfigError(f"{origin}: {_describe(error)}") from None


def load_experiment(path: Union[str, Path]) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(error, 'problem', error)}") from None
    return parse_experiment(raw, str(path))

"""The experiment file: one YAML, validated by pydantic so a bad key or value fails with its name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .devices import DEVICE_PATTERN
from .errors import CrosstaskError


class ConfigError(CrosstaskError):
    """A bad experiment file (shown to the user as one line)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(Strict):
    """Where a file-backed task's examples come from, and how its fields map onto a task example.

    Exactly one origin: ``path`` (one local file, a single split: the eval items are drawn first and
    training excludes them), ``data_files`` (one local file per split, read through ``datasets``) or
    ``hf_dataset`` (a Hugging Face dataset id, or a local dataset folder such as a downloaded hub
    snapshot, read with ``datasets.load_dataset``). Split names take ``datasets`` slices
    (``train[:20000]``): the documented subset of a large dataset.

    ``input`` and ``target`` are field names or ``str.format`` templates over the record's fields
    (``"Premise: {premise}\\nHypothesis: {hypothesis}"``). ``label_map`` maps raw values of a choice
    task's target field (e.g. ``0``/``1``) onto its labels.

    On a source or target entry, ``data`` may be partial: it overrides only what it sets on top of a
    catalogue task's own source (e.g. ``{path: gsm8k_test.jsonl}`` keeps the field mapping), so every
    field defaults to None, meaning "inherit"; :meth:`resolved` fills the defaults.
    """

    path: Optional[str] = None  # local .jsonl / .json / .csv / .tsv / .parquet
    data_files: Optional[dict[str, str]] = None  # split -> local file, e.g. {train: t.jsonl, test: e.jsonl}
    hf_dataset: Optional[str] = None  # a Hugging Face dataset id or a local dataset folder
    hf_config: Optional[str] = None
    train_split: Optional[str] = None  # default "train"
    eval_split: Optional[str] = None  # default "test"
    input: Optional[str] = None
    target: Optional[str] = None
    answer: Optional[str] = None  # field or template holding the canonical answer, if not derived from target
    label_map: Optional[dict[str, str]] = None
    # A numeric target field cut into labels: [[upper bound, label], ...], the first bound the value is below
    # (e.g. [[0.5, neutral], [.inf, toxic]] on a toxicity score); label_map then applies to the label.
    bins: Optional[list[tuple[float, str]]] = None
    input_chars: Optional[int] = Field(None, ge=1)  # cut the rendered input to this many characters
    # Sample examples from this many records of a split, drawn once at random (the same for every seed):
    # the documented subset of a large dataset, and a bound on what is read into memory.
    pool: Optional[int] = Field(None, ge=1)

    @model_validator(mode="after")
    def _at_most_one_origin(self):
        if len(self.origins()) > 1:
            raise ValueError("give only one of 'path', 'data_files' or 'hf_dataset'")
        return self

    def origins(self) -> list[str]:
        return [name for name in ("path", "data_files", "hf_dataset") if getattr(self, name) is not None]

    def over(self, base: Optional[DataSource]) -> DataSource:
        """This (partial) source on top of ``base``: what it sets wins; a new origin replaces the old one."""
        if base is None:
            return self
        mine = {name: value for name, value in self.model_dump().items() if value is not None}
        merged = base.model_dump()
        if self.origins():
            merged.update({"path": None, "data_files": None, "hf_dataset": None, "hf_config": None})
        return DataSource(**(merged | mine))

    def missing(self) -> str:
        """What a complete source still lacks, e.g. "input and target" ('' when nothing)."""
        missing = [name for name in ("input", "target") if getattr(self, name) is None]
        if not self.origins():
            missing.insert(0, "path, data_files or hf_dataset")
        return " and ".join(missing)

    def resolved(self, where: str) -> DataSource:
        """A complete source with defaults filled in; one-line ConfigError when origin or fields are missing."""
        if self.missing():
            raise ConfigError(f"{where}: data needs {self.missing()}")
        return self.model_copy(update={"train_split": self.train_split or "train",
                                       "eval_split": self.eval_split or "test", "label_map": self.label_map or {}})


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
    answer_end: str = ""  # generate: a regex that, once matched, ends the answer (e.g. "####\\s*\\S+\\n")
    target_delimiter: str = " "  # between "<trigger>:" and the target (paper 1's layout: "\n")
    label_meanings: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    data: DataSource

    @model_validator(mode="after")
    def _complete_data(self):
        if self.data.missing():
            raise ValueError(f"data needs {self.data.missing()}")
        return self


class TaskRef(Strict):
    """One source or target entry: a registered task plus the options of this use of it."""

    task: str
    name: Optional[str] = None  # row/column label in the matrix; defaults to the task name
    examples: Optional[int] = Field(None, ge=1)  # overrides train_examples / eval_examples
    seed: Optional[int] = None  # overrides the experiment seed
    # label -> share, e.g. {positive: 0.9, negative: 0.1}; "*" gives every unnamed label that share
    # ({positive: 0.9, "*": 0.1}); "uniform" means every label equally often
    balance: Optional[Union[Literal["uniform"], dict[str, float]]] = None
    noise: float = Field(0.0, ge=0.0, le=1.0)  # share of items whose label is replaced by a wrong one
    options: dict = Field(default_factory=dict)  # generator options (see `crosstask tasks`)
    data: Optional[DataSource] = None  # read this task's examples from a file instead
    # targets only: solved examples from the train split shown before every item (lm-eval num_fewshot)
    fewshot: int = Field(0, ge=0, le=32)
    # sources only: extra adapters trained on transformed copies of this source (see VARIANTS)
    variants: list[Union[str, dict[str, Any]]] = Field(default_factory=list)
    # sources only: LoRA settings that differ from the experiment's for this source, e.g. {epochs: 3}
    lora: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.task

    def expand(self) -> list[TaskRef]:
        """This source followed by one ref per variant, each named ``<label>+<variant>``."""
        plain = self.model_copy(update={"variants": []})
        return [plain, *(_variant(plain, entry) for entry in self.variants)]

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, variants):
        for entry in variants:
            name, _ = _variant_parts(entry)
            if name not in VARIANTS:
                raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        return variants

    @field_validator("lora")
    @classmethod
    def _known_lora_settings(cls, overrides):
        LoraSettings.model_validate(overrides)  # names the unknown key or the bad value
        return overrides

    @field_validator("balance")
    @classmethod
    def _positive_shares(cls, balance):
        if isinstance(balance, dict):
            if any(share < 0 for share in balance.values()) or sum(balance.values()) <= 0:
                raise ValueError("label shares must be non-negative and not all zero")
        return balance


REPLICATE_MARK = "@seed"

VARIANTS = {
    "balanced": "every label equally often",
    "imbalanced": "one label takes a share of the items, the others split the rest: {imbalanced: {positive: 0.9}}",
    "mislabeled": "a `fraction` of the items get a wrong label (seeded): {mislabeled: 0.3}",
    "subsample": "only `n` training items: {subsample: 50}",
}


def _variant_parts(entry: Union[str, dict]) -> tuple[str, Any]:
    if isinstance(entry, str):
        return entry, None
    if len(entry) != 1:
        raise ValueError(f"a variant is a name or a one-key mapping like {{mislabeled: 0.3}}, got {entry!r}")
    return next(iter(entry.items()))


def _variant(ref: TaskRef, entry: Union[str, dict]) -> TaskRef:
    """The TaskRef of one variant: the same task and seed with balance, noise or size changed."""
    name, value = _variant_parts(entry)
    where = f"variant {name!r} of {ref.label!r}"
    if name == "balanced":
        return ref.model_copy(update={"name": f"{ref.label}+balanced", "balance": "uniform"})
    if name == "imbalanced":
        if not isinstance(value, dict) or len(value) != 1:
            raise ConfigError(f"{where}: name the majority label and its share, e.g. {{imbalanced: {{positive: 0.9}}}}")
        (label, ratio), = value.items()
        if not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
            raise ConfigError(f"{where}: the share of {label!r} must be strictly between 0 and 1, got {ratio!r}")
        return ref.model_copy(update={"name": f"{ref.label}+imbalanced-{label}{ratio:g}",
                                      "balance": {str(label): float(ratio), "*": 1 - float(ratio)}})
    if name == "mislabeled":
        if not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ConfigError(f"{where}: the fraction must be a number in (0, 1], got {value!r}")
        return ref.model_copy(update={"name": f"{ref.label}+mislabeled{value:g}", "noise": float(value)})
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: n must be a positive whole number, got {value!r}")
    return ref.model_copy(update={"name": f"{ref.label}+subsample{value}", "examples": value})


class LoraSettings(Strict):
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    epochs: float = Field(1.0, gt=0)
    # At least this many optimizer steps: a small source is repeated for more epochs (150 examples in
    # batches of 8 are 19 steps an epoch); a large one is unaffected. null: exactly `epochs`.
    min_steps: Optional[int] = Field(100, ge=1)
    # "auto": 2e-4 x 4096 / the model's hidden size (see crosstask.models.auto_lr): QLoRA's rate for 7B
    # models, scaled inversely with width as Adam's rate for hidden matrices is under muP; 1.4e-3 for
    # SmolLM2-135M, 2.7e-4 for Llama-3.2-3B.
    lr: Union[Literal["auto"], float] = "auto"
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(256, ge=8)
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    warmup_steps: Optional[int] = Field(None, ge=0)  # a number of steps instead of a share (paper 1: 100)
    scheduler: str = "cosine"
    weight_decay: float = Field(0.0, ge=0.0)


    @field_validator("lr")
    @classmethod
    def _positive_rate(cls, lr):
        if lr != "auto" and lr <= 0:
            raise ValueError(f"lr must be positive or 'auto', got {lr}")
        return lr


class EvalSettings(Strict):
    batch_size: int = Field(16, ge=1)
    # Answers decoded together by generate targets (None: batch_size). A decoding step costs about as much
    # for many rows as for few on a CPU; prompts still run batch_size at a time.
    generate_batch_size: Optional[int] = Field(None, ge=1)
    # 10,000: a bootstrap p-value is at least 2/(resamples + 1), and Benjamini–Hochberg over ~50 cells
    # needs the strongest cell below 0.05/50 = 0.001 to mark anything.
    bootstrap_resamples: int = Field(10000, ge=100)


class BackendSettings(Strict):
    """Which model backend evaluates (``crosstask.backends``): ``hf`` (default) or ``vllm``, with its options."""

    name: str = "hf"
    options: dict[str, Any] = Field(default_factory=dict)


class ResourceRequest(Strict):
    """What one job asks of a Ray cluster (ignored by the local executor)."""

    num_cpus: float = Field(1, ge=0)
    num_gpus: float = Field(0, ge=0)
    custom: dict[str, float] = Field(default_factory=dict)  # Ray custom resources, e.g. {a100: 1}


class Resources(Strict):
    train: ResourceRequest = Field(default_factory=ResourceRequest)  # each training job (a Ray task)
    eval: ResourceRequest = Field(default_factory=ResourceRequest)  # each evaluation worker (a Ray actor)


class ExecutorSettings(Strict):
    """Where jobs run: ``local`` (this process) or ``ray`` (a local instance or a cluster)."""

    name: Literal["local", "ray"] = "local"
    address: Optional[str] = None  # ray: "auto" or "ray://host:10001"; none starts a local instance
    max_retries: int = Field(3, ge=0)  # a training task whose worker dies is run again this often
    max_restarts: int = Field(3, ge=0)  # an evaluation worker whose process dies is restarted this often
    eval_workers: Optional[int] = Field(None, ge=1)  # default: as many as the resources allow, at most one per job
    # False when workers do not see the driver's run directory: adapters then travel as bytes through Ray.
    shared_storage: bool = True


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
    seed: int = 0  # data sampling, and training when `seeds` is not given
    # Training seeds: every source adapter is trained once per seed (the data stay those of `seed`); the
    # matrix reports the mean and the intervals resample seeds, then items. E.g. [0, 1, 2].
    seeds: Optional[list[int]] = Field(None, min_length=1)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    device: str = Field("auto", pattern=DEVICE_PATTERN)  # auto | cpu | cuda | cuda:N
    backend: BackendSettings = Field(default_factory=BackendSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    resources: Resources = Field(default_factory=Resources)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    tasks: list[TaskDefinition] = Field(default_factory=list)
    # Local copies of catalogue datasets (crosstask tasks): relative to the YAML's folder; default: the
    # CROSSTASK_DATA_DIR environment variable
    data_dir: Optional[str] = None

    @field_validator("backend", "executor", mode="before")
    @classmethod
    def _name_alone(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @field_validator("sources", "targets")
    @classmethod
    def _as_refs(cls, entries, info):
        refs = [TaskRef(task=entry) if isinstance(entry, str) else entry for entry in entries]
        if info.field_name == "targets" and any(ref.variants for ref in refs):
            raise ValueError("variants make extra adapters and apply to sources only")
        if info.field_name == "sources" and any(ref.fewshot for ref in refs):
            raise ValueError("fewshot changes evaluation prompts and applies to targets only")
        if info.field_name == "targets" and any(ref.lora for ref in refs):
            raise ValueError("lora sets how an adapter trains and applies to sources only")
        labels = [expanded.label for ref in refs for expanded in ref.expand()]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"names must be unique; repeated: {duplicates} (give each a distinct 'name')")
        if "base" in labels:
            raise ValueError("'base' is reserved for the base model row; give the task another 'name'")
        if any(REPLICATE_MARK in label for label in labels):
            raise ValueError(f"names may not contain {REPLICATE_MARK!r}, which marks the adapters of further seeds")
        return refs

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds):
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    def replicates(self, ref: TaskRef) -> list[tuple[str, int]]:
        """(adapter name, training seed) of every adapter trained on source ``ref``, one per seed of
        ``seeds``. The first seed's adapter is named after the source (so adding seeds to a run keeps
        it), the others ``<source>@seed<s>``."""
        seeds = self.seeds or [self.seed if ref.seed is None else ref.seed]
        return [(ref.label if index == 0 else f"{ref.label}{REPLICATE_MARK}{seed}", seed)
                for index, seed in enumerate(seeds)]

    @property
    def source_refs(self) -> list[TaskRef]:
        """Every adapter to train: each source followed by its variants."""
        return [expanded for ref in self.sources for expanded in ref.expand()]  # type: ignore[union-attr]

    @property
    def target_refs(self) -> list[TaskRef]:
        return list(self.targets)  # type: ignore[arg-type]

    def lora_for(self, ref: TaskRef) -> LoraSettings:
        """The experiment's LoRA settings with this source's own ``lora`` entries on top."""
        return LoraSettings.model_validate({**self.lora.model_dump(), **ref.lora})

    def variant_pairs(self) -> list[tuple[str, str]]:
        """(source, variant) label pairs, e.g. ("sentiment_binary", "sentiment_binary+mislabeled0.3")."""
        return [(ref.label, variant.label) for ref in self.sources  # type: ignore[union-attr]
                for variant in ref.expand()[1:]]

    def compact_dump(self) -> dict:
        """The settings as a user would write them: plain task names where an entry has no options."""
        settings = self.model_dump(mode="json", exclude_none=True)
        for key, refs in (("sources", self.sources), ("targets", self.targets)):
            settings[key] = [ref.model_dump(mode="json", exclude_defaults=True) for ref in refs]
            settings[key] = [entry["task"] if list(entry) == ["task"] else entry for entry in settings[key]]
        for key in ("backend", "executor", "resources"):  # where and how it runs: only what differs from the default
            changed = getattr(self, key).model_dump(mode="json", exclude_defaults=True)
            if not changed:
                settings.pop(key)
            else:
                settings[key] = changed["name"] if list(changed) == ["name"] else changed
        return settings


def _describe(error: ValidationError) -> str:
    items = error.errors()
    # An entry written as a mapping fails both branches of `str | TaskRef`; the TaskRef errors say
    # what is wrong, "should be a valid string" only that it is not a plain task name.
    mapping_entries = {item["loc"][: item["loc"].index("TaskRef")] for item in items
                       if "TaskRef" in item["loc"] and item["loc"][-1] != "TaskRef"}
    items = [item for item in items
             if not (item["loc"][-1:] == ("str",) and item["loc"][:-1] in mapping_entries)]
    parts = []
    for item in items:
        location = ".".join(str(part) for part in item["loc"] if not str(part).startswith(("str", "TaskRef")))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(dict.fromkeys(parts))


SettingsT = TypeVar("SettingsT", bound=BaseModel)


def validate_settings(model: type[SettingsT], raw, origin: str) -> SettingsT:
    """``raw`` (a mapping, as read from YAML) validated as ``model``; bad input → one-line ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of settings at the top level")
    try:
        return model(**raw)
    except ValidationError as error:
        raise ConfigError(f"{origin}: {_describe(error)}") from None


def read_settings_file(path: Union[str, Path], what: str):
    """The parsed YAML of a settings file; a missing file or malformed YAML → one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(error, 'problem', error)}") from None


def parse_experiment(raw: dict, origin: str = "experiment") -> Experiment:
    return validate_settings(Experiment, raw, origin)


def load_experiment(path: Union[str, Path]) -> Experiment:
    return parse_experiment(read_settings_file(path, "experiment"), str(path))

"""Turn one source/target entry of an experiment into a list of examples, deterministically.

Train and eval sets of the same task never share an input: the pipeline builds eval sets first and
passes their inputs as ``exclude`` when it builds training sets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Optional, Union

from ..config import ConfigError, DataSource, TaskDefinition, TaskRef
from .base import TARGET_DELIMITER, Example, TaskError, TaskSpec
from .catalog import get_family
from .loaders import local_copy, local_names, read_records, records_to_examples
from .registry import TaskFamily, family_of, register_family

_MAX_TRIES_PER_EXAMPLE = 50


def register_definitions(definitions: Iterable[TaskDefinition]) -> None:
    """Register the tasks an experiment declares in its ``tasks:`` block."""
    for definition in definitions:
        register_family(family_of(definition), replace=True)


def resolve(ref: TaskRef) -> TaskFamily:
    return get_family(ref.task)


DATA_DIR_VARIABLE = "CROSSTASK_DATA_DIR"


def data_dir_of(setting: Optional[str], base_dir: Path = Path(".")) -> Optional[Path]:
    """Where local copies of datasets live: a ``data_dir`` setting (relative to ``base_dir``, the YAML's
    folder), else the ``CROSSTASK_DATA_DIR`` environment variable, else None."""
    chosen = setting or os.environ.get(DATA_DIR_VARIABLE)
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else base_dir / path


def data_source(ref: TaskRef, base_dir: Path = Path("."), data_dir: Optional[Path] = None) -> Optional[DataSource]:
    """Where ``ref``'s examples come from, resolved: None for a generator; else the task's own source with
    the entry's ``data`` on top. With a ``data_dir``, an entry's own relative ``path``/``data_files`` are
    read from it, and a hub dataset the entry does not override is pointed at the local copy found
    there under the task's name, if any."""
    family = resolve(ref)
    own = DataSource(**family.data) if family.data is not None else None
    source = ref.data.over(own) if ref.data is not None else own
    if source is None:
        return None
    where = f"task {ref.label!r}"
    try:
        source = source.resolved(where)
    except ConfigError as error:
        raise TaskError(str(error)) from None
    if data_dir is None:
        return source
    if ref.data is not None and ref.data.origins():  # the entry's own files, relative to data_dir
        return source.model_copy(update={
            "path": source.path and str(data_dir / source.path),
            "data_files": source.data_files and {split: str(data_dir / f) for split, f in source.data_files.items()}})
    if source.hf_dataset is None or (base_dir / source.hf_dataset).is_dir():
        return source  # a task's own local files: nothing to look up
    return local_copy(family.spec.name, source, data_dir) or source


def build_examples(
    ref: TaskRef,
    split: str,
    n: int,
    seed: int,
    exclude: frozenset[str] = frozenset(),
    base_dir: Path = Path("."),
    data_dir: Optional[Path] = None,
) -> list[Example]:
    """``n`` examples of ``ref``'s ``split``, deterministic for ``seed``; ``base_dir`` resolves relative data
    paths (the YAML's folder) and ``data_dir`` holds local copies of datasets (default: CROSSTASK_DATA_DIR)."""
    family = resolve(ref)
    spec = family.spec
    where = f"{split} data of {ref.label!r}"
    if ref.noise and spec.answer_type != "choice":
        raise TaskError(f"{where}: 'noise' (wrong labels) applies to choice tasks only")
    if ref.balance is not None:
        if spec.answer_type != "choice":
            raise TaskError(f"{where}: 'balance' applies to choice tasks only")
        unknown = sorted(set(ref.balance) - set(spec.labels) - {"*"}) if isinstance(ref.balance, dict) else []
        if unknown:
            raise TaskError(f"{where}: balance names unknown label {unknown[0]!r}; labels are {list(spec.labels)}")
    rng = random.Random(f"{ref.task}|{split}|{seed}")
    source = data_source(ref, base_dir, data_dir if data_dir is not None else data_dir_of(None))
    if source is None:
        examples = _generate(family, ref, rng, n, exclude, where)
    else:
        examples = _sample_file(family, ref, source, split, rng, n, exclude, base_dir, where)
    examples = _add_label_noise(examples, spec, ref.noise, rng)
    spec.validate(examples, where)
    return examples


def label_shares(labels: tuple[str, ...], balance: Union[None, str, dict[str, float]]) -> dict[str, float]:
    """Each label's share (summing to 1) under a ``balance`` setting: None or "uniform" → equal shares."""
    if not isinstance(balance, dict):
        return {label: 1 / len(labels) for label in labels}
    unnamed = [label for label in labels if label not in balance]
    weights = {label: balance.get(label, balance.get("*", 0.0) / max(len(unnamed), 1)) for label in labels}
    total = sum(weights.values())
    if total <= 0:
        raise TaskError(f"balance {balance} gives no weight to any of the labels {list(labels)}")
    return {label: weight / total for label, weight in weights.items()}


def _label_counts(labels: tuple[str, ...], balance: Union[None, str, dict[str, float]], n: int) -> dict[str, int]:
    """Exact per-label counts for n items (largest remainder), uniform when no balance is given."""
    shares = label_shares(labels, balance)
    total = sum(shares.values())
    raw = {label: n * shares.get(label, 0.0) / total for label in labels}
    counts = {label: int(value) for label, value in raw.items()}
    by_remainder = sorted(labels, key=lambda label: (raw[label] - counts[label], -labels.index(label)), reverse=True)
    for label in by_remainder[: n - sum(counts.values())]:
        counts[label] += 1
    return counts


def _generate(family: TaskFamily, ref: TaskRef, rng: random.Random, n: int, exclude, where: str) -> list[Example]:
    spec = family.spec
    options = family.options(ref.options)
    seen = set(exclude)
    if spec.answer_type == "choice":
        wanted = [label for label, count in _label_counts(spec.labels, ref.balance, n).items() for _ in range(count)]
        rng.shuffle(wanted)
    else:
        wanted = [None] * n
    examples = []
    for label in wanted:
        for _ in range(_MAX_TRIES_PER_EXAMPLE):
            if label is None:
                example = family.make_generate_example(rng, options)
            else:
                example = Example(input=family.make_choice_input(rng, label, options), target=label, answer=label)
            if example.input not in seen:
                break
        else:
            raise TaskError(f"{where}: the generator ran out of distinct items at {len(examples)} of {n}; "
                            "ask for fewer")
        seen.add(example.input)
        examples.append(example)
    return examples


def _sample_file(family, ref, source: DataSource, split, rng, n, exclude, base_dir, where) -> list[Example]:
    advice = (f"put a local copy under data_dir (or {DATA_DIR_VARIABLE}) as "
              f"{local_names(family.spec.name, source)}, or give the entry data: {{path: FILE}}")
    try:
        records = read_records(source, split, base_dir, advice)
    except TaskError as error:
        raise TaskError(f"{where}: {error}") from None
    pool = records_to_examples(records, source, family.spec, where)
    family.spec.validate(pool, where)
    pool = [example for example in dict.fromkeys(pool) if example.input not in exclude]
    rng.shuffle(pool)
    if ref.balance is None:
        chosen = pool[:n]
    else:
        chosen = []
        for label, count in _label_counts(family.spec.labels, ref.balance, n).items():
            of_label = [example for example in pool if example.answer == label]
            if len(of_label) < count:
                raise TaskError(f"{where}: asked for {count} items labelled {label!r}, the data has {len(of_label)}")
            chosen += of_label[:count]
        rng.shuffle(chosen)
    if len(chosen) < n:
        raise TaskError(f"{where}: asked for {n} items, the data has only {len(chosen)} usable ones")
    return chosen


def _add_label_noise(examples: list[Example], spec: TaskSpec, noise: float, rng: random.Random) -> list[Example]:
    if not noise:
        return examples
    noisy = list(examples)
    for index in rng.sample(range(len(noisy)), round(noise * len(noisy))):
        wrong = rng.choice([label for label in spec.labels if label != noisy[index].answer])
        noisy[index] = Example(input=noisy[index].input, target=wrong, answer=wrong)
    return noisy


def with_fewshot(spec: TaskSpec, shots: list[Example]) -> TaskSpec:
    """The spec whose prompts start with solved ``shots``, each separated by a blank line (lm-eval layout).

    The shots sit in front of the instruction, so every rendered prompt reads
    ``<shot 1 prompt> <answer>\n\n...<instruction>\n<input>\n<trigger>:`` and the content key of
    the evaluation changes with them.
    """
    if not shots:
        return spec
    context = "".join(spec.prompt(shot) + spec.completion(shot) + "\n\n" for shot in shots)
    return dataclasses.replace(spec, instruction=context + spec.instruction)


def examples_digest(spec: TaskSpec, examples: list[Example]) -> str:
    """Content hash of what a job sees: the rendered spec and every example."""
    payload = json.dumps(
        {
            "spec": [spec.instruction, spec.trigger, spec.answer_type, spec.labels, spec.extractor,
                     spec.max_new_tokens, spec.stop, spec.answer_end]
            # Only a non-default checker or delimiter joins the key, so the keys of existing runs stay valid.
            + ([spec.checker] if spec.checker != "exact" else [])
            + ([spec.target_delimiter] if spec.target_delimiter != TARGET_DELIMITER else []),
            "examples": [[example.input, example.target, example.answer] for example in examples],
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()

"""Real data: local JSONL/CSV/Parquet files, or Hugging Face datasets by name, mapped onto examples."""

from __future__ import annotations

import functools
import random
import string
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from .. import hub
from ..config import DataSource
from .base import Example, TaskError, TaskSpec

_READERS = {
    ".jsonl": lambda p: _pandas().read_json(p, lines=True, dtype=False),
    ".json": lambda p: _pandas().read_json(p, dtype=False),
    ".csv": lambda p: _pandas().read_csv(p, dtype=str, keep_default_na=False),
    ".tsv": lambda p: _pandas().read_csv(p, sep="\t", dtype=str, keep_default_na=False),
    ".parquet": lambda p: _pandas().read_parquet(p),
}


def _pandas():
    import pandas

    return pandas


FILE_TYPES = tuple(_READERS)
_DATASETS_BUILDERS = {".jsonl": ("json", {}), ".json": ("json", {}), ".csv": ("csv", {}),
                      ".tsv": ("csv", {"delimiter": "\t"}), ".parquet": ("parquet", {})}


def read_records(source: DataSource, split: str, base_dir: Path, advice: str = "") -> list[dict]:
    """The records of one split of a resolved source (at most ``source.pool`` of them, drawn once at random):
    a single local file has one split; per-split files, dataset folders and hub datasets have named ones
    (``train_split`` / ``eval_split``, slices allowed). ``advice`` ends the one-line error when a hub dataset
    is unavailable (how to point at a local copy)."""
    if source.path is not None:
        return _pooled(_read_file(_resolve(source.path, base_dir)), source.pool, Path(source.path).name)
    wanted = source.train_split if split == "train" else source.eval_split
    if source.data_files is not None:
        dataset = _read_split_files(source.data_files, wanted, base_dir)
    else:
        folder = _resolve(source.hf_dataset, base_dir)
        dataset = (_read_folder(folder, source.hf_config, wanted) if folder.is_dir()
                   else _read_hub(source, wanted, advice))
    return _pooled(dataset, source.pool, f"{source.hf_dataset or ''}|{source.hf_config or ''}|{wanted}")


def _pooled(records, pool: Optional[int], label: str) -> list[dict]:
    """Plain records, at most ``pool`` of them drawn at random (seeded by ``label``, not by the experiment:
    the pool is the dataset's documented subset). Works on lists and on ``datasets.Dataset`` without
    reading the records left out."""
    if pool is not None and len(records) > pool:
        chosen = sorted(random.Random(f"pool|{label}|{len(records)}").sample(range(len(records)), pool))
        records = records.select(chosen) if hasattr(records, "select") else [records[i] for i in chosen]
    return [dict(record) for record in records]


def split_name(split: str) -> str:
    """``train[:20000]`` -> ``train``: the split a ``datasets`` slice is taken from."""
    return split.split("[", 1)[0]


def _resolve(path: str, base_dir: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (base_dir / candidate)


def _read_file(path: Path) -> list[dict]:
    if not path.is_file():
        raise TaskError(f"data file not found: {path}")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise TaskError(f"{path}: unsupported data file type {path.suffix!r}; use one of {sorted(_READERS)}")
    try:
        frame = reader(path)
    except Exception as error:  # pandas raises many types for malformed files
        raise TaskError(f"{path}: cannot read as {path.suffix[1:]}: {str(error).splitlines()[0]}") from None
    return frame.to_dict(orient="records")


def _read_folder(folder: Path, config: Optional[str], split: str):
    """A local dataset folder. Hub layouts (``<config>/<split>-00000-of-00001.parquet``, ``data/<split>-...``)
    are read split by split, so a partial download or a README whose row counts no longer match does not
    matter; any other folder goes to ``datasets.load_dataset(folder)``, with the config only when the
    folder's README declares configs (a folder without them has just "default")."""
    name = split_name(split)
    for part in ([config] if config else []) + ["data"]:
        shards = sorted(p for p in (folder / part).glob(f"{name}-*") if p.suffix.lower() in _DATASETS_BUILDERS)
        if shards:
            builder, options = _DATASETS_BUILDERS[shards[0].suffix.lower()]
            return _load_dataset(builder, None, split, f"dataset folder {folder}",
                                 data_files={name: [str(path) for path in shards]}, **options)
    readme = folder / "README.md"
    declares_configs = readme.is_file() and "configs:" in readme.read_text(errors="replace")
    return _load_dataset(str(folder), config if declares_configs else None, split, f"dataset folder {folder}",
                         verification_mode="no_checks")


def _read_split_files(data_files: dict[str, str], split: str, base_dir: Path):
    name = split_name(split)
    if name not in data_files:
        raise TaskError(f"no file for split {name!r}; data_files has {sorted(data_files)}")
    path = _resolve(data_files[name], base_dir)
    if not path.is_file():
        raise TaskError(f"data file not found: {path}")
    if path.suffix.lower() not in _DATASETS_BUILDERS:
        raise TaskError(f"{path}: unsupported data file type {path.suffix!r}; use one of {sorted(_DATASETS_BUILDERS)}")
    builder, options = _DATASETS_BUILDERS[path.suffix.lower()]
    return _load_dataset(builder, None, split, str(path), data_files={name: str(path)}, **options)


def _load_dataset(name: str, config, split: str, what: Optional[str] = None, **options):
    """``datasets.load_dataset(name, config, split=split)``; any failure is one TaskError line."""
    import datasets

    datasets.disable_progress_bars()  # crosstask draws its own; theirs would interleave with ours
    try:
        return datasets.load_dataset(name, config, split=split, **options)
    except Exception as error:  # unknown split or config, malformed files: all surface as one line
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TaskError(f"cannot load {what or name!r} (split {split!r}): {reason}") from None


def _read_hub(source: DataSource, split: str, advice: str):
    """A hub dataset: from the network when the hub answers, else from the local cache only; one line if neither."""
    what = f"Hugging Face dataset {source.hf_dataset!r}"
    offline_reason = _hub_unreachable(source.hf_dataset)
    if offline_reason is None:
        return _load_dataset(source.hf_dataset, source.hf_config, split, what)
    try:
        with _cache_only():
            return _load_dataset(source.hf_dataset, source.hf_config, split, what)
    except TaskError:
        raise TaskError(f"{what} is not in the local cache and {offline_reason}"
                        + (f"; {advice}" if advice else "")) from None


@functools.lru_cache(maxsize=64)
def _hub_unreachable(dataset_id: str) -> Optional[str]:
    """None when the hub answers for this dataset; else why not (asked once per dataset and process)."""
    try:
        return hub.unreachable("datasets", dataset_id)
    except hub.NotOnHub as error:
        raise TaskError(f"dataset {dataset_id!r} {error}") from None


@contextmanager
def _cache_only() -> Iterator[None]:
    """``datasets`` and ``huggingface_hub`` in offline mode for one call: they read the flag at call time, and
    without it a hub that does not answer costs ~25 s of retries before the cache is even looked at."""
    import datasets.config
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def local_copy(name: str, source: DataSource, data_dir: Path) -> Optional[DataSource]:
    """``source`` pointed at a local copy of dataset ``name`` under ``data_dir``, if one is there:

    * ``<data_dir>/<name>/`` — a dataset folder (e.g. ``hf download ID --repo-type dataset --local-dir``, or
      files named by split), read with ``datasets.load_dataset(folder, hf_config)``;
    * ``<data_dir>/<name>_<split>.<ext>`` — one file per split (``validation`` may be spelled ``dev``);
    * ``<data_dir>/<name>.<ext>`` — one file for both: the eval items are drawn first, training excludes them.
    """
    folder = data_dir / name
    if folder.is_dir():
        return source.model_copy(update={"path": None, "data_files": None, "hf_dataset": str(folder)})
    files = {}
    for split in (source.train_split, source.eval_split):
        found = next((data_dir / f"{name}_{spelling}{suffix}" for spelling in _spellings(split_name(split))
                      for suffix in FILE_TYPES if (data_dir / f"{name}_{spelling}{suffix}").is_file()), None)
        if found is not None:
            files[split_name(split)] = str(found)
    if files:
        return source.model_copy(update={"path": None, "hf_dataset": None, "hf_config": None, "data_files": files})
    single = next((data_dir / f"{name}{suffix}" for suffix in FILE_TYPES if (data_dir / f"{name}{suffix}").is_file()),
                  None)
    if single is not None:
        return source.model_copy(update={"path": str(single), "data_files": None, "hf_dataset": None,
                                         "hf_config": None})
    return None


def local_names(name: str, source: DataSource) -> str:
    """Where :func:`local_copy` looks, for messages: ``gsm8k/, gsm8k_test.jsonl (.csv ...) or gsm8k.jsonl``."""
    splits = dict.fromkeys(split_name(split) for split in (source.train_split, source.eval_split))
    per_split = ", ".join(f"{name}_{split}.jsonl" for split in splits)
    return f"{name}/ (a dataset folder), {per_split} (or .csv, .tsv, .parquet, .json) or {name}.jsonl"


def _spellings(split: str) -> list[str]:
    """GLUE-style files call the validation split "dev" (dev.tsv, dev_matched.tsv)."""
    return [split, "dev" + split[len("validation"):]] if split.startswith("validation") else [split]


def _render(template: str, record: dict, where: str) -> str:
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    if not fields:  # a bare field name
        fields, template = [template], "{" + template + "}"
    missing = [name for name in fields if name not in record]
    if missing:
        raise TaskError(f"{where}: field {missing[0]!r} not in the data; fields are {sorted(record)}")
    return template.format(**{name: _as_text(record[name]) for name in fields})


def _bin(value: str, bins: list[tuple[float, str]], where: str) -> str:
    try:
        number = float(value)
    except ValueError:
        raise TaskError(f"{where}: bins need a numeric target, got {value!r}") from None
    for upper, label in bins:
        if number < upper:
            return label
    raise TaskError(f"{where}: {number} is not below any bin's upper bound ({[upper for upper, _ in bins]})")


def _as_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def records_to_examples(records: list[dict], source: DataSource, spec: TaskSpec, where: str) -> list[Example]:
    examples = []
    for record in records:
        text = _render(source.input, record, where)[: source.input_chars]
        target = _render(source.target, record, where)
        if spec.answer_type == "choice":
            if source.bins:
                target = _bin(target, source.bins, where)
            target = (source.label_map or {}).get(target, target)
            answer = target
        elif source.answer is not None:
            answer = _render(source.answer, record, where)
        else:
            answer = spec.extract(target)
        examples.append(Example(input=text, target=target, answer=answer))
    return examples

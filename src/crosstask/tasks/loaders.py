"""Real data: local JSONL/CSV/Parquet files, or Hugging Face datasets by name, mapped onto examples."""

from __future__ import annotations

import string
from pathlib import Path

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


def read_records(source: DataSource, split: str, base_dir: Path) -> list[dict]:
    """All records of one split: a local file has a single split; a hub dataset has named ones."""
    if source.path is not None:
        return _read_file(_resolve(source.path, base_dir))
    return _read_hub(source, source.train_split if split == "train" else source.eval_split)


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


def _read_hub(source: DataSource, split: str) -> list[dict]:
    try:
        import datasets

        dataset = datasets.load_dataset(source.hf_dataset, source.hf_config, split=split)
    except Exception as error:  # offline, unknown name or split: all surface as one line
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TaskError(
            f"cannot load Hugging Face dataset {source.hf_dataset!r} (split {split!r}): {reason}. "
            "Offline? Download it elsewhere and point the task at a local file with data.path"
        ) from None
    return [dict(record) for record in dataset]


def _render(template: str, record: dict, where: str) -> str:
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    if not fields:  # a bare field name
        fields, template = [template], "{" + template + "}"
    missing = [name for name in fields if name not in record]
    if missing:
        raise TaskError(f"{where}: field {missing[0]!r} not in the data; fields are {sorted(record)}")
    return template.format(**{name: _as_text(record[name]) for name in fields})


def _as_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def records_to_examples(records: list[dict], source: DataSource, spec: TaskSpec, where: str) -> list[Example]:
    examples = []
    for record in records:
        text = _render(source.input, record, where)
        target = _render(source.target, record, where)
        if spec.answer_type == "choice":
            target = source.label_map.get(target, target)
            answer = target
        elif source.answer is not None:
            answer = _render(source.answer, record, where)
        else:
            answer = spec.extract(target)
        examples.append(Example(input=text, target=target, answer=answer))
    return examples

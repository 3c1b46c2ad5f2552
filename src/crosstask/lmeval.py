"""A crosstask target as an lm-evaluation-harness task: the exact prompts and items, as local JSONL + YAML.

lm-eval then scores crosstask's adapters with ``lm_eval --model hf --model_args pretrained=...,peft=...
--include_path FOLDER --tasks NAME``. Choice targets become ``multiple_choice`` tasks (continuation
``" " + label``, as crosstask scores them); generate targets become ``generate_until`` tasks that stop
at the target's stop strings and take the final number (the ``final_number`` extractor: ``#### n`` if
present, else the last number) or the first line (``first_line``) before exact match, commas ignored.
A target whose answer ends on a pattern (word problems: ``#### n`` then a newline) cannot stop there
in lm-eval, which generates on to the next stop string: its ``#### n`` is still the answer taken (a
generation without ``####`` is wrong for lm-eval; crosstask takes its last number).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from .files import write_atomically
from .tasks.base import Example, TaskSpec

FINAL_NUMBER = r"-?[\d,]*\.?\d+"
MARKED_NUMBER = r"####\s*(-?[\d,]*\.?\d+)"


def write_task(folder: Path, name: str, spec: TaskSpec, examples: list[Example]) -> Path:
    """Write ``folder/NAME.jsonl`` (one record per item, prompt rendered) and ``folder/NAME.yaml``; returns the YAML."""
    folder = Path(folder)
    data = folder / f"{name}.jsonl"
    records = [{"prompt": spec.prompt(example), "answer": example.answer} for example in examples]
    if spec.answer_type == "choice":
        for record, example in zip(records, examples):
            record |= {"choices": list(spec.labels), "gold": spec.labels.index(example.answer)}
    write_atomically(data, "".join(json.dumps(record) + "\n" for record in records))
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
        "doc_to_text": "{{prompt}}",
    }
    if spec.answer_type == "choice":
        config |= {"output_type": "multiple_choice", "doc_to_choice": "choices", "doc_to_target": "gold",
                   "target_delimiter": spec.target_delimiter,
                   "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}
    else:
        config |= {"output_type": "generate_until", "doc_to_target": "answer", "target_delimiter": "",
                   "generation_kwargs": {"until": list(spec.stop), "max_gen_toks": spec.max_new_tokens,
                                         "do_sample": False},
                   "filter_list": [{"name": spec.extractor, "filter": _extraction(spec)}],
                   "metric_list": [{"metric": "exact_match", "regexes_to_ignore": [","]}]}
    return write_atomically(folder / f"{name}.yaml", yaml.safe_dump(config, sort_keys=False))


def _extraction(spec: TaskSpec) -> list[dict]:
    # fallback "": no match is an empty prediction, as crosstask's extractors return (lm-eval: "[invalid]")
    if spec.extractor == "first_line":
        return [{"function": "regex", "regex_pattern": r"^\s*([^\n]*?)\s*(?:\n|$)", "fallback": ""},
                {"function": "take_first"}]
    # The phrase extractors in lm-eval's regex filter: the last match's group, its closing full stop left out.
    phrases = {"answer_is": r"(?i)answer is:?[ \t]*([^\n]*?)\.?[ \t]*(?:\n|$)",
               "after_equals": r"=[ \t]*([^\n=]*?)\.?[ \t]*(?:\n|$)"}
    if spec.extractor in phrases:
        return [{"function": "regex", "regex_pattern": phrases[spec.extractor], "group_select": -1, "fallback": ""},
                {"function": "take_first"}]
    if spec.extractor != "final_number":
        raise ValueError(f"task {spec.name!r}: no lm-eval filter for extractor {spec.extractor!r}")
    pattern = MARKED_NUMBER if spec.answer_end else FINAL_NUMBER
    return [{"function": "regex", "regex_pattern": pattern, "group_select": -1, "fallback": ""},
            {"function": "take_first"}]


def task_name(target: str) -> str:
    """The lm-eval task name of a crosstask target (lm-eval task names are global: prefixed to stay apart)."""
    return "crosstask_" + re.sub(r"[^A-Za-z0-9_]", "_", target)


def export_run(run, out: Path, dtype: str) -> Path:
    """Every target of a finished run (a :class:`~crosstask.analysis.base.RunData`) as lm-eval tasks in ``out``,
    with the exact prompts (few-shot context included) and items that were scored, and ``commands.sh``
    with one ``lm_eval`` command per model (the base model, then each adapter through ``peft=``)."""
    out = Path(out)
    names = []
    for target in run.targets:
        write_task(out, task_name(target), run.evaluated_spec(target), run.eval_examples(target))
        names.append(task_name(target))
    base_args = f"pretrained={run.plan.model.location},dtype={dtype}"
    lines = ["#!/usr/bin/env bash", "# Re-score every model of this run with lm-evaluation-harness, on the exact items "
             "crosstask scored.", "set -euo pipefail", 'cd "$(dirname "$0")"']
    for model in run.evaluated_models:
        model_args = base_args if model == "base" else f"{base_args},peft={run.adapter_dir(model).resolve()}"
        lines.append(f"lm_eval --model hf --model_args {shlex.quote(model_args)} --include_path . "
                     f"--tasks {','.join(names)} --log_samples --output_path results/{shlex.quote(model)}")
    write_atomically(out / "commands.sh", "\n".join(lines) + "\n")
    return out

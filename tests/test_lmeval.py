"""crosstask targets written as lm-evaluation-harness tasks: lm-eval reads the same prompts, items and answers."""

import pytest

from crosstask.config import TaskRef
from crosstask.lmeval import write_task
from crosstask.tasks import build_examples, get_family

lm_eval_tasks = pytest.importorskip("lm_eval.tasks")
extraction = pytest.importorskip("lm_eval.filters.extraction")


def load_lm_eval_task(folder, name):
    return lm_eval_tasks.get_task_dict([name], lm_eval_tasks.TaskManager(include_path=str(folder)))[name]


@pytest.mark.parametrize("target", ["sentiment_3way", "arithmetic_large", "word_problems"])
def test_lm_eval_reads_the_prompts_and_answers_crosstask_scores(tmp_path, target):
    spec = get_family(target).spec
    examples = build_examples(TaskRef(task=target), "eval", 6, seed=0)
    write_task(tmp_path, f"ct_{target}", spec, examples)
    task = load_lm_eval_task(tmp_path, f"ct_{target}")
    docs = list(task.test_docs())
    assert [task.doc_to_text(doc) for doc in docs] == [spec.prompt(example) for example in examples]
    if spec.answer_type == "choice":
        assert task.OUTPUT_TYPE == "multiple_choice"
        assert [task.doc_to_choice(doc)[task.doc_to_target(doc)] for doc in docs] == [e.answer for e in examples]
    else:
        assert task.OUTPUT_TYPE == "generate_until"
        assert [task.doc_to_target(doc) for doc in docs] == [e.answer for e in examples]
        assert task.config.generation_kwargs["until"] == list(spec.stop)


GENERATIONS = [" 12 + 30 = 42\n", " The total is 1,250 apples, so 1250", " 3 * 4 = 12\n#### 12\n", " no number here", ""]


@pytest.mark.parametrize("target", ["arithmetic_large", "word_problems"])
def test_lm_eval_filter_extracts_what_crosstask_extracts(tmp_path, target):
    spec = get_family(target).spec
    write_task(tmp_path, f"ct_{target}", spec, build_examples(TaskRef(task=target), "eval", 2, seed=0))
    task = load_lm_eval_task(tmp_path, f"ct_{target}")
    (pipeline,) = task.config.filter_list
    regex = next(step for step in pipeline["filter"] if step["function"] == "regex")
    options = {key: value for key, value in regex.items() if key != "function"}
    found = extraction.RegexFilter(**options).apply([[text] for text in GENERATIONS], [{}] * len(GENERATIONS))
    for text, (value,) in zip(GENERATIONS, found):
        if spec.answer_end and "####" not in text:
            assert value == ""  # lm-eval cannot stop at the answer's end: an unmarked answer counts as wrong
        else:
            assert value.replace(",", "") == spec.extract(text), text

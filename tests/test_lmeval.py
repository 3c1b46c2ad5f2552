"""crosstask targets written as lm-evaluation-harness tasks: lm-eval reads the same prompts, items and answers."""

import pytest

from crosstask.config import TaskRef
from crosstask.lmeval import write_task
from crosstask.tasks import Example, build_examples, get_family

lm_eval_tasks = pytest.importorskip("lm_eval.tasks")
extraction = pytest.importorskip("lm_eval.filters.extraction")


def own_tasks(folder):
    """lm-eval's task index of ``folder`` alone: indexing lm-eval's own task zoo takes ~10 s a time
    (the export's end-to-end test below keeps it, as ``lm_eval --include_path`` does)."""
    return lm_eval_tasks.TaskManager(include_path=str(folder), include_defaults=False)


def load_lm_eval_task(folder, name):
    return own_tasks(folder).load([name])["tasks"][name]


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


PHRASES = {
    "goat": ["94140209 + 73 = 94140282", "5697 / 47 = 121 R 10\nTherefore, 5697 / 47 = 121 R 10.", "12 * 3 = 36\n\nmore",
             "no equals sign", "1,234 + 1 = 1,235"],
    "metamath": ["So 4 + 4 = 8.\nThe answer is: 8", "The answer is: \\frac{1}{2}", "The answer is 1,200.",
                 "nothing", "The answer is: 7\nThe answer is: 9"],
}


def test_lm_eval_reads_catalogue_tasks_as_crosstask_does(tmp_path):
    """Paper 1's newline delimiter, and the catalogue's phrase extractors as lm-eval regex filters."""
    data = tmp_path / "sst2.jsonl"
    data.write_text("".join(f'{{"sentence": "review number {i}", "label": {i % 2}}}\n' for i in range(6)))
    sst2 = get_family("sst2").spec
    examples = build_examples(TaskRef(task="sst2", data={"path": str(data)}), "eval", 6, seed=0)
    write_task(tmp_path, "ct_sst2", sst2, examples)
    for name in PHRASES:
        write_task(tmp_path, f"ct_{name}", get_family(name).spec, [Example("What is 1 + 1?", "1 + 1 = 2", "2")])
    names = ["ct_sst2", *(f"ct_{name}" for name in PHRASES)]
    tasks = own_tasks(tmp_path).load(names)["tasks"]

    task = tasks["ct_sst2"]
    assert task.config.target_delimiter == "\n" == sst2.target_delimiter
    assert [task.doc_to_text(doc) + task.config.target_delimiter + task.doc_to_choice(doc)[task.doc_to_target(doc)]
            for doc in task.test_docs()] == [sst2.prompt(e) + sst2.completion(e) for e in examples]
    for name, texts in PHRASES.items():
        spec = get_family(name).spec
        regex = next(step for step in tasks[f"ct_{name}"].config.filter_list[0]["filter"] if step["function"] == "regex")
        found = extraction.RegexFilter(**{k: v for k, v in regex.items() if k != "function"}).apply(
            [[text] for text in texts], [{}] * len(texts))
        for text, (value,) in zip(texts, found):
            assert value.replace(",", "") == spec.extract(text).replace(",", ""), (name, text)


def test_lm_eval_scores_the_exported_run_item_for_item(tiny_run, tiny_model_dir, tmp_path):
    """lm-eval, run on what `crosstask export-lm-eval` writes, agrees with the store on every item: acc,
    acc_norm (labels of different lengths), log-likelihoods, and the generated text."""
    import lm_eval

    from crosstask import api
    from crosstask.lmeval import task_name

    out = api.export_lm_eval(tiny_run, tmp_path / "lm-eval")
    commands = (out / "commands.sh").read_text()
    assert commands.count("lm_eval --model hf") == 4 and "peft=" in commands
    stored = api.load_items(tiny_run)
    targets = {"nli": "choice", "sentiment_3way": "choice", "word_problems": "generate"}
    assert len({len(label) for label in get_family("nli").spec.labels}) == 3
    task_manager = lm_eval_tasks.TaskManager(include_path=str(out))
    for model in ["base", "nli"]:
        model_args = f"pretrained={tiny_model_dir},dtype=float32"
        if model != "base":
            model_args += f",peft={tiny_run / 'adapters' / model}"
        output = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=[task_name(t) for t in targets],
                                         task_manager=task_manager,
                                         log_samples=True, device="cpu", batch_size=4, bootstrap_iters=0)
        for target, answer_type in targets.items():
            ours = stored[(stored["model"] == model) & (stored["target"] == target)].sort_values("item")
            samples = sorted(output["samples"][task_name(target)], key=lambda sample: sample["doc_id"])
            assert len(samples) == len(ours) == 8
            for sample, (_, item) in zip(samples, ours.iterrows()):
                if answer_type == "choice":
                    assert sample["acc"] == float(item["correct"]), (model, target, item["item"])
                    assert sample["acc_norm"] == float(item["correct_norm"]), (model, target, item["item"])
                    lm_eval_logliks = [float(response[0]) for response in sample["filtered_resps"]]
                    ours_logliks = list(item["logliks"].values())
                    assert lm_eval_logliks == pytest.approx(ours_logliks, abs=3e-4)
                else:
                    assert sample["resps"][0][0] == item["generated"], (model, target, item["item"])


def test_acc_norm_is_lm_evals_on_labels_of_different_lengths(tmp_path):
    """crosstask's acc and acc_norm against lm-eval's own process_results, on the same log-likelihoods,
    with labels whose lengths differ enough that dividing by len(" " + label) would pick another label."""
    import numpy as np

    from crosstask.evaluation import _choice_result
    from crosstask.tasks.base import Example, TaskSpec

    spec = TaskSpec("norm", "Pick one.", "Answer", "choice", labels=("a", "bbbb", "neutral-ish"))
    examples = [Example(f"item {i}", spec.labels[i % 3], spec.labels[i % 3]) for i in range(60)]
    write_task(tmp_path, "ct_norm", spec, examples)
    task = load_lm_eval_task(tmp_path, "ct_norm")
    docs = list(task.test_docs())
    rng = np.random.default_rng(0)
    disagreements_with_delimiter_length = 0
    for index, (doc, example) in enumerate(zip(docs, examples)):
        logliks = list(-rng.uniform(0.5, 12.0, size=3))
        ours = _choice_result(spec, index, spec.prompt(example), example, logliks)
        theirs = task.process_results(doc, [(value, False) for value in logliks])
        assert (float(ours.correct), float(ours.correct_norm)) == (theirs["acc"], theirs["acc_norm"]), logliks
        with_delimiter = max(range(3), key=lambda k: logliks[k] / (1 + len(spec.labels[k])))
        disagreements_with_delimiter_length += spec.labels[with_delimiter] != ours.prediction_norm
    assert disagreements_with_delimiter_length > 0  # the items do tell the two normalisations apart

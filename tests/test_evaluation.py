import math

import pytest
import torch

from crosstask.backends import hf
from crosstask.backends.hf import HFBackend, shared_prefix
from crosstask.evaluation import evaluate
from crosstask.tasks.base import Example, TaskSpec

SPEC = TaskSpec("toy", "Pick one.", "Answer", "choice", labels=("yes", "no", "not sure at all"))
EXAMPLES = [Example(f"Question number {i} with {'some ' * i}padding?", "yes", "yes") for i in range(5)]


def score_choice(model, tokenizer, spec, examples, batch_size):
    return evaluate(HFBackend.wrap(model, tokenizer, batch_size), spec, examples)[0]


generate_answers = score_choice  # the task's answer type picks scoring or generation


def _naive_loglik(model, tokenizer, prompt: str, continuation: str) -> float:
    prompt_ids = tokenizer(prompt)["input_ids"]
    continuation_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + continuation_ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    return sum(logprobs[len(prompt_ids) - 1 + j, token].item() for j, token in enumerate(continuation_ids))


LABEL_SETS = {
    "one multi-token label": ("yes", "no", "not sure at all"),
    "a common first token": ("1", "2", "3", "4", "5"),  # " 1" ... " 5" all start with the space token
    "a common word, several longer labels": ("very good", "very bad", "very very good", "very"),
    "single tokens": ("yes", "no"),
}


@pytest.mark.parametrize("labels", LABEL_SETS.values(), ids=LABEL_SETS.keys())
@pytest.mark.parametrize("shared_prompt_prefix", [False, True], ids=["no prefix cache", "prefix cache"])
def test_choice_scores_equal_one_sequence_at_a_time(tiny_model, monkeypatch, labels, shared_prompt_prefix):
    model, tokenizer = tiny_model
    spec = TaskSpec("toy", "Pick one of these answers, please, after reading the question.", "Answer", "choice",
                    labels=labels)
    monkeypatch.setattr(hf, "MIN_SHARED_PREFIX", 4 if shared_prompt_prefix else 10**9)
    results = score_choice(model, tokenizer, spec, EXAMPLES, batch_size=2)  # batches mix prompt lengths
    for example, result in zip(EXAMPLES, results):
        for label in spec.labels:
            expected = _naive_loglik(model, tokenizer, spec.prompt(example), " " + label)
            assert math.isclose(result.logliks[label], expected, abs_tol=3e-5)  # fp32: ~4e-6
        assert result.prediction == max(result.logliks, key=result.logliks.get)
        assert result.correct == (result.prediction == "yes")


def test_generation_is_batch_independent_and_cut_at_stops(tiny_model):
    model, tokenizer = tiny_model
    spec = TaskSpec("gen", "Compute.", "Answer", "generate", max_new_tokens=12, stop=("\n",))
    alone = [generate_answers(model, tokenizer, spec, [example], batch_size=1)[0] for example in EXAMPLES]
    batched = generate_answers(model, tokenizer, spec, EXAMPLES, batch_size=4)
    assert [r.generated for r in alone] == [r.generated for r in batched]
    for result in batched:
        assert "\n" not in result.generated
        assert result.generated_tokens == len(tokenizer(result.generated, add_special_tokens=False)["input_ids"])
        assert result.prediction == spec.extract(result.generated)


def test_shared_prefix_leaves_every_sequence_a_token_of_its_own():
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == [1, 2]
    assert shared_prefix([[1, 2, 3], [1, 2, 3, 4]]) == [1, 2]
    assert shared_prefix([[7, 8], [1, 2]]) == []


def test_a_long_shared_prefix_runs_once_and_changes_no_generation(tiny_model, monkeypatch):
    model, tokenizer = tiny_model
    shots = "".join(f"Example {i}: what comes after {i}? Answer: {i + 1}\n\n" for i in range(6))
    spec = TaskSpec("gen", shots + "Compute.", "Answer", "generate", max_new_tokens=10, stop=("\n",))
    prompt_ids = [tokenizer(spec.prompt(example))["input_ids"] for example in EXAMPLES]
    assert len(shared_prefix(prompt_ids)) >= hf.MIN_SHARED_PREFIX
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *args, **kwargs: calls.append(kwargs["input_ids"].shape) or
                        forward(*args, **kwargs))
    cached = generate_answers(model, tokenizer, spec, EXAMPLES, batch_size=2)
    assert calls[0][0] == 1 and calls[0][1] == len(shared_prefix(prompt_ids))  # the prefix, once
    assert all(shape[1] < calls[0][1] for shape in calls[1:])  # never again in a batch
    monkeypatch.setattr(hf, "MIN_SHARED_PREFIX", 10**9)
    plain = [generate_answers(model, tokenizer, spec, [example], batch_size=1)[0] for example in EXAMPLES]
    assert [r.generated for r in cached] == [r.generated for r in plain]


def test_answer_end_pattern_cuts_after_the_marked_answer():
    spec = TaskSpec("wp", "Solve.", "Answer", "generate", answer_end=r"####\s*-?[\d,.]+[^\n]*\n")
    assert spec.cut(" 3 + 4 = 7\n#### 7\nThe answer is 8") == " 3 + 4 = 7\n#### 7\n"
    assert spec.extract(spec.cut(" 3 + 4 = 7\n#### 7\nThe answer is 8")) == "7"
    assert spec.cut(" 3 + 4 = 7\n\nmore") == " 3 + 4 = 7"


def test_evaluate_dispatches_on_answer_type(tiny_model):
    backend = HFBackend.wrap(*tiny_model, batch_size=2)
    assert evaluate(backend, SPEC, EXAMPLES[:2])[0][0].logliks
    gen = TaskSpec("gen", "Compute.", "Answer", "generate", max_new_tokens=3)
    assert evaluate(backend, gen, EXAMPLES[:2])[0][0].generated is not None


def _random_adapter(model_dir, folder, seed: int) -> str:
    """A LoRA adapter with random (non-zero) weights on the tiny model, saved as PEFT files."""
    from peft import LoraConfig, get_peft_model

    from crosstask.models import load_model, resolve_model

    torch.manual_seed(seed)
    model = load_model(resolve_model(str(model_dir)), torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(folder)
    return str(folder)


def test_unloading_an_adapter_frees_it_and_leaves_the_others_and_the_base_unchanged(tiny_model_dir, tmp_path):
    from crosstask.models import resolve_model

    backend = HFBackend(resolve_model(str(tiny_model_dir)), "float32", "cpu", batch_size=4)
    first, second = (_random_adapter(tiny_model_dir, tmp_path / name, seed) for seed, name in enumerate("ab"))
    base_before = evaluate(backend, SPEC, EXAMPLES, [None])[0]
    backend.load_adapter("a", first)
    backend.load_adapter("b", second)
    a_before, b_before = evaluate(backend, SPEC, EXAMPLES, ["a", "b"])
    assert [r.logliks for r in a_before] != [r.logliks for r in b_before]  # the adapters differ

    backend.unload_adapter("b")
    assert backend.adapters() == ["a"]
    with pytest.raises(KeyError, match="'b' is not loaded"):
        evaluate(backend, SPEC, EXAMPLES, ["b"])
    assert [r.logliks for r in evaluate(backend, SPEC, EXAMPLES, ["a"])[0]] == [r.logliks for r in a_before]

    backend.unload_adapter("a")  # the last one: the plain base model is back, with no LoRA layers left
    assert backend.adapters() == [] and not any("lora" in name for name, _ in backend.base.named_modules())
    assert [r.logliks for r in evaluate(backend, SPEC, EXAMPLES, [None])[0]] == [r.logliks for r in base_before]
    backend.load_adapter("b", second)
    assert [r.logliks for r in evaluate(backend, SPEC, EXAMPLES, ["b"])[0]] == [r.logliks for r in b_before]

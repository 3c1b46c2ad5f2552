"""The built-in synthetic task families: deterministic, varied, valid labels, correct answers."""

from __future__ import annotations

import random
import re
import statistics

import pytest

from crosstask.tasks.base import Example, TaskError, extract_final_number
from crosstask.tasks.catalog import get_family, list_families

FAMILIES = ("sentiment_binary", "sentiment_3way", "rating_5star", "paraphrase", "nli", "toxicity",
            "arithmetic_large", "word_problems", "code")
CHOICE = [name for name in FAMILIES if get_family(name).spec.answer_type == "choice"]


def make(name: str, seed: int, n: int, **options) -> list[Example]:
    """n examples; choice tasks cycle through their labels so every label is exercised."""
    family = get_family(name)
    rng, parsed = random.Random(seed), family.options(options)
    if family.spec.answer_type == "generate":
        return [family.make_generate_example(rng, parsed) for _ in range(n)]
    labels = family.spec.labels
    return [Example(family.make_choice_input(rng, labels[i % len(labels)], parsed), labels[i % len(labels)],
                    labels[i % len(labels)]) for i in range(n)]


def test_all_families_registered():
    names = {family.spec.name for family in list_families()}
    assert set(FAMILIES) <= names
    for name in FAMILIES:
        spec = get_family(name).spec
        assert spec.instruction and spec.description
        if spec.answer_type == "generate":  # code may hold blank lines: its answer_end pattern ends it instead
            assert ("\n\n" in spec.stop or spec.answer_end) and spec.max_new_tokens >= 16
        else:
            assert set(spec.label_meanings) == set(spec.labels)


@pytest.mark.parametrize("name", FAMILIES)
def test_deterministic_for_a_seed(name):
    assert make(name, 7, 20) == make(name, 7, 20)
    assert [e.input for e in make(name, 7, 20)] != [e.input for e in make(name, 8, 20)]


@pytest.mark.parametrize("name", FAMILIES)
def test_varied_inputs(name):
    examples = make(name, 0, 300)
    assert len({e.input for e in examples}) >= 0.95 * len(examples)
    assert all(e.input.strip() and "\n\n" not in e.input for e in examples)


@pytest.mark.parametrize("name", CHOICE)
@pytest.mark.parametrize("hard_fraction", [0.0, 1.0])
def test_every_label_producible_and_valid(name, hard_fraction):
    family = get_family(name)
    examples = make(name, 1, 40 * len(family.spec.labels), hard_fraction=hard_fraction)
    family.spec.validate(examples, name)
    assert {e.answer for e in examples} == set(family.spec.labels)


@pytest.mark.parametrize("name", CHOICE)
def test_unknown_label_rejected(name):
    family = get_family(name)
    with pytest.raises(TaskError, match="no_such_label"):
        family.make_choice_input(random.Random(0), "no_such_label", family.options({}))


@pytest.mark.parametrize("name", FAMILIES)
def test_bad_option_name_raises(name):
    with pytest.raises(TaskError, match="no_such_option"):
        get_family(name).options({"no_such_option": 1})


@pytest.mark.parametrize("name, options", [
    ("sentiment_binary", {"min_sentences": 4, "max_sentences": 2}),
    ("toxicity", {"hard_fraction": 1.5}),
    ("arithmetic_large", {"operations": []}),
    ("arithmetic_large", {"operations": ["/"]}),
    ("word_problems", {"solution_style": "chatty"}),
    ("word_problems", {"min_steps": 3, "max_steps": 1}),
    ("code", {"solution_style": "chatty"}),
    ("code", {"type_hints": 1.5}),
])
def test_bad_option_values_raise(name, options):
    with pytest.raises(TaskError):
        get_family(name).options(options)


def _template_regex(templates) -> re.Pattern:
    """Matches any of ``templates`` with every {slot} filled by some text."""
    parts = [re.escape(template).replace(r"\{", "{").replace(r"\}", "}") for template in templates]
    return re.compile("|".join(re.sub(r"\{\w+\}", ".+", part) for part in parts), re.IGNORECASE)


def test_sentiment_reversals_follow_the_closing_verdict():
    from crosstask.tasks.generators.reviews import ADJECTIVES, MOVIES, REVERSAL_CONNECTORS, VERDICT_CONNECTORS

    examples = make("sentiment_binary", 11, 400, hard_fraction=1.0)
    reversals = 0
    for example in examples:
        sentences = re.split(r"(?<=[.!?]) ", example.input)
        connector = next((c for c in REVERSAL_CONNECTORS if sentences[-1].startswith(c + " ")), None)
        if connector is None:
            continue
        reversals += 1
        polarity = 1 if example.answer == "positive" else -1
        verdict = sentences[-1][len(connector) + 1:]
        closing = [*MOVIES.verdicts[polarity], *MOVIES.verdicts[2 * polarity], *MOVIES.implicit[polarity]]
        assert _template_regex(closing).fullmatch(verdict), example.input
        # every opinion before the verdict points the other way
        opposite = {word for stance in (-polarity, -2 * polarity) for word in ADJECTIVES[stance]}
        same = {word for stance in (polarity, 2 * polarity) for word in ADJECTIVES[stance]}
        body = " ".join(sentences[:-1])
        assert any(f" {word}" in body for word in opposite), example.input
        assert not any(re.search(rf"\b{re.escape(word)}[.,]", body) for word in same - opposite), example.input
    assert 0.3 * len(examples) <= reversals <= 0.7 * len(examples)
    # the default mixes easy and hard items; reversals stay a binary-sentiment device
    only_reversals = set(REVERSAL_CONNECTORS) - set(VERDICT_CONNECTORS)
    assert any(c in e.input for e in make("sentiment_binary", 12, 200) for c in only_reversals)
    assert not any(c in e.input for e in make("sentiment_3way", 12, 200, hard_fraction=1.0) for c in only_reversals)


def test_sentence_count_dial():
    short = make("sentiment_binary", 0, 100, min_sentences=2, max_sentences=2)
    long = make("sentiment_binary", 0, 100, min_sentences=5, max_sentences=5)
    assert statistics.mean(len(e.input) for e in short) < statistics.mean(len(e.input) for e in long)


@pytest.mark.parametrize("options", [{}, {"min_digits": 1, "max_digits": 2}, {"operations": ["*"], "max_digits": 9}])
def test_arithmetic_answers_are_correct(options):
    for example in make("arithmetic_large", 3, 300, **options):
        left, result = example.target.split(" = ")
        a, op, b = left.split(" ")
        assert op in "+-*" and a in example.input and b in example.input
        assert str(eval(left)) == result == example.answer
        assert int(result) >= 0
        assert extract_final_number(example.target) == example.answer


def test_arithmetic_operations_and_digits_dial():
    examples = make("arithmetic_large", 4, 200, operations=["-"], min_digits=4, max_digits=4)
    for example in examples:
        a, op, b = example.target.split(" = ")[0].split(" ")
        assert op == "-" and len(a) == len(b) == 4


@pytest.mark.parametrize("style", ["terse", "steps", "verbose"])
@pytest.mark.parametrize("steps", [(1, 1), (1, 3), (4, 5)])
def test_word_problem_answers(style, steps):
    examples = make("word_problems", 5, 200, solution_style=style, min_steps=steps[0], max_steps=steps[1])
    for example in examples:
        last_line = example.target.split("\n")[-1]
        assert last_line == f"#### {example.answer}"
        assert extract_final_number(example.target) == example.answer
        assert example.answer.isdigit()  # a non-negative integer
        assert example.input.endswith("?") and "\n\n" not in example.target
        # every equation in a worked solution is right, so the answer follows from the text
        for a, op, b, result in re.findall(r"\$?(\d+) ([-+*/]) \$?(\d+) = \$?(\d+)", example.target):
            assert eval(f"{a} {op} {b}") == int(result)


def test_word_problem_steps_dial_and_numbers_in_problem():
    for example in make("word_problems", 6, 100, min_steps=3, max_steps=3):
        lines = example.target.split("\n")
        assert 4 <= len(lines) <= 5  # (an opening line +) three steps + the answer
        first_number = re.search(r"\d+", example.input).group()
        assert first_number in example.target


def test_solution_style_orders_target_length():
    lengths = {style: statistics.mean(len(e.target) for e in make("word_problems", 9, 100, solution_style=style))
               for style in ("terse", "steps", "verbose")}
    assert lengths["terse"] < lengths["steps"] < lengths["verbose"]
    # the same seed gives the same problems whatever the style
    assert [e.input for e in make("word_problems", 9, 20, solution_style="terse")] == \
        [e.input for e in make("word_problems", 9, 20, solution_style="verbose")]


def test_rendered_prompt_shape():
    for name in FAMILIES:
        family = get_family(name)
        example = make(name, 2, 1)[0]
        prompt = family.spec.prompt(example)
        assert prompt.startswith(family.spec.instruction + "\n") and prompt.endswith(f"\n{family.spec.trigger}:")
        assert family.spec.completion(example) == " " + example.target


def test_paraphrase_negatives_swap_roles_or_change_one_fact():
    from crosstask.tasks.generators.pairs import TEAMS
    from crosstask.tasks.generators.text import NAMES, WORDS

    known = {name for name, _ in NAMES} | set(WORDS["city"]) | set(WORDS["weekday"]) | set(TEAMS)

    def facts(sentence: str) -> set[str]:
        return {word for word in re.findall(r"\w+", sentence) if word in known or word.isdigit()}

    def pairs(**options):
        for example in make("paraphrase", 13, 200, hard_fraction=0.0, **options):
            first, second = (line.split(": ", 1)[1] for line in example.input.split("\n"))
            yield example.answer, facts(first), facts(second)

    for _, first, second in pairs(altered_share=0.0):
        assert first == second  # rewordings and role swaps keep every name, place and number
    changed = [first != second for answer, first, second in pairs(altered_share=1.0) if answer == "no"]
    assert changed and all(changed)
    assert all(first == second for answer, first, second in pairs(altered_share=1.0) if answer == "yes")

"""word_problems: GSM8K-like. A problem is a chain of steps; each step knows its sentence in the story,
its line in a worked solution and a fuller explanation, so one chain renders in every solution style.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from ..base import Example, TaskSpec
from ..registry import register_generator
from .text import WORDS, Options, check_range, pick_fresh, pick_person
from .text import fill as fill_template  # the step makers' ``fill`` is the problem's _Writer


class WordProblemOptions(Options):
    # Defaults: one or two steps with amounts up to 10. The base demo model stays near the floor
    # whatever the size (1.5 % here, 5 % even for one step), but an adapter trained on 200 such problems
    # learns them (42 % after one epoch at lr 1e-3).
    min_steps: int = Field(1, ge=1, le=8)
    max_steps: int = Field(2, ge=1, le=8)
    solution_style: Literal["terse", "steps", "verbose"] = Field(
        "steps", description="terse: only '#### n'; steps: one line per step; verbose: full sentences")
    max_number: int = Field(10, ge=5, le=1000, description="largest starting amount or price")

    @model_validator(mode="after")
    def _range(self):
        check_range(self.min_steps, self.max_steps, "steps")
        return self


@dataclass(frozen=True)
class _Step:
    story: str  # sentence of the problem
    line: str  # line of a "steps" solution
    explain: str  # line of a "verbose" solution
    result: int  # the running amount after this step
    question: str = ""  # a step that changes what is asked (selling, change, sharing a bill) sets it
    counts: bool = True  # the opening "Tom has 3 apples." is not a step


OBJECTS = (  # plural, singular, container, containers, edible
    ("apples", "apple", "bag", "bags", True), ("marbles", "marble", "jar", "jars", False),
    ("stickers", "sticker", "sheet", "sheets", False), ("pencils", "pencil", "box", "boxes", False),
    ("cookies", "cookie", "tin", "tins", True), ("baseball cards", "baseball card", "pack", "packs", False),
    ("seashells", "seashell", "bucket", "buckets", False), ("stamps", "stamp", "envelope", "envelopes", False),
    ("cupcakes", "cupcake", "box", "boxes", True), ("balloons", "balloon", "pack", "packs", False),
    ("crayons", "crayon", "box", "boxes", False), ("toy cars", "toy car", "set", "sets", False),
    ("oranges", "orange", "crate", "crates", True), ("beads", "bead", "bag", "bags", False),
    ("comic books", "comic book", "bundle", "bundles", False), ("muffins", "muffin", "tray", "trays", True),
    ("plums", "plum", "bag", "bags", True), ("postcards", "postcard", "pack", "packs", False),
)
SHOP_ITEMS = ("notebooks", "pens", "sandwiches", "movie tickets", "bus tickets", "plants", "candles",
              "T-shirts", "comic books", "cupcakes", "pizzas", "footballs", "toy cars", "scarves", "mugs",
              "bottles of juice")
SINGLE_ITEMS = (("a", "backpack"), ("a", "hat"), ("an", "umbrella"), ("a", "board game"),
                ("a", "lunch box"), ("a", "phone case"), ("a", "lamp"), ("a", "water bottle"))


def _friends(count: int) -> str:
    return "a friend" if count == 1 else f"{count} friends"


class _Writer:
    """Fills templates with one problem's fields (people, objects) plus a step's numbers, and hands out
    shop items without repeats."""

    def __init__(self, rng: random.Random, fields: dict):
        self.rng, self.fields, self.used = rng, fields, []

    def __call__(self, template: str, **numbers) -> str:
        return fill_template(self.rng, template, **self.fields, **numbers)

    def fresh(self, pool: tuple):
        return pick_fresh(self.rng, pool, self.used)


# Each step maker: (rng, fill, amount, top) -> _Step, or None when it does not fit the amount;
# ``fill`` is the problem's _Writer.

def _gain(rng, fill, v, top):
    k = rng.randint(2, top)
    story, verb = rng.choice((("{He} buys {k} more {obj}.", "buys {k} more"),
                              ("{Friend} gives {him} {k} more {obj}.", "gets {k} from {friend}"),
                              ("{He} finds {k} more {obj}.", "finds {k} more")))
    numbers = {"k": k, "v": v, "r": v + k}
    return _Step(fill(story, **numbers), fill(f"{{He}} {verb}, so {{he}} has {{v}} + {{k}} = {{r}}.", **numbers),
                 fill(f"Then {{he}} {verb}. Getting more {{obj}} means adding, so {{v}} + {{k}} = {{r}}. "
                      "Now {he} has {r} {obj}.", **numbers), v + k)


def _loss(rng, fill, v, top):
    if v < 3:
        return None
    k = rng.randint(2, min(v - 1, top))
    story, verb = rng.choice((("{He} gives {k} {obj} to {friend}.", "gives {k} to {friend}"),
                              ("{He} gives {k} {obj} to {his} {relative}.", "gives {k} to {his} {relative}"),
                              ("{He} {uses} {k} of them.", "{uses} {k}")))
    numbers = {"k": k, "v": v, "r": v - k}
    return _Step(fill(story, **numbers), fill(f"{{He}} {verb}, so {{he}} has {{v}} - {{k}} = {{r}} left.", **numbers),
                 fill(f"Then {{he}} {verb}. Those {{obj}} are gone, so we subtract: {{v}} - {{k}} = {{r}}. "
                      "Now {he} has {r} {obj} left.", **numbers), v - k)


def _packs(rng, fill, v, top):
    g, k = rng.randint(2, 5), rng.randint(2, min(12, top))
    numbers = {"g": g, "k": k, "gk": g * k, "v": v, "r": v + g * k}
    story = rng.choice(("{He} buys {g} {boxes} of {obj} with {k} in each {box}.",
                        "{Friend} gives {him} {g} {boxes} with {k} {obj} in each."))
    return _Step(fill(story, **numbers),
                 fill("{g} {boxes} of {k} is {g} * {k} = {gk}, so {he} has {v} + {gk} = {r}.", **numbers),
                 fill("Then {he} gets {g} {boxes} with {k} {obj} in each. Equal groups mean multiplying: "
                      "{g} * {k} = {gk} {obj}. Adding them to the {v} {he} had gives {v} + {gk} = {r}.",
                      **numbers), v + g * k)


def _share(rng, fill, v, top):
    sizes = [k for k in (2, 3, 4, 5) if v % k == 0 and v // k >= 2]
    if not sizes:
        return None
    k = rng.choice(sizes)
    numbers = {"k": k, "v": v, "r": v // k, "friends": _friends(k - 1)}
    return _Step(fill("{He} shares them equally between {himself} and {friends}.", **numbers),
                 fill("{k} people share {v}, so each gets {v} / {k} = {r}.", **numbers),
                 fill("Then {he} shares the {obj} equally among {k} people, {himself} and {friends}. "
                      "Sharing equally means dividing: {v} / {k} = {r}. {He} keeps {r} {obj}.", **numbers),
                 v // k, question="How many {obj} does {name} keep?")


def _sell(rng, fill, v, top):
    p = rng.randint(2, min(10, top))
    numbers = {"p": p, "v": v, "r": v * p}
    return _Step(fill("{He} sells each {one} for ${p}.", **numbers), fill("{He} makes {v} * ${p} = ${r}.", **numbers),
                 fill("Finally, {he} sells all {v} {obj} at ${p} each. The money is the number sold times "
                      "the price: {v} * {p} = {r}. {He} makes ${r}.", **numbers),
                 v * p, question="How much money does {name} make?")


def _collection_start(rng, fill, top):
    v = rng.randint(2, 2 * top)
    story = rng.choice(("{Name} has {v} {obj}.", "At the start of the week, {name} has {v} {obj}."))
    return _Step(fill(story, v=v), fill("{Name} starts with {v} {obj}.", v=v),
                 fill("At the start, {name} has {v} {obj}.", v=v), v,
                 question="How many {obj} does {name} have now?", counts=False)


def _more_items(rng, fill, t, top):
    q, p = rng.randint(2, 6), rng.randint(2, top)
    numbers = {"q": q, "p": p, "c": q * p, "t": t, "r": t + q * p, "items": fill.fresh(SHOP_ITEMS)}
    return _Step(fill("{He} also buys {q} {items} for ${p} each.", **numbers),
                 fill("The {items} cost {q} * ${p} = ${c}, so the total is ${t} + ${c} = ${r}.", **numbers),
                 fill("Next, {he} buys {q} {items} at ${p} each, which costs {q} * {p} = {c}. Adding this "
                      "to the ${t} spent so far gives {t} + {c} = {r}.", **numbers), t + q * p)


def _single_item(rng, fill, t, top):
    (article, noun), p = fill.fresh(SINGLE_ITEMS), rng.randint(3, 2 * top)
    numbers = {"article": article, "noun": noun, "p": p, "t": t, "r": t + p}
    return _Step(fill("{He} also buys {article} {noun} for ${p}.", **numbers),
                 fill("Adding the {noun}, the total is ${t} + ${p} = ${r}.", **numbers),
                 fill("{He} also buys {article} {noun} for ${p}, so we add its price to the total: "
                      "{t} + {p} = {r}. The total is now ${r}.", **numbers), t + p)


def _change(rng, fill, t, top):
    bills = [bill for bill in (10, 20, 50, 100) if bill > t]
    if not bills:
        return None
    numbers = {"bill": rng.choice(bills), "t": t}
    numbers["r"] = numbers["bill"] - t
    return _Step(fill("{He} pays with a ${bill} bill.", **numbers),
                 fill("The change is ${bill} - ${t} = ${r}.", **numbers),
                 fill("{He} pays with a ${bill} bill, so the change is what is left after paying: "
                      "{bill} - {t} = {r}. {He} gets ${r} back.", **numbers),
                 numbers["r"], question="How much change does {name} get?")


def _split_bill(rng, fill, t, top):
    sizes = [k for k in (2, 3, 4) if t % k == 0]
    if not sizes:
        return None
    k = rng.choice(sizes)
    numbers = {"k": k, "t": t, "r": t // k, "friends": _friends(k - 1)}
    return _Step(fill("{He} splits the cost equally with {friends}.", **numbers),
                 fill("{k} people share ${t}, so each pays ${t} / {k} = ${r}.", **numbers),
                 fill("The cost is split equally among {k} people, {name} and {friends}. Splitting equally "
                      "means dividing: {t} / {k} = {r}. Each person pays ${r}.", **numbers),
                 t // k, question="How much does each person pay?")


def _shopping_start(rng, fill, top):
    q, p = rng.randint(2, 6), rng.randint(2, top)
    numbers = {"q": q, "p": p, "c": q * p, "items": fill.fresh(SHOP_ITEMS)}
    return _Step(fill("{Name} buys {q} {items} for ${p} each.", **numbers),
                 fill("The {items} cost {q} * ${p} = ${c}.", **numbers),
                 fill("First, {name} buys {q} {items} at ${p} each. The cost is the number of {items} times "
                      "the price: {q} * {p} = {c}. So the {items} cost ${c}.", **numbers),
                 q * p, question="How much does {name} spend in total?")


# (opening, steps allowed in the middle, steps allowed last)
PROBLEM_KINDS = (
    (_collection_start, (_gain, _loss, _packs, _share), (_gain, _loss, _packs, _share, _sell)),
    (_shopping_start, (_more_items, _single_item), (_more_items, _single_item, _change, _split_bill)),
)


@register_generator(
    TaskSpec(
        name="word_problems",
        instruction="Solve the math word problem and end your answer with '#### <number>'.",
        trigger="Answer",
        answer_type="generate",
        max_new_tokens=224,  # verbose solutions of 3 steps reach ~200 SmolLM tokens
        stop=("\n\n",),
        answer_end=r"####\s*-?[\d,.]+[^\n]*\n",
        description="GSM8K-like small-number word problems (1-2 steps by default) with worked solutions.",
    ),
    WordProblemOptions,
)
def word_problems(rng: random.Random, options: WordProblemOptions) -> Example:
    start, middle, last = rng.choice(PROBLEM_KINDS)
    person = pick_person(rng)
    obj, one, box, boxes, edible = rng.choice(OBJECTS)
    fields = {**person, "friend": pick_person(rng, person["name"])["name"], "relative": rng.choice(WORDS["relative"]),
              "obj": obj, "one": one, "box": box, "boxes": boxes, "uses": "eats" if edible else "loses"}
    fill = _Writer(rng, fields)
    top = max(3, options.max_number // 2)  # increments and prices stay below the starting amounts
    steps = [start(rng, fill, top)]
    n_steps = rng.randint(options.min_steps, options.max_steps) - steps[0].counts
    previous = None
    for index in range(n_steps):
        makers = list(last if index == n_steps - 1 else middle)
        rng.shuffle(makers)
        makers.sort(key=lambda maker: maker is previous)  # the same kind twice in a row reads badly
        for previous in makers:  # adding always fits, so one of them makes a step
            step = previous(rng, fill, steps[-1].result, top)
            if step:
                break
        steps.append(step)
    answer = steps[-1].result
    question = steps[-1].question or steps[0].question  # a middle step's question is superseded
    problem = " ".join([step.story for step in steps] + [fill(question)])
    if options.solution_style == "terse":
        target = f"#### {answer}"
    elif options.solution_style == "steps":
        target = "\n".join([step.line for step in steps] + [f"#### {answer}"])
    else:
        target = "\n".join([step.explain for step in steps] + [f"So the answer is {answer}.", f"#### {answer}"])
    return Example(input=problem, target=target, answer=str(answer))

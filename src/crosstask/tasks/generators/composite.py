"""Composite built-in tasks: one answer needs the skills of several basic tasks (paper 2's "complex task").

``arithmetic_sentiment`` asks whether a small story about numbers ends well or badly for someone. The
label is fixed by arithmetic: every story holds two counts to compare, a gain and a loss, or a total
against a reference, so no single number word gives the answer away. Part of the stories count
something unwelcome (accidents, complaints), where a rise is bad news, so the last step is a judgement
of sentiment rather than a plain "went up". Its basic tasks are ``sentiment_binary`` (same labels and
trigger) and ``arithmetic_large``.

Four story forms, each a :class:`Story` (numbers kept beside the text so tests can recompute it):

* ``compare``: an organisation's count last period and this period; good iff it rose for a welcome
  quantity (visitors) or fell for an unwelcome one (accidents).
* ``periods``: the same, with this period's count given as two parts to add up.
* ``net``: someone had S of something, gained g and lost l (in either order); good iff g > l.
* ``goal``: someone needs G, has h and gets e more; good iff h + e > G.

The ``stated_share`` dial adds a sentence that says in words which way the numbers went (always
consistent with them); such items test the sentiment step alone, the others both steps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ..base import TaskSpec
from ..registry import register_generator
from .text import Options, cap, label_value, pick_person

Form = Literal["compare", "net", "periods", "goal"]


class ArithmeticSentimentOptions(Options):
    # Numbers stay in two digits by default: SmolLM2-135M is near chance on larger sums (see
    # arithmetic_large), and the point is to combine the skills, not to max out either one.
    max_number: int = Field(60, ge=20, le=10_000, description="largest number in a story")
    forms: tuple[Form, ...] = Field(("compare", "net", "periods", "goal"), min_length=1)
    # Share of stories that also say in words which way the numbers went ("That is fewer than before."),
    # consistent with the arithmetic: those need only the sentiment step. Measured on SmolLM2-135M,
    # stories without it stayed at chance even after 256 training items (2 epochs reached 0.58 on
    # two-number comparisons at best), so a task with none of them teaches a small model nothing.
    stated_share: float = Field(0.5, ge=0.0, le=1.0)


@dataclass(frozen=True)
class Story:
    """A rendered story and the arithmetic behind it: ``sum(terms)`` compared with ``reference``."""

    text: str
    terms: tuple[int, ...]
    reference: int
    higher_is_better: bool
    stated: bool = False  # the text also says in words whether the outcome is above the reference

    @property
    def outcome(self) -> int:
        return sum(self.terms)

    @property
    def good(self) -> bool:
        return (self.outcome > self.reference) == self.higher_is_better


# --- net: one gain and one loss of something the person owns --------------------------------------
# (unit, gains, losses); "{n}" is the amount, "{unit}" the counted thing.
HOLDINGS = (
    ("dollars",
     ("earned {n} dollars walking dogs", "found {n} dollars in an old coat", "got {n} dollars from {his} {relative}",
      "sold an old bike for {n} dollars", "won {n} dollars in a quiz", "was paid {n} dollars for mowing a lawn"),
     ("spent {n} dollars on lunch", "lost {n} dollars on the way home", "paid {n} dollars to fix {his} phone",
      "lent {n} dollars to a friend who never paid it back", "paid a parking fine of {n} dollars",
      "spent {n} dollars on a concert ticket")),
    ("{thing}",
     ("won {n} {thing} from a classmate", "was given {n} {thing} by {his} {relative}", "bought {n} more {thing}",
      "found {n} {thing} in a drawer", "traded a toy for {n} {thing}"),
     ("lost {n} {thing} at school", "gave away {n} {thing}", "had {n} {thing} ruined by the rain",
      "dropped {n} {thing} down a drain", "had {n} {thing} taken by {his} little brother")),
    ("points in a board game",
     ("scored {n} points in the bonus round", "earned {n} points for a perfect answer",
      "picked up {n} points on a lucky card"),
     ("lost {n} points for a penalty", "had {n} points taken away for a wrong answer",
      "gave up {n} points on an unlucky card")),
)
THINGS = ("marbles", "stickers", "trading cards", "stamps", "seashells", "comic books")
RELATIVES = ("aunt", "uncle", "grandmother", "grandfather", "cousin", "neighbour", "older sister")
NET_QUESTIONS = ("How does {name} feel about how things turned out?", "Is this good or bad news for {name}?",
                 "Is the outcome positive or negative for {name}?", "Should {name} be pleased?")

# --- periods: an organisation's count, last period against this period's two parts -----------------
# (who, count phrase, welcome?); "{n}" is the count.
COUNTS = (
    ("bakery", "sold {n} cakes", True), ("café", "served {n} customers", True),
    ("town library", "lent out {n} books", True), ("museum", "welcomed {n} visitors", True),
    ("farm", "collected {n} eggs", True), ("bookshop", "sold {n} novels", True),
    ("cinema", "sold {n} tickets", True), ("charity", "received {n} donations", True),
    ("factory", "had {n} accidents", False), ("hotel", "got {n} complaints", False),
    ("train line", "had {n} late trains", False), ("school", "recorded {n} absences", False),
    ("restaurant", "got {n} bad reviews", False), ("delivery firm", "lost {n} parcels", False),
    ("clinic", "had {n} missed appointments", False), ("bike shop", "had {n} bikes returned broken", False),
)
PERIODS = (
    ("Last week", "This week", "on weekdays", "at the weekend"),
    ("In March", "In April", "in the first half of the month", "in the second half"),
    ("Last year", "This year", "in the spring", "in the autumn"),
    ("Yesterday", "Today", "in the morning", "in the afternoon"),
)
PERIOD_QUESTIONS = ("Is this good or bad news for the {who}?", "Should the people running the {who} be happy?",
                    "How would the manager of the {who} feel about this?",
                    "Is the trend positive or negative for the {who}?")

# --- goal: someone needs an amount, has part of it and gets some more -------------------------------
GOALS = ("a new bike", "a concert ticket", "a pair of running shoes", "a birthday present for {his} {relative}",
         "a tent for a camping trip", "a guitar", "a school trip", "a video game")
GOAL_GAINS = ("earns {n} dollars washing cars", "gets {n} dollars from {his} {relative}",
              "sells old books for {n} dollars", "is paid {n} dollars for babysitting", "wins {n} dollars in a contest")
GOAL_QUESTIONS = ("Will {name} be happy?", "How does {name} feel about buying {goal} now?",
                  "Is this good or bad news for {name}?", "Is the outcome positive or negative for {name}?")


def _distinct_pair(rng: random.Random, low: int, high: int) -> tuple[int, int]:
    first = rng.randint(low, high)
    second = rng.choice([value for value in range(low, high + 1) if value != first])
    return first, second


def _near(rng: random.Random, value: int, above: bool, floor: int) -> int:
    """A number a little above or below ``value`` (never equal, never under ``floor``): close calls need the sum."""
    assert value > floor
    margin = rng.randint(1, max(2, value // 3))
    return value + margin if above else max(floor, value - margin)


def _net(rng: random.Random, good: bool, top: int, stated: bool) -> Story:
    person = pick_person(rng)
    unit, gains, losses = rng.choice(HOLDINGS)
    fields = {**person, "relative": rng.choice(RELATIVES), "thing": rng.choice(THINGS)}
    gained, lost = _distinct_pair(rng, 2, top // 2)
    if (gained > lost) != good:
        gained, lost = lost, gained
    start = rng.randint(lost + 1, top)  # no loss bigger than what there is
    events = [rng.choice(gains).format(n=gained, **fields), rng.choice(losses).format(n=lost, **fields)]
    rng.shuffle(events)
    link = rng.choice((", and later {he} ", ". Then {he} ", ". After that {he} ")).format(**fields)
    owned = f"{start} {unit.format(**fields)}"
    opening = rng.choice((f"{{name}} had {owned}.", f"On Monday {{name}} had {owned}.",
                          f"{{name}} started the day with {owned}.")).format(**fields)
    question = rng.choice(NET_QUESTIONS).format(**fields)
    statement = f"In the end {fields['he']} has {'more' if good else 'less'} than at the start. " if stated else ""
    text = f"{opening} {cap(fields['he'])} {events[0]}{link}{events[1]}. {statement}{question}"
    return Story(text, (start, gained, -lost), start, True, stated)


def _periods(rng: random.Random, good: bool, top: int, stated: bool) -> Story:
    who, counted, welcome = rng.choice(COUNTS)
    before_label, now_label, first_part, second_part = rng.choice(PERIODS)
    parts = (rng.randint(2, top // 2), rng.randint(2, top // 2))
    rose = good == welcome
    before = _near(rng, sum(parts), above=not rose, floor=2)
    question = rng.choice(PERIOD_QUESTIONS).format(who=who)
    text = (f"{before_label} the {who} {counted.format(n=before)}. {now_label} it {counted.format(n=parts[0])} "
            f"{first_part} and {parts[1]} {second_part}. {_trend(rose, stated)}{question}")
    return Story(text, parts, before, welcome, stated)


def _compare(rng: random.Random, good: bool, top: int, stated: bool) -> Story:
    who, counted, welcome = rng.choice(COUNTS)
    before_label, now_label, _, _ = rng.choice(PERIODS)
    before, now = _distinct_pair(rng, 2, top)
    rose = good == welcome
    if (now > before) != rose:
        before, now = now, before
    question = rng.choice(PERIOD_QUESTIONS).format(who=who)
    text = (f"{before_label} the {who} {counted.format(n=before)}. {now_label} it {counted.format(n=now)}. "
            f"{_trend(rose, stated)}{question}")
    return Story(text, (now,), before, welcome, stated)


def _trend(rose: bool, stated: bool) -> str:
    return f"That is {'more' if rose else 'fewer'} than before. " if stated else ""


def _goal(rng: random.Random, good: bool, top: int, stated: bool) -> Story:
    person = pick_person(rng)
    fields = {**person, "relative": rng.choice(RELATIVES)}
    goal = rng.choice(GOALS).format(**fields)
    needed = rng.randint(12, top)
    saved = rng.randint(2, needed - 2)
    missing = needed - saved
    extra = _near(rng, missing, above=good, floor=1)
    gain = rng.choice(GOAL_GAINS).format(n=extra, **fields)
    question = rng.choice(GOAL_QUESTIONS).format(goal=goal, **fields)
    statement = f"Now {fields['he']} {'has enough' if good else 'is still short'}. " if stated else ""
    text = (f"{fields['name']} needs {needed} dollars for {goal}. {cap(fields['he'])} has saved {saved} dollars, "
            f"and this week {fields['he']} {gain}. {statement}{question}")
    return Story(text, (saved, extra), needed, True, stated)


FORMS = {"compare": _compare, "net": _net, "periods": _periods, "goal": _goal}


def make_story(rng: random.Random, good: bool, options: ArithmeticSentimentOptions) -> Story:
    """One story whose arithmetic makes it good (``good=True``) or bad news; draws only from ``rng``."""
    form = FORMS[rng.choice(options.forms)]
    story = form(rng, good, options.max_number, rng.random() < options.stated_share)
    assert story.good == good and story.outcome != story.reference, story  # the label must follow the numbers
    return story


@register_generator(
    TaskSpec(
        name="arithmetic_sentiment",
        instruction="Work out the numbers, then answer: is the outcome positive or negative for them?",
        trigger="Sentiment",
        answer_type="choice",
        labels=("positive", "negative"),
        description="Stories about gains, losses and totals whose sentiment follows from a small computation "
                    "(complex task; basic tasks: sentiment_binary, arithmetic_large).",
        label_meanings={"positive": "positive", "negative": "negative"},
    ),
    ArithmeticSentimentOptions,
)
def arithmetic_sentiment(rng: random.Random, label: str, options: ArithmeticSentimentOptions) -> str:
    good = label_value(label, {"positive": 1, "negative": 0}, "arithmetic_sentiment") == 1
    return make_story(rng, good, options).text

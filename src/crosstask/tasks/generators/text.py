"""Helpers and word banks shared by the built-in generator families.

``fill`` fills a template's ``{slot}`` fields from the caller's values or from the word bank ``WORDS``;
``pick_fresh`` keeps one text from repeating a phrase; ``pick_person`` draws a name with matching pronouns;
``label_value`` maps a requested label to the number a generator works with; ``Options`` is the strict
base of every generator's options (a misspelt option fails with its name).
"""

from __future__ import annotations

import random
import re

from pydantic import BaseModel, ConfigDict

from ..base import TaskError


class Options(BaseModel):
    """The base of every generator's options: an unknown (misspelt) option is an error."""

    model_config = ConfigDict(extra="forbid")


def check_range(low: int, high: int, what: str) -> None:
    if low > high:
        raise ValueError(f"min_{what} ({low}) must not exceed max_{what} ({high})")


FIELD = re.compile(r"\{(\w+)\}")


def fill(rng: random.Random, template: str, **fixed) -> str:
    """Fill ``{field}`` slots from ``fixed`` or, failing that, from the word bank WORDS.

    A capitalised slot (``{He}``, ``{Aspect}``) gets the capitalised value, so templates can start a
    sentence with a slot. A slot repeated in one template gets one value; values drawn from WORDS may
    themselves contain slots (e.g. a reason "because my {companion} insisted").
    """
    chosen: dict[str, str] = {}

    def value(match: re.Match) -> str:
        key = match.group(1)
        lower = key[0].lower() + key[1:]
        if lower not in chosen:
            if lower in fixed:
                chosen[lower] = str(fixed[lower])
            elif lower in WORDS:
                chosen[lower] = fill(rng, rng.choice(WORDS[lower]), **fixed)
            else:
                raise KeyError(f"no value for template slot {{{key}}} in {template!r}")
        text = chosen[lower]
        return cap(text) if key[0].isupper() else text

    return FIELD.sub(value, template)


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def after_connector(connector: str, sentence: str) -> str:
    # "But" + "The plot was dull." -> "But the plot was dull."; the pronoun "I" keeps its capital.
    if not re.match(r"I\b", sentence):
        sentence = sentence[:1].lower() + sentence[1:]
    return f"{connector} {sentence}"


def pick_fresh(rng: random.Random, pool: tuple, used: list):
    """A choice from ``pool`` not yet in ``used`` (if any is left), recorded in ``used``; keeps one text
    from repeating a phrase."""
    fresh = [item for item in pool if item not in used]
    used.append(rng.choice(fresh or pool))
    return used[-1]


def label_value(label: str, table: dict[str, int], task: str) -> int:
    try:
        return table[label]
    except KeyError:
        raise TaskError(f"task {task!r}: unknown label {label!r}; labels are {list(table)}") from None


def pick_person(rng: random.Random, *exclude: str) -> dict[str, str]:
    """A named person with matching pronouns, as template fields."""
    name, gender = rng.choice([entry for entry in NAMES if entry[0] not in exclude])
    return {"name": name, **PRONOUNS[gender]}


NAMES = tuple((name, "f") for name in (
    "Anna", "Maria", "Priya", "Sofia", "Emma", "Aisha", "Chloe", "Mei", "Fatima", "Grace",
    "Hannah", "Isabel", "Julia", "Leila", "Nora", "Olivia", "Ruth", "Sara", "Yuki", "Zoe",
)) + tuple((name, "m") for name in (
    "Tom", "Ben", "Carlos", "David", "Ethan", "Farid", "George", "Hiro", "Ivan", "Jack",
    "Kofi", "Liam", "Marco", "Noah", "Omar", "Pedro", "Ravi", "Sam", "Victor", "Wei",
))
PRONOUNS = {
    "f": {"he": "she", "him": "her", "his": "her", "himself": "herself"},
    "m": {"he": "he", "him": "him", "his": "his", "himself": "himself"},
}

# Word bank for template slots that are not fixed by the caller.
WORDS: dict[str, tuple[str, ...]] = {
    "name": tuple(name for name, _ in NAMES),
    "city": ("Lisbon", "Leeds", "Osaka", "Denver", "Nairobi", "Lyon", "Pune", "Porto", "Tallinn",
             "Austin", "Busan", "Cork", "Perth", "Seville", "Utrecht", "Zurich", "Bergen", "Krakow",
             "Valparaiso", "Hobart"),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "month": ("January", "March", "April", "June", "September", "October", "November"),
    "relative": ("sister", "brother", "mother", "father", "aunt", "uncle", "cousin", "grandmother",
                 "grandfather", "neighbour", "best friend", "roommate"),
    # reviews
    "companion": ("sister", "brother", "parents", "roommate", "partner", "kids", "best friend",
                  "grandmother", "colleagues", "book club"),
    "occasion": ("on a Friday night", "last weekend", "on a long flight", "at a late-night screening",
                 "on opening night", "over the holidays", "on a rainy afternoon",
                 "at a small local cinema"),
    "character": ("a retired detective", "a young chef", "a struggling musician", "a small-town teacher",
                  "a disgraced pilot", "an ambitious lawyer", "a teenage hacker", "a widowed farmer",
                  "a retired boxer", "a shy librarian", "a former spy", "a stubborn nurse"),
    "goal": ("tries to pull off one last job", "sets out to win back an old friend",
             "fights to save a failing restaurant", "searches for a missing brother",
             "gets caught up in a political scandal", "must protect a stranger from a gang",
             "plans an escape from a remote island", "tries to uncover a family secret",
             "enters a national competition", "returns home after twenty years"),
    "setting": ("in 1970s Chicago", "in a small coastal town", "in post-war Berlin",
                "on a remote space station", "in modern-day Mumbai", "in a snowed-in mountain village",
                "in Victorian London", "on a cargo ship", "in a sleepy desert town"),
    "reason": ("after a friend recommended it", "because I liked the director's last film",
               "after seeing the trailer", "on a whim", "because my {companion} insisted"),
    "bought_when": ("last month", "two weeks ago", "during the festive sale", "to replace my old one",
                    "after reading a lot of reviews", "on a friend's suggestion", "for my {relative}",
                    "as a birthday gift for my {relative}"),
    "period": ("two weeks", "a month", "about three months", "ten days", "a week", "half a year"),
    # comments
    "thing": ("the new update", "this recipe", "the parking plan", "the referee's decision",
              "this tutorial", "the season finale", "the new bus timetable", "the latest patch",
              "the library's new opening hours", "the park renovation", "this article",
              "the new tax proposal", "the team's new coach", "this build guide",
              "the new school uniform policy", "the latest trailer", "the city's bike lanes",
              "this camera review", "the band's new album", "the price increase",
              "the election results", "the new store layout"),
    "insult_adj": ("clueless", "pathetic", "brainless", "spineless", "smug", "whiny", "useless",
                   "self-important", "gutless", "hopeless"),
    "insult_noun": ("clown", "loser", "idiot", "moron", "fool", "troll", "know-it-all", "crybaby",
                    "buffoon", "halfwit"),
    "opener": ("", "", "Honestly, ", "Seriously, ", "Wow, ", "Face it, "),
    "scorn_verb": ("defend", "complain about", "get excited about", "write three paragraphs about",
                   "praise"),
}

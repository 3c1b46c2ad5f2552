"""Sentence pairs: ``paraphrase`` (PAWS-like) and ``nli`` (MNLI-like).

A scenario draws its facts, then offers templates for the first sentence and for the second one by
(label, hard). "Hard" means word overlap misleads: PAWS-style swaps that keep every word, converse
rewordings that swap names yet mean the same, hypotheses that copy the premise but add a fact,
contradictions without a negation word, entailments with one.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pydantic import Field

from ..base import TaskSpec
from ..registry import register_generator
from .text import FIELD, NAMES, WORDS, Options, fill, label_value, pick_person


class PairOptions(Options):
    hard_fraction: float = Field(0.3, ge=0.0, le=1.0, description="share of items whose word overlap "
                                 "points to the wrong label")


class ParaphraseOptions(PairOptions):
    # Off by default: with 0.5 an adapter on 200 items still answered "no" throughout (52 %), like
    # without it; the base demo model answers "no" to every pair either way.
    altered_share: float = Field(0.0, ge=0.0, le=1.0, description="share of the easy 'no' items that change "
                                 "a fact instead of swapping roles")


Scenario = Callable[[random.Random], tuple[dict, tuple[str, ...], dict[tuple[str, bool], tuple[str, ...]]]]


def _pair(rng: random.Random, scenarios: tuple[Scenario, ...], label: str, hard: bool,
          altered_share: float = 0.0) -> tuple[str, str]:
    """``altered_share`` of the easy "no" items (paraphrase only) reword the first sentence faithfully
    but change one fact (a name, place, day or number), like PAWS's non-swap negatives."""
    facts, firsts, seconds = rng.choice(scenarios)(rng)
    first = fill(rng, rng.choice(firsts), **facts)
    if label == "no" and not hard and altered_share and rng.random() < altered_share:
        template = rng.choice(seconds[("yes", False)])
        return first, fill(rng, template, **_alter_fact(rng, facts, template))
    second = fill(rng, rng.choice(seconds[(label, hard)]), **facts)
    return first, second


def _alter_fact(rng: random.Random, facts: dict, template: str) -> dict:
    """``facts`` with one fact that ``template`` shows replaced by a different value of its kind."""
    pools = {"person": [name for name, _ in NAMES], "other": [name for name, _ in NAMES],
             "place1": WORDS["city"], "place2": WORDS["city"], "city": WORDS["city"],
             "weekday": WORDS["weekday"], "team1": TEAMS, "team2": TEAMS}
    shown = {slot[0].lower() + slot[1:] for slot in FIELD.findall(template)}
    key = rng.choice(sorted(shown & (set(pools) | {"year", "price", "k"})))
    if key in pools:
        value = rng.choice([v for v in pools[key] if v not in facts.values()])
    else:
        value = facts[key] + rng.choice((-1, 1)) * rng.randint(1, 5) * (10 if key == "price" else 1)
        value = value if value > 1 else facts[key] + 3
    return {**facts, key: value}


def _two_people(rng: random.Random) -> dict[str, str]:
    person = pick_person(rng)
    other = pick_person(rng, person["name"])
    return {"person": person["name"], "other": other["name"], "his": person["his"]}


def _two_cities(rng: random.Random) -> dict[str, str]:
    first, second = rng.sample(WORDS["city"], 2)
    return {"place1": first, "place2": second}


PARAPHRASE_VERBS = (  # past, passive participle, a synonym
    ("hired", "hired", "employed"), ("interviewed", "interviewed", "questioned"),
    ("helped", "helped", "assisted"), ("phoned", "phoned", "called"),
    ("praised", "praised", "complimented"), ("criticised", "criticised", "found fault with"),
    ("defeated", "defeated", "beat"), ("trained", "trained", "coached"), ("warned", "warned", "cautioned"),
    ("replaced", "replaced", "took over from"), ("visited", "visited", "went to see"),
    ("photographed", "photographed", "took a picture of"), ("taught", "taught", "tutored"),
)
WHEN = ("in {year}", "last {weekday}", "at a conference in {city}", "after the meeting",
        "on {weekday} morning", "during a visit to {city}")


def _scene_action(rng):
    verb, participle, synonym = rng.choice(PARAPHRASE_VERBS)
    when = fill(rng, rng.choice(WHEN), year=rng.randint(1950, 2023))
    facts = {**_two_people(rng), "verb": verb, "pp": participle, "synonym": synonym, "when": when}
    return facts, ("{person} {verb} {other} {when}.",), {
        ("yes", False): ("{person} {synonym} {other} {when}.", "{When}, {person} {verb} {other}."),
        ("yes", True): ("{other} was {pp} by {person} {when}.", "{When}, {other} was {pp} by {person}."),
        ("no", False): ("{other} {verb} {person} {when}.",),
        ("no", True): ("{person} was {pp} by {other} {when}.",),
    }


def _scene_arrival(rng):
    facts = {**_two_people(rng), "city": rng.choice(WORDS["city"]), "weekday": rng.choice(WORDS["weekday"])}
    return facts, ("On {weekday}, {person} arrived in {city} before {other}.",), {
        ("yes", False): ("On {weekday}, {person} got to {city} earlier than {other}.",
                         "{person} reached {city} ahead of {other} on {weekday}."),
        ("yes", True): ("On {weekday}, {other} arrived in {city} after {person}.",),
        ("no", False): ("On {weekday}, {other} arrived in {city} before {person}.",),
        ("no", True): ("On {weekday}, {person} arrived in {city} after {other}.",),
    }


def _scene_birthplace(rng):
    facts = {**_two_people(rng), **_two_cities(rng)}
    return facts, ("{person} was born in {place1} and grew up in {place2}.",), {
        ("yes", False): ("{person}, who was born in {place1}, was raised in {place2}.",
                         "Born in {place1}, {person} spent {his} childhood in {place2}."),
        ("yes", True): ("{person} grew up in {place2} and was born in {place1}.",),
        ("no", False): ("{person} was born in {place2} and grew up in {place1}.",),
        ("no", True): ("{person} grew up in {place1} and was born in {place2}.",),
    }


def _scene_move(rng):
    facts = {**_two_people(rng), **_two_cities(rng), "year": rng.randint(1950, 2023)}
    return facts, ("In {year}, {person} moved from {place1} to {place2}.",), {
        ("yes", False): ("{person} left {place1} for {place2} in {year}.",
                         "{person} relocated from {place1} to {place2} in {year}."),
        ("yes", True): ("In {year}, {person} moved to {place2} from {place1}.",),
        ("no", False): ("In {year}, {person} moved from {place2} to {place1}.",),
        ("no", True): ("In {year}, {person} moved to {place1} from {place2}.",),
    }


def _scene_sale(rng):
    item = rng.choice(("used bike", "second-hand piano", "vintage camera", "old laptop", "small boat",
                       "guitar", "sofa", "ticket to the final"))
    facts = {**_two_people(rng), "item": item, "price": rng.randrange(20, 900, 10)}
    return facts, ("{person} sold a {item} to {other} for {price} dollars.",), {
        ("yes", False): ("For {price} dollars, {person} sold a {item} to {other}.",
                         "{person} sold {other} a {item} for {price} dollars."),
        ("yes", True): ("{other} bought a {item} from {person} for {price} dollars.",),
        ("no", False): ("{other} sold a {item} to {person} for {price} dollars.",),
        ("no", True): ("{person} bought a {item} from {other} for {price} dollars.",),
    }


def _scene_age(rng):
    facts = {**_two_people(rng), "k": rng.randint(2, 15)}
    return facts, ("{person} is {k} years older than {other}.",), {
        ("yes", False): ("{person} was born {k} years before {other}.",
                         "{person} is older than {other} by {k} years."),
        ("yes", True): ("{other} is {k} years younger than {person}.",),
        ("no", False): ("{other} is {k} years older than {person}.",),
        ("no", True): ("{person} is {k} years younger than {other}.",),
    }


TEAMS = ("Rovers", "Wanderers", "Harriers", "Falcons", "Rangers", "Tigers", "Dolphins", "Comets",
         "Pioneers", "Saints", "Eagles", "Mariners")


def _scene_match(rng):
    team1, team2 = rng.sample(TEAMS, 2)
    facts = {"team1": team1, "team2": team2, "year": rng.randint(1950, 2023),
             "round": rng.choice(("final", "semi-final", "opening match", "quarter-final", "cup replay"))}
    return facts, ("The {team1} beat the {team2} in the {round} in {year}.",), {
        ("yes", False): ("The {team1} defeated the {team2} in the {round} in {year}.",
                         "In {year}, the {team1} beat the {team2} in the {round}."),
        ("yes", True): ("The {team2} lost to the {team1} in the {round} in {year}.",
                        "The {team2} were beaten by the {team1} in the {round} in {year}."),
        ("no", False): ("The {team2} beat the {team1} in the {round} in {year}.",),
        ("no", True): ("The {team1} lost to the {team2} in the {round} in {year}.",),
    }


def _scene_career(rng):
    subject1, subject2 = rng.sample(("chemistry", "history", "music", "law", "economics", "biology",
                                     "architecture", "philosophy"), 2)
    facts = {**_two_people(rng), **_two_cities(rng), "subject1": subject1, "subject2": subject2}
    return facts, ("{person} studied {subject1} in {place1} before teaching {subject2} in {place2}.",), {
        ("yes", False): ("Before teaching {subject2} in {place2}, {person} studied {subject1} in {place1}.",),
        ("yes", True): ("{person} taught {subject2} in {place2} after studying {subject1} in {place1}.",),
        ("no", False): ("{person} taught {subject1} in {place1} before studying {subject2} in {place2}.",),
        ("no", True): ("{person} studied {subject1} in {place2} before teaching {subject2} in {place1}.",),
    }


PARAPHRASE_SCENES = (_scene_action, _scene_arrival, _scene_birthplace, _scene_move, _scene_sale,
                     _scene_age, _scene_match, _scene_career)


@register_generator(
    TaskSpec(
        name="paraphrase",
        instruction="Do these two sentences mean the same thing? Answer yes or no.",
        trigger="Answer",
        answer_type="choice",
        labels=("yes", "no"),
        description="PAWS-like sentence pairs: rewordings vs word-order and role swaps of the same words.",
        label_meanings={"yes": "yes", "no": "no"},
    ),
    ParaphraseOptions,
)
def paraphrase(rng: random.Random, label: str, options: ParaphraseOptions) -> str:
    label_value(label, {"yes": 1, "no": 0}, "paraphrase")
    pair = list(_pair(rng, PARAPHRASE_SCENES, label, rng.random() < options.hard_fraction, options.altered_share))
    rng.shuffle(pair)
    return f"Sentence 1: {pair[0]}\nSentence 2: {pair[1]}"


def _nli_purchase(rng):
    items, category, shops = rng.choice((
        ("apples", "fruit", ("market", "greengrocer's")), ("oranges", "fruit", ("market", "supermarket")),
        ("novels", "books", ("bookshop", "charity shop")), ("comics", "books", ("bookshop", "newsagent's")),
        ("shirts", "clothes", ("department store", "charity shop")), ("scarves", "clothes", ("market", "boutique")),
        ("tulips", "flowers", ("florist's", "garden centre")), ("carrots", "vegetables", ("market", "farm shop")),
    ))
    person = pick_person(rng)
    n = rng.randint(3, 12)
    facts = {**person, "person": person["name"], "other": pick_person(rng, person["name"])["name"],
             "items": items, "category": category, "shop": rng.choice(shops), "n": n,
             "fewer": rng.randint(2, n - 1), "weekday": rng.choice(WORDS["weekday"])}
    return facts, ("{person} bought {n} {items} at the {shop} on {weekday}.",
                   "On {weekday}, {person} went to the {shop} and bought {n} {items}."), {
        ("entailment", False): ("{person} bought some {category}.", "{person} went to the {shop} on {weekday}.",
                                "{person} went shopping on {weekday}."),
        ("entailment", True): ("{person} did not leave the {shop} empty-handed.",
                               "{person} bought more than {fewer} {items}."),
        ("contradiction", False): ("{person} did not buy any {items}.", "{person} bought nothing at the {shop}.",
                                   "{person} stayed at home all day on {weekday}."),
        ("contradiction", True): ("{person} bought only {fewer} {items} at the {shop} on {weekday}.",
                                  "{other} bought the {items} at the {shop}, while {person} stayed home."),
        ("neutral", False): ("{person} bought the {items} for {his} {relative}.",
                             "{person} goes to the {shop} every week.", "The {items} were on sale."),
        ("neutral", True): ("{person} bought {n} {items} at the {shop} on {weekday} for a party.",
                            "{person} bought {n} {items} at the {shop} on {weekday} with {other}."),
    }


def _nli_trip(rng):
    person = pick_person(rng)
    transport, other_transport = rng.sample(("train", "bus", "ferry", "night train", "coach"), 2)
    facts = {**person, "person": person["name"], "city": rng.choice(WORDS["city"]),
             "transport": transport, "other_transport": other_transport,
             "relative": rng.choice(WORDS["relative"])}
    return facts, ("{person} took the {transport} to {city} to visit {his} {relative}, who had just moved there.",
                   ("Last month {person} took the {transport} to {city} to see {his} {relative}, "
                    "who had recently moved there.")), {
        ("entailment", False): ("{person} travelled to {city}.", "{person}'s {relative} lives in {city}.",
                                "{person} has a {relative}."),
        ("entailment", True): ("{person} did not stay at home.",
                               "{person}'s {relative} has not lived in {city} for long."),
        ("contradiction", False): ("{person} has never been to {city}.", "{person} stayed at home.",
                                   "{person}'s {relative} has lived in {city} for decades."),
        ("contradiction", True): ("{person} took the {other_transport} to {city} to visit {his} {relative}.",
                                  "{person}'s {relative} had lived in {city} for forty years."),
        ("neutral", False): ("{person} travels to {city} every month.", "The {transport} was delayed.",
                             "{person} is very close to {his} {relative}."),
        ("neutral", True): ("{person} took the {transport} to {city} to visit {his} {relative} for {his} birthday.",
                            ("{person} took the {transport} to {city} to visit {his} {relative}, "
                             "who had just moved there for work.")),
    }


def _nli_job(rng):
    person = pick_person(rng)
    job, place = rng.choice((("nurse", "hospital"), ("teacher", "school"), ("chef", "hotel"),
                             ("engineer", "factory"), ("librarian", "library"), ("accountant", "bank"),
                             ("mechanic", "garage"), ("pharmacist", "pharmacy")))
    years = rng.randint(3, 20)
    facts = {**person, "person": person["name"], "job": job, "place": place, "years": years,
             "fewer": rng.randint(2, years - 1), "month": rng.choice(WORDS["month"])}
    return facts, ("{person} has worked as a {job} at the {place} for {years} years and was promoted last {month}.",
                   "After {years} years as a {job} at the {place}, {person} was promoted last {month}."), {
        ("entailment", False): ("{person} has a job at the {place}.", "{person} was promoted.",
                                "{person} works as a {job}."),
        ("entailment", True): ("{person} is not new to the {place}.",
                               "{person} has been a {job} for more than {fewer} years."),
        ("contradiction", False): ("{person} has never worked at the {place}.", "{person} was fired last {month}.",
                                   "{person} has never had a job."),
        ("contradiction", True): ("{person} started working as a {job} at the {place} last {month}.",
                                  "{person} has worked as a {job} at the {place} for only {fewer} years."),
        ("neutral", False): ("{person} earns a high salary.", "{person} enjoys being a {job}.",
                             "{person} wants to leave the {place}."),
        ("neutral", True): (("{person} has worked as a {job} at the {place} for {years} years and was "
                             "promoted last {month} for the second time."),
                            ("{person} was promoted last {month} after {years} years at the {place} "
                             "because of a big project.")),
    }


def _nli_cancelled(rng):
    facts = {"city": rng.choice(WORDS["city"]), "weekday": rng.choice(WORDS["weekday"]),
             "event": rng.choice(("outdoor concert", "street market", "charity run", "food festival",
                                  "football match", "school sports day", "boat race", "open-air film night")),
             "weather": rng.choice(("heavy rain", "strong winds", "a thunderstorm", "flooding", "a snowstorm"))}
    return facts, ("The {event} in {city} was cancelled on {weekday} because of {weather}.",
                   "Because of {weather}, the {event} planned in {city} for {weekday} was called off."), {
        ("entailment", False): ("The {event} was cancelled.", "The weather in {city} was bad on {weekday}."),
        ("entailment", True): ("The {event} did not go ahead.",
                               "The {event} in {city} did not take place on {weekday}."),
        ("contradiction", False): ("The {event} in {city} went ahead as planned.",
                                   "The weather in {city} was perfect on {weekday}."),
        ("contradiction", True): ("The {event} in {city} took place on {weekday} despite {weather}.",
                                  "Thousands enjoyed the {event} in {city} on {weekday}."),
        ("neutral", False): ("The {event} will be held again next year.",
                             "Many people in {city} were disappointed.", "The organisers lost money."),
        ("neutral", True): (("The {event} in {city} was cancelled on {weekday} because of {weather}, "
                             "for the second year in a row."),
                            ("The {event} in {city} was cancelled on {weekday} because of {weather} "
                             "and low ticket sales.")),
    }


def _nli_match(rng):
    team1, team2 = rng.sample(TEAMS, 2)
    winner = rng.randint(1, 6)
    facts = {"team1": team1, "team2": team2, "s1": winner, "s2": rng.randint(0, winner - 1),
             "city": rng.choice(WORDS["city"]), "weekday": rng.choice(WORDS["weekday"])}
    return facts, ("The {team1} beat the {team2} {s1} to {s2} in {city} on {weekday}.",
                   "On {weekday} in {city}, the {team1} won {s1} to {s2} against the {team2}."), {
        ("entailment", False): ("The {team2} lost the game.", "The {team1} won a game in {city}."),
        ("entailment", True): ("The {team2} did not win on {weekday}.",
                               "The {team1} scored more goals than the {team2}."),
        ("contradiction", False): ("The {team2} won the game.", "The game ended in a draw."),
        ("contradiction", True): ("The {team2} beat the {team1} {s1} to {s2} in {city} on {weekday}.",
                                  "The {team1} lost to the {team2} in {city} on {weekday}."),
        ("neutral", False): ("The {team1} are the best team in the league.", "The stadium was full.",
                             "The {team2} have a new coach."),
        ("neutral", True): (("The {team1} beat the {team2} {s1} to {s2} in {city} on {weekday} in front "
                             "of a record crowd."),
                            ("The {team1} beat the {team2} {s1} to {s2} in {city} on {weekday} for the "
                             "first time.")),
    }


NLI_SCENES = (_nli_purchase, _nli_trip, _nli_job, _nli_cancelled, _nli_match)


@register_generator(
    TaskSpec(
        name="nli",
        instruction="Does the premise entail the hypothesis? Answer entailment, neutral or contradiction.",
        trigger="Answer",
        answer_type="choice",
        labels=("entailment", "neutral", "contradiction"),
        description="MNLI-like premise/hypothesis pairs, 3-way inference.",
        label_meanings={"entailment": "yes", "neutral": "neutral", "contradiction": "no"},
    ),
    PairOptions,
)
def nli(rng: random.Random, label: str, options: PairOptions) -> str:
    label_value(label, {"entailment": 1, "neutral": 0, "contradiction": -1}, "nli")
    premise, hypothesis = _pair(rng, NLI_SCENES, label, rng.random() < options.hard_fraction)
    return f"Premise: {premise}\nHypothesis: {hypothesis}"

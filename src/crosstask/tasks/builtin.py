"""Built-in synthetic task families, shaped like the source datasets of paper 1.

The project must run offline, so instead of downloading IMDB, Flipkart, Amazon, PAWS, MNLI, Pile
toxicity, Goat and GSM8K it generates look-alikes from phrase banks. Every maker draws only from the
``rng`` it is given, so a seed fixes a dataset. Each family has a difficulty dial (``hard_fraction``,
digit counts, step counts) so that a tiny model can be kept off both the floor and the ceiling, and
the word problems have an output-length dial because output length is a studied variable.

Layout, top to bottom: shared helpers and word banks; the review-like families (sentiment_binary,
sentiment_3way, rating_5star) which share one review composer; toxicity; paraphrase and nli, which
share the "scenario with labelled variants" pattern; arithmetic_large; word_problems.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import Example, TaskError, TaskSpec
from .registry import register_generator

# ---------------------------------------------------------------------------------------------------
# Shared helpers


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_range(low: int, high: int, what: str) -> None:
    if low > high:
        raise ValueError(f"min_{what} ({low}) must not exceed max_{what} ({high})")


_FIELD = re.compile(r"\{(\w+)\}")


def _fill(rng: random.Random, template: str, **fixed) -> str:
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
                chosen[lower] = _fill(rng, rng.choice(WORDS[lower]), **fixed)
            else:
                raise KeyError(f"no value for template slot {{{key}}} in {template!r}")
        text = chosen[lower]
        return _cap(text) if key[0].isupper() else text

    return _FIELD.sub(value, template)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _after_connector(connector: str, sentence: str) -> str:
    # "But" + "The plot was dull." -> "But the plot was dull."; the pronoun "I" keeps its capital.
    if not re.match(r"I\b", sentence):
        sentence = sentence[:1].lower() + sentence[1:]
    return f"{connector} {sentence}"


def _pick_fresh(rng: random.Random, pool: tuple, used: list):
    """A choice from ``pool`` not yet in ``used`` (if any is left), recorded in ``used``; keeps one text
    from repeating a phrase."""
    fresh = [item for item in pool if item not in used]
    used.append(rng.choice(fresh or pool))
    return used[-1]


def _sign(stance: int) -> int:
    return (stance > 0) - (stance < 0)


def _label_value(label: str, table: dict[str, int], task: str) -> int:
    try:
        return table[label]
    except KeyError:
        raise TaskError(f"task {task!r}: unknown label {label!r}; labels are {list(table)}") from None


def _person(rng: random.Random, *exclude: str) -> dict[str, str]:
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

# ---------------------------------------------------------------------------------------------------
# Review-like families: one composer, two domains (films, products), a stance from -2 to +2.

ADJECTIVES = {
    2: ("excellent", "outstanding", "superb", "fantastic", "brilliant", "flawless", "top-notch",
        "amazing"),
    1: ("good", "pretty good", "nice", "solid", "quite good", "pleasing"),
    0: ("okay", "average", "fine", "so-so", "passable", "ordinary", "nothing special"),
    -1: ("disappointing", "mediocre", "weak", "underwhelming", "below average", "a bit poor"),
    -2: ("awful", "terrible", "dreadful", "horrible", "atrocious", "appalling"),
}
# Negated phrases are the "not bad" trap: a bag of words points the other way.
NEGATED = {
    1: ("not bad at all", "far from disappointing", "anything but mediocre", "never a problem",
        "not a weak point at all"),
    0: ("neither great nor terrible", "not bad, but not great either",
        "not impressive, but not awful either"),
    -1: ("not good at all", "far from impressive", "not up to the mark", "nowhere near good enough",
         "anything but impressive", "not worth the hype"),
}
FIRST_TEMPLATES = ("{Aspect} {prep} this {subject} {be} {ap}.", "I found {aspect} {prep} this {subject} {ap}.",
                   "For a {subject}, {aspect} {be} {ap}.")
PLAIN_TEMPLATES = ("{Aspect} {be} {ap}.", "I found {aspect} {ap}.")  # these take a connector in front
ASPECT_TEMPLATES = PLAIN_TEMPLATES + ("Honestly, {aspect} {be} {ap}.", "To me, {aspect} {be} {ap}.",
                                      "{Aspect} {be} {ap}, in my opinion.")
CONTRAST_CONNECTORS = ("But", "However,", "That said,", "On the other hand,")
VERDICT_CONNECTORS = ("Still,", "Even so,", "Overall,")
MIXED_CONNECTORS = ("Admittedly,", "Granted,", "Sure,")
# A reversal praises (or pans) every aspect, then the closing verdict says the opposite and decides.
REVERSAL_CONNECTORS = ("Still,", "Even so,", "And yet,", "But honestly,", "All the same,")


@dataclass(frozen=True)
class ReviewDomain:
    be: str  # "was" for films watched, "is" for products owned
    prep: str  # "the acting in this film" / "the fabric of this hoodie"
    pick_subject: Callable[[random.Random], tuple[str, tuple[str, ...]]]  # -> subject, its aspects
    context: tuple[str, ...]  # scene-setting sentences that carry no opinion
    verdicts: dict[int, tuple[str, ...]]
    negated_verdicts: dict[int, tuple[str, ...]]
    sarcasm: dict[int, tuple[str, ...]]  # by polarity; +1 is "expected to hate it, was wrong"
    # by polarity: verdicts that carry no opinion word ("I checked my watch every ten minutes")
    implicit: dict[int, tuple[str, ...]] = field(default_factory=dict)


MOVIE_GENRES = ("heist thriller", "romantic comedy", "war drama", "horror film", "animated feature",
                "space opera", "courtroom drama", "coming-of-age story", "spy thriller", "musical",
                "western", "murder mystery", "disaster movie", "sports drama", "superhero sequel",
                "period drama", "road movie", "zombie comedy", "fantasy epic", "crime drama")
MOVIE_ASPECTS = ("the acting", "the plot", "the script", "the dialogue", "the soundtrack",
                 "the cinematography", "the pacing", "the ending", "the lead performance", "the villain",
                 "the CGI", "the direction", "the editing", "the supporting cast", "the humour",
                 "the fight choreography")

MOVIES = ReviewDomain(
    be="was",
    prep="in",
    pick_subject=lambda rng: (rng.choice(MOVIE_GENRES), MOVIE_ASPECTS),
    context=("I watched this {subject} with my {companion} {occasion}.",
             "This {subject} follows {character} who {goal} {setting}.",
             "I rented this {subject} {reason}.",
             "The {subject} is set {setting} and follows {character}."),
    verdicts={
        2: ("A must-see.", "I would happily watch it again tomorrow.",
            "Easily one of the best films I have seen this year.",
            "Highly recommended to anyone who loves a good {subject}.",
            "I left the cinema with a huge smile.", "An absolute gem."),
        1: ("Worth a watch.", "I enjoyed it overall.", "A good way to spend an evening.",
            "Recommended, with a few small reservations.", "A solid film that I'm glad I saw.",
            "I'd watch it again."),
        0: ("Not bad, not great.", "A perfectly average film.",
            "Fine for a lazy evening, but nothing memorable."),
        -1: ("I would not watch it again.", "Not really worth the ticket price.",
             "A forgettable evening.", "I expected a lot more.",
             "Only watch it if there is nothing else on.", "A letdown overall."),
        -2: ("Avoid it at all costs.", "Easily one of the worst films I have ever seen.",
             "I want those two hours of my life back.", "A complete waste of time.",
             "I walked out halfway through.", "Truly dreadful from start to finish."),
    },
    negated_verdicts={
        2: ("I could not have asked for more.", "I can't recommend it enough.",
            "Not a single dull minute.", "I could not take my eyes off the screen."),
        1: ("Not perfect, but definitely worth a watch.", "Not a masterpiece, but I enjoyed it.",
            "I did not regret watching it."),
        0: ("Not terrible, but not memorable either.", "It neither impressed nor annoyed me."),
        -1: ("Not worth the hype.", "I wouldn't recommend it.", "It didn't hold my attention.",
             "Not as good as I hoped."),
        -2: ("I can't think of a single reason to watch it.", "Not even the cast could save it.",
             "I would not sit through it again if you paid me.", "Don't waste your money on it."),
    },
    sarcasm={
        1: ("I went in expecting to hate this {subject} and walked out grinning.",
            "I rolled my eyes at the trailer, and I was completely wrong.",
            "My {companion} dragged me to it, and now I'm the one telling everyone to go.",
            "I thought I was too old for a {subject}; apparently not."),
        -1: ("What a thrill it was to check my watch every ten minutes.",
             "If you enjoy watching paint dry, this {subject} is for you.",
             "Congratulations to the editor for making ninety minutes feel like four hours.",
             "Sure, because every {subject} needs a twist you can see coming from space.",
             "Bravo to whoever decided this script was ready."),
    },
    implicit={
        1: ("The two hours flew by.", "I have already booked tickets to see it again with my {companion}.",
            "I kept thinking about it for days afterwards.", "I have been telling everyone at work to go.",
            "I will be first in line for the sequel.", "Nobody in our row looked at a phone once."),
        -1: ("I checked my watch more times than I can count.", "Half the audience had left before the end.",
             "I was asleep before the second act.", "I had forgotten most of it by the time I got home.",
             "My {companion} and I left before the credits.", "I will not be watching the sequel."),
    },
)

PRODUCT_CATEGORIES = (
    (("headset", "bluetooth speaker", "soundbar", "neckband", "pair of earbuds"),
     ("the sound quality", "the bass", "the battery life", "the Bluetooth connection", "the build quality")),
    (("smartwatch", "fitness band", "tablet", "e-reader", "phone"),
     ("the display", "the battery life", "the touch response", "the build quality", "the software")),
    (("hoodie", "cotton shirt", "kurta", "winter jacket", "pair of jeans", "tracksuit", "raincoat"),
     ("the fabric", "the fit", "the stitching", "the colour", "the comfort")),
    (("pair of running shoes", "pair of sneakers", "pair of sandals"),
     ("the comfort", "the grip", "the sole", "the fit", "the stitching")),
    (("pressure cooker", "non-stick pan", "mixer grinder", "electric kettle", "water bottle", "lunch box"),
     ("the build quality", "the lid", "the finish", "the ease of cleaning", "the size")),
    (("desk lamp", "office chair", "backpack", "yoga mat", "hair dryer", "beard trimmer"),
     ("the quality", "the design", "the material", "the size", "the finish")),
)
PRODUCT_ASPECTS_ANY = ("the packaging", "the price")


def _pick_product(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    products, aspects = rng.choice(PRODUCT_CATEGORIES)
    return rng.choice(products), aspects + PRODUCT_ASPECTS_ANY


PRODUCTS = ReviewDomain(
    be="is",
    prep="of",
    pick_subject=_pick_product,
    context=("I bought this {subject} {bought_when}.", "I have been using this {subject} for {period} now.",
             "I got this {subject} as a gift for my {relative}.",
             "I ordered this {subject} {bought_when} and it arrived on {weekday}."),
    verdicts={
        2: ("Totally worth the money.", "Best purchase I have made this year.",
            "Would buy again without a second thought.", "Worth every penny.", "Absolutely love it.",
            "Easily the best {subject} I have owned."),
        1: ("Good value for the price.", "Happy with it overall.", "I would recommend it.",
            "Does its job well.", "Value for money.", "Nice product."),
        0: ("It does the job, nothing more.", "Average product for the price.", "Neither good nor bad.",
            "It's okay, I guess.", "Nothing special.", "Okay for the price, nothing more."),
        -1: ("Not really worth the price.", "Expected better.", "Somewhat disappointed.",
             "I would look elsewhere next time.", "Could have been much better.", "A bit of a letdown."),
        -2: ("Total waste of money.", "Do not buy this.", "Returning it tomorrow.",
             "Worst purchase I have ever made.", "Completely useless.", "Avoid at all costs."),
    },
    negated_verdicts={
        2: ("Could not be happier with it.", "Not a single complaint.", "I can't recommend it enough.",
            "Couldn't ask for more at this price."),
        1: ("Not perfect, but worth buying.", "No real complaints so far.",
            "Not bad at all for the price.", "Not the best, but good enough that I'd buy it again."),
        0: ("Not great, not terrible.", "Not bad, but nothing to write home about.",
            "I can't say I love it or hate it."),
        -1: ("Not worth the price.", "Not up to the mark.", "I wouldn't buy it again.",
             "Doesn't live up to the description."),
        -2: ("Not worth a single penny.", "I would not buy this again even at half the price.",
             "Don't waste your money.", "Not even worth the packaging."),
    },
    sarcasm={
        1: ("I was sure this {subject} would be junk at this price, and I was wrong.",
            "I expected nothing and got a genuinely great {subject}.",
            "Bought this {subject} as a backup and now it's the one I use every day.",
            "My {relative} laughed at me for buying this {subject}, and now wants one too."),
        -1: ("Wonderful, the {subject} stopped working after two days.",
             "Great, exactly what I needed: a {subject} that falls apart in a week.",
             "Impressive, this {subject} lasted almost a whole week.",
             "Thanks for the expensive paperweight."),
    },
)


class ReviewOptions(_Options):
    hard_fraction: float = Field(0.3, ge=0.0, le=1.0, description="share of items with negation, contrast, "
                                 "sarcasm or mixed cues")
    min_sentences: int = Field(2, ge=1, le=12)
    max_sentences: int = Field(5, ge=1, le=12)

    @model_validator(mode="after")
    def _range(self):
        _check_range(self.min_sentences, self.max_sentences, "sentences")
        return self


class MovieReviewOptions(ReviewOptions):
    # Half the items are hard, and half of those are reversals: with 0.3 the base demo model
    # (SmolLM2-135M-Instruct) scored 0.88, with 0.5 about 0.8, with 1.0 0.64.
    hard_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of items with negation, contrast, "
                                 "sarcasm, mixed cues or a reversing verdict")


class ShortReviewOptions(ReviewOptions):
    min_sentences: int = Field(1, ge=1, le=12)
    max_sentences: int = Field(3, ge=1, le=12)


class TitledReviewOptions(ReviewOptions):
    min_sentences: int = Field(2, ge=1, le=12)
    max_sentences: int = Field(4, ge=1, le=12)


def _hard_pattern(rng: random.Random, stance: int, n_sentences: int, strict: bool, reversals: bool) -> str:
    if n_sentences == 1:
        return "negation"
    if reversals and stance != 0 and not strict and rng.random() < 0.5:
        return "reversal"
    if strict and abs(stance) == 2:
        # In a star rating an opposing cue would blur 5 vs 4 (or 1 vs 2): keep the intensity pure.
        return rng.choice(("negation", "sarcasm"))
    if stance == 0:
        return rng.choice(("negation", "contrast"))
    if strict:
        # Sarcasm is always strong, so in a star rating it only marks 1 and 5.
        return rng.choice(("negation", "contrast", "mixed"))
    return rng.choice(("negation", "contrast", "mixed", "sarcasm"))


def _compose_review(rng: random.Random, domain: ReviewDomain, stance: int, options: ReviewOptions,
                    strict: bool = False, picked: tuple[str, tuple[str, ...]] | None = None,
                    reversals: bool = False) -> str:
    """A review whose overall verdict has ``stance`` (-2..2); ``strict`` keeps the intensity readable
    (star ratings), otherwise only the polarity matters. ``picked`` fixes the (subject, aspects).
    ``reversals`` lets half of the hard items be reversals: every aspect sentence has the opposite
    polarity and only the closing verdict, often one without an opinion word, gives the label."""
    subject, aspects = picked or domain.pick_subject(rng)
    n = rng.randint(options.min_sentences, options.max_sentences)
    pattern = _hard_pattern(rng, stance, n, strict, reversals) if rng.random() < options.hard_fraction else "plain"
    polarity = _sign(stance)

    # A slot is (stance, negated, connector). The last sentence is the verdict when there are two or more.
    with_context = n >= 3 and rng.random() < 0.4
    n_slots = max(1, n - 1 - with_context)
    negate_aspects = pattern == "negation" and not (strict and abs(stance) == 2)
    slots = [[stance, negate_aspects, None] for _ in range(n_slots)]
    verdict_connector = None
    if pattern == "contrast":
        first = rng.choice((1, -1)) if stance == 0 else -polarity
        slots[0] = [first, False, None]
        if stance == 0:  # balanced pros and cons, then an average verdict
            if n_slots > 1:
                slots[1] = [-first, False, rng.choice(CONTRAST_CONNECTORS)]
            else:
                verdict_connector = "Overall,"
        elif n_slots > 1:
            slots[1][2] = rng.choice(CONTRAST_CONNECTORS)
        else:
            verdict_connector = rng.choice(VERDICT_CONNECTORS)
    elif pattern == "mixed":
        slots[rng.randrange(n_slots)] = [-polarity, False, rng.choice(MIXED_CONNECTORS)]
    elif pattern == "reversal":
        slots = [[-polarity * rng.choice((1, 2)), False, None] for _ in range(n_slots)]
        verdict_connector = rng.choice(REVERSAL_CONNECTORS)

    fields = {"subject": subject, "be": domain.be, "prep": domain.prep}
    chosen_aspects = rng.sample(aspects, min(n_slots, len(aspects)))
    sentences = [_fill(rng, rng.choice(domain.context), **fields)] if with_context else []
    used: list[str] = []
    for index, (slot_stance, negated, connector) in enumerate(slots):
        phrases = NEGATED[_sign(slot_stance)] if negated else ADJECTIVES[slot_stance]
        first = index == 0 and not with_context
        if connector:
            templates = FIRST_TEMPLATES[:2] if first else PLAIN_TEMPLATES
        else:
            templates = FIRST_TEMPLATES if first else ASPECT_TEMPLATES
        template = _pick_fresh(rng, templates, used)
        aspect = chosen_aspects[index % len(chosen_aspects)]
        sentence = _fill(rng, template, aspect=aspect, ap=_pick_fresh(rng, phrases, used), **fields)
        sentences.append(_after_connector(connector, sentence) if connector else sentence)
    if pattern == "sarcasm":
        sentences[-1] = _fill(rng, rng.choice(domain.sarcasm[polarity]), **fields)
    if n >= 2:
        bank = domain.negated_verdicts if pattern == "negation" else domain.verdicts
        phrases = bank[stance]
        if pattern == "reversal" and domain.implicit and rng.random() < 0.5:
            phrases = domain.implicit[polarity]
        verdict = _fill(rng, rng.choice(phrases), **fields)
        sentences.append(_after_connector(verdict_connector, verdict) if verdict_connector else verdict)
    return " ".join(sentences)


@register_generator(
    TaskSpec(
        name="sentiment_binary",
        instruction="Is the sentiment of this movie review positive or negative?",
        trigger="Sentiment",
        answer_type="choice",
        labels=("positive", "negative"),
        description="IMDB-like movie reviews of 2-5 sentences, binary sentiment.",
        label_meanings={"positive": "positive", "negative": "negative"},
    ),
    MovieReviewOptions,
)
def sentiment_binary(rng: random.Random, label: str, options: MovieReviewOptions) -> str:
    polarity = _label_value(label, {"positive": 1, "negative": -1}, "sentiment_binary")
    return _compose_review(rng, MOVIES, polarity * rng.choice((1, 2)), options, reversals=True)


@register_generator(
    TaskSpec(
        name="sentiment_3way",
        instruction="Is the sentiment of this product review positive, neutral or negative?",
        trigger="Sentiment",
        answer_type="choice",
        labels=("positive", "neutral", "negative"),
        description="Flipkart-like short product reviews, 3-way sentiment.",
        label_meanings={"positive": "positive", "neutral": "neutral", "negative": "negative"},
    ),
    ShortReviewOptions,
)
def sentiment_3way(rng: random.Random, label: str, options: ShortReviewOptions) -> str:
    polarity = _label_value(label, {"positive": 1, "neutral": 0, "negative": -1}, "sentiment_3way")
    return _compose_review(rng, PRODUCTS, polarity * rng.choice((1, 2)), options)


STAR_STANCES = {"1": -2, "2": -1, "3": 0, "4": 1, "5": 2}
TITLES = {
    2: ("Absolutely love it", "Perfect!", "Exceeded my expectations", "Best {subject} I have owned",
        "Worth every penny", "Outstanding"),
    1: ("Good {subject}", "Pretty good for the price", "Solid choice", "Happy with it", "Does the job well",
        "Nice, with one small issue"),
    0: ("It's okay", "Average", "Mixed feelings", "Nothing special", "Decent but not great", "Meh"),
    -1: ("Disappointed", "Not great", "Could be better", "Expected more", "Not worth the price",
         "A bit of a letdown"),
    -2: ("Terrible", "Avoid", "Complete junk", "Waste of money", "Broke within a week", "Do not buy"),
}
# Hard items get a title that says nothing, so the body has to decide.
BLAND_TITLES = ("My honest review", "Review after {period} of use", "Read before buying",
                "{Subject} review", "Thoughts on this {subject}", "Update after {period}")


@register_generator(
    TaskSpec(
        name="rating_5star",
        instruction="How many stars, from 1 to 5, did the writer give this product review?",
        trigger="Rating",
        answer_type="choice",
        labels=("1", "2", "3", "4", "5"),
        description="Amazon-like product reviews with a title, rated 1-5 stars.",
        label_meanings={"1": "negative", "2": "negative", "3": "neutral", "4": "positive", "5": "positive"},
    ),
    TitledReviewOptions,
)
def rating_5star(rng: random.Random, label: str, options: TitledReviewOptions) -> str:
    stance = _label_value(label, STAR_STANCES, "rating_5star")
    product = _pick_product(rng)  # the title names the product the body reviews
    body = _compose_review(rng, PRODUCTS, stance, options, strict=True, picked=product)
    titles = BLAND_TITLES if rng.random() < options.hard_fraction else TITLES[stance]
    title = _fill(rng, rng.choice(titles), subject=product[0])
    return f"Title: {title}\nReview: {body}"


# ---------------------------------------------------------------------------------------------------
# Toxicity: forum comments. A comment is toxic iff it insults or shows contempt for a person; harsh but
# civil criticism of a thing is neutral. Insults stay mild (no slurs, no threats).

CIVIL = (
    "Thanks for posting about {thing}, it was useful to read.",
    "Does anyone know more about {thing}?",
    "I think {thing} has some good points and a few weak ones.",
    "My {relative} and I talked about {thing} over dinner on {weekday}.",
    "Could you share a source for the claims about {thing}?",
    "I read the whole thread about {thing} and learned a lot.",
    "Interesting take on {thing}, I hadn't thought about it that way.",
    "For what it's worth, {thing} seems fine to me so far.",
    "I'm curious what others think about {thing}.",
    "{Name} made a fair point earlier about {thing}.",
    "I was on the fence about {thing}, but this discussion helped.",
    "Good summary of {thing}, thanks for taking the time.",
    "Has anyone else had a closer look at {thing}?",
    "{Name}, I think you're right about {thing}, at least partly.",
    "I only heard about {thing} from my {relative} on {weekday}.",
)
CRITICAL = (  # negative but civil: the trap for "negative words mean toxic"
    "I strongly disagree with your view on {thing}, but I see where you're coming from.",
    "Honestly, I think {thing} is a mistake, and I hope they reconsider.",
    "In my opinion {thing} misses the mark.",
    "I'm really disappointed with {thing}; it feels like a step backwards.",
    "Some of the claims about {thing} don't add up for me.",
    "I didn't like {thing} at all, but that's just my taste.",
    "{Name}, I think your point about {thing} is wrong, and here is why.",
    "Sorry, but I think {thing} is really poor.",
)
INSULTS = (
    "{opener}you are a {insult_adj} {insult_noun}.",
    "Only a {insult_adj} {insult_noun} would {scorn_verb} {thing}.",
    "Nobody cares what a {insult_adj} {insult_noun} like you thinks about {thing}.",
    "{opener}you have no idea what you're talking about, you {insult_adj} {insult_noun}.",
    "Go back under your bridge, you {insult_adj} {insult_noun}.",
    "What a {insult_adj} take on {thing}, even for a {insult_noun} like you.",
    "{opener}do everyone a favour and stop typing, you {insult_adj} {insult_noun}.",
    "{opener}are you really this dense, or do you just enjoy being a {insult_adj} {insult_noun}?",
    "Typical {insult_adj} {insult_noun}, always whining about {thing}.",
    "Learn to read before you embarrass yourself again, you {insult_adj} {insult_noun}.",
)
POLITE_INSULTS = (  # the other trap: courteous framing around contempt
    "With all due respect, you are a {insult_adj} {insult_noun}.",
    "No offence, but your take on {thing} is moronic.",
    "Thanks for proving you have no clue about {thing}, genius.",
    "I'm sure you meant well, but you're honestly too dim to discuss {thing}.",
    "Sorry, but only a {insult_adj} {insult_noun} would write something this ignorant.",
    "Bless your heart, you really can't follow a simple argument, can you?",
    "Nice try, genius, maybe read about {thing} before commenting.",
    "I say this kindly: nobody on this forum is as {insult_adj} as you.",
)


class CommentOptions(ReviewOptions):
    hard_fraction: float = Field(0.3, ge=0.0, le=1.0, description="share of toxic items that are polite "
                                 "on the surface and neutral items that are harshly critical")
    min_sentences: int = Field(1, ge=1, le=12)
    max_sentences: int = Field(3, ge=1, le=12)


@register_generator(
    TaskSpec(
        name="toxicity",
        instruction="Is this comment toxic or neutral?",
        trigger="Toxicity",
        answer_type="choice",
        labels=("toxic", "neutral"),
        description="Pile-like forum comments, mildly toxic (insults, contempt) or neutral.",
        label_meanings={"toxic": "negative", "neutral": "neutral"},
    ),
    CommentOptions,
)
def toxicity(rng: random.Random, label: str, options: CommentOptions) -> str:
    toxic = _label_value(label, {"toxic": 1, "neutral": 0}, "toxicity")
    n = rng.randint(options.min_sentences, options.max_sentences)
    hard = rng.random() < options.hard_fraction
    if toxic and not hard:
        pools = [INSULTS] * n
    elif toxic:  # one insult, polite or plain, hidden among civil sentences
        pools = [rng.choice((CIVIL, CRITICAL)) for _ in range(n)]
        pools[rng.randrange(n)] = rng.choice((POLITE_INSULTS, INSULTS))
    elif hard:  # the criticism comes first, so the civil rest reads as its follow-up
        pools = [CRITICAL] + [CIVIL] * (n - 1)
    else:
        pools = [CIVIL] * n
    thing = rng.choice(WORDS["thing"])  # one comment, one topic: named once, then "it"
    used: list[str] = []
    sentences = []
    for pool in pools:
        template = _pick_fresh(rng, pool, used)
        words = {key: _pick_fresh(rng, WORDS[key], used) for key in ("opener", "insult_adj", "insult_noun")}
        sentences.append(_cap(_fill(rng, template, thing=thing, **words)))
        if "{thing}" in template.lower():
            thing = "it"
    if rng.random() < 0.3 and not used[0].startswith("{Name}"):  # many comments are replies to someone
        sentences[0] = _after_connector(rng.choice(WORDS["name"]) + ",", sentences[0])
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------------------
# Sentence pairs (paraphrase, nli). A scenario draws its facts, then offers templates for the first
# sentence and for the second one by (label, hard). "Hard" means word overlap misleads: PAWS-style swaps
# that keep every word, converse rewordings that swap names yet mean the same, hypotheses that copy the
# premise but add a fact, contradictions without a negation word, entailments with one.


class PairOptions(_Options):
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
    first = _fill(rng, rng.choice(firsts), **facts)
    if label == "no" and not hard and altered_share and rng.random() < altered_share:
        template = rng.choice(seconds[("yes", False)])
        return first, _fill(rng, template, **_alter_fact(rng, facts, template))
    second = _fill(rng, rng.choice(seconds[(label, hard)]), **facts)
    return first, second


def _alter_fact(rng: random.Random, facts: dict, template: str) -> dict:
    """``facts`` with one fact that ``template`` shows replaced by a different value of its kind."""
    pools = {"person": [name for name, _ in NAMES], "other": [name for name, _ in NAMES],
             "place1": WORDS["city"], "place2": WORDS["city"], "city": WORDS["city"],
             "weekday": WORDS["weekday"], "team1": TEAMS, "team2": TEAMS}
    shown = {slot[0].lower() + slot[1:] for slot in _FIELD.findall(template)}
    key = rng.choice(sorted(shown & (set(pools) | {"year", "price", "k"})))
    if key in pools:
        value = rng.choice([v for v in pools[key] if v not in facts.values()])
    else:
        value = facts[key] + rng.choice((-1, 1)) * rng.randint(1, 5) * (10 if key == "price" else 1)
        value = value if value > 1 else facts[key] + 3
    return {**facts, key: value}


def _two_people(rng: random.Random) -> dict[str, str]:
    person = _person(rng)
    other = _person(rng, person["name"])
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
    when = _fill(rng, rng.choice(WHEN), year=rng.randint(1950, 2023))
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
    _label_value(label, {"yes": 1, "no": 0}, "paraphrase")
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
    person = _person(rng)
    n = rng.randint(3, 12)
    facts = {**person, "person": person["name"], "other": _person(rng, person["name"])["name"],
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
    person = _person(rng)
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
    person = _person(rng)
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
    _label_value(label, {"entailment": 1, "neutral": 0, "contradiction": -1}, "nli")
    premise, hypothesis = _pair(rng, NLI_SCENES, label, rng.random() < options.hard_fraction)
    return f"Premise: {premise}\nHypothesis: {hypothesis}"


# ---------------------------------------------------------------------------------------------------
# arithmetic_large: Goat-like. The target restates the equation, so the answer is its last number.

OPERATION_WORDS = {"+": "plus", "-": "minus", "*": "times"}
ARITHMETIC_TEMPLATES = ("What is {a} {op} {b}?", "Calculate {a} {op} {b}.", "Compute {a} {op} {b}.",
                        "{a} {op} {b} = ?", "What is {a} {word} {b}?", "Work out {a} {op} {b}.",
                        "Solve {a}{op}{b}.", "Find the value of {a} {op} {b}.")


class ArithmeticOptions(_Options):
    # Defaults: 2-4 digit addition and subtraction. The base demo model is at the floor for any digit
    # count (2 % for 3-6 digits with *, 9 % even for 1-2 digits), so the defaults aim at learnability:
    # 200 training items lift it from 2 % to about 19 % (1-3 digits: 6 % to 27 %).
    # Multiplication (add "*" to operations) and longer numbers remain available as harder variants.
    min_digits: int = Field(2, ge=1, le=18)
    max_digits: int = Field(4, ge=1, le=18)
    operations: tuple[Literal["+", "-", "*"], ...] = ("+", "-")
    max_multiplier_digits: int = Field(2, ge=1, le=18, description="digits of the shorter factor")

    @model_validator(mode="after")
    def _check(self):
        _check_range(self.min_digits, self.max_digits, "digits")
        if not self.operations:
            raise ValueError("operations must name at least one of '+', '-', '*'")
        return self


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(max(2, 10 ** (digits - 1)), 10**digits - 1)  # no trivial 0 or 1 operands


@register_generator(
    TaskSpec(
        name="arithmetic_large",
        instruction="Solve the arithmetic problem and write the equation with its result.",
        trigger="Answer",
        answer_type="generate",
        max_new_tokens=32,  # a 4-digit target is about 15 SmolLM tokens, a 6-digit product about 24
        stop=("\n\n", "\n"),
        description="Goat-like multi-digit addition and subtraction (multiplication optional).",
    ),
    ArithmeticOptions,
)
def arithmetic_large(rng: random.Random, options: ArithmeticOptions) -> Example:
    op = rng.choice(options.operations)
    a = _number(rng, rng.randint(options.min_digits, options.max_digits))
    if op == "*":
        b = _number(rng, rng.randint(1, min(options.max_multiplier_digits, options.max_digits)))
        if rng.random() < 0.5:
            a, b = b, a
        result = a * b
    else:
        b = _number(rng, rng.randint(options.min_digits, options.max_digits))
        if op == "-" and b > a:  # keep results non-negative
            a, b = b, a
        result = a + b if op == "+" else a - b
    question = _fill(rng, rng.choice(ARITHMETIC_TEMPLATES), a=a, b=b, op=op, word=OPERATION_WORDS[op])
    return Example(input=question, target=f"{a} {op} {b} = {result}", answer=str(result))


# ---------------------------------------------------------------------------------------------------
# word_problems: GSM8K-like. A problem is a chain of steps; each step knows its sentence in the story,
# its line in a worked solution and a fuller explanation, so one chain renders in every solution style.


class WordProblemOptions(_Options):
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
        _check_range(self.min_steps, self.max_steps, "steps")
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
        return _fill(self.rng, template, **self.fields, **numbers)

    def fresh(self, pool: tuple):
        return _pick_fresh(self.rng, pool, self.used)


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
    person = _person(rng)
    obj, one, box, boxes, edible = rng.choice(OBJECTS)
    fields = {**person, "friend": _person(rng, person["name"])["name"], "relative": rng.choice(WORDS["relative"]),
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

"""Review-like families: one composer, two domains (films, products), a stance from -2 to +2.

* ``sentiment_binary``: IMDB-like movie reviews, positive or negative;
* ``sentiment_3way``: Flipkart-like short product reviews, positive, neutral or negative;
* ``rating_5star``: Amazon-like product reviews with a title, 1 to 5 stars.

``hard_fraction`` sets the share of items with negation, contrast, sarcasm, mixed cues (or, for films,
a reversing verdict), so that word polarity alone does not give the label.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import Field, model_validator

from ..base import TaskSpec
from ..registry import register_generator
from .text import Options, after_connector, check_range, fill, label_value, pick_fresh

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


class ReviewOptions(Options):
    hard_fraction: float = Field(0.3, ge=0.0, le=1.0, description="share of items with negation, contrast, "
                                 "sarcasm or mixed cues")
    min_sentences: int = Field(2, ge=1, le=12)
    max_sentences: int = Field(5, ge=1, le=12)

    @model_validator(mode="after")
    def _range(self):
        check_range(self.min_sentences, self.max_sentences, "sentences")
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


def _sign(stance: int) -> int:
    return (stance > 0) - (stance < 0)


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
    sentences = [fill(rng, rng.choice(domain.context), **fields)] if with_context else []
    used: list[str] = []
    for index, (slot_stance, negated, connector) in enumerate(slots):
        phrases = NEGATED[_sign(slot_stance)] if negated else ADJECTIVES[slot_stance]
        first = index == 0 and not with_context
        if connector:
            templates = FIRST_TEMPLATES[:2] if first else PLAIN_TEMPLATES
        else:
            templates = FIRST_TEMPLATES if first else ASPECT_TEMPLATES
        template = pick_fresh(rng, templates, used)
        aspect = chosen_aspects[index % len(chosen_aspects)]
        sentence = fill(rng, template, aspect=aspect, ap=pick_fresh(rng, phrases, used), **fields)
        sentences.append(after_connector(connector, sentence) if connector else sentence)
    if pattern == "sarcasm":
        sentences[-1] = fill(rng, rng.choice(domain.sarcasm[polarity]), **fields)
    if n >= 2:
        bank = domain.negated_verdicts if pattern == "negation" else domain.verdicts
        phrases = bank[stance]
        if pattern == "reversal" and domain.implicit and rng.random() < 0.5:
            phrases = domain.implicit[polarity]
        verdict = fill(rng, rng.choice(phrases), **fields)
        sentences.append(after_connector(verdict_connector, verdict) if verdict_connector else verdict)
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
    polarity = label_value(label, {"positive": 1, "negative": -1}, "sentiment_binary")
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
    polarity = label_value(label, {"positive": 1, "neutral": 0, "negative": -1}, "sentiment_3way")
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
    stance = label_value(label, STAR_STANCES, "rating_5star")
    product = _pick_product(rng)  # the title names the product the body reviews
    body = _compose_review(rng, PRODUCTS, stance, options, strict=True, picked=product)
    titles = BLAND_TITLES if rng.random() < options.hard_fraction else TITLES[stance]
    title = fill(rng, rng.choice(titles), subject=product[0])
    return f"Title: {title}\nReview: {body}"

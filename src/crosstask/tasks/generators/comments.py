"""toxicity: Pile-like forum comments.

A comment is toxic iff it insults or shows contempt for a person; harsh but civil criticism of a thing
is neutral. Insults stay mild (no slurs, no threats).
"""

from __future__ import annotations

import random

from pydantic import Field

from ..base import TaskSpec
from ..registry import register_generator
from .reviews import ReviewOptions
from .text import WORDS, after_connector, cap, fill, label_value, pick_fresh

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
    toxic = label_value(label, {"toxic": 1, "neutral": 0}, "toxicity")
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
        template = pick_fresh(rng, pool, used)
        words = {key: pick_fresh(rng, WORDS[key], used) for key in ("opener", "insult_adj", "insult_noun")}
        sentences.append(cap(fill(rng, template, thing=thing, **words)))
        if "{thing}" in template.lower():
            thing = "it"
    if rng.random() < 0.3 and not used[0].startswith("{Name}"):  # many comments are replies to someone
        sentences[0] = after_connector(rng.choice(WORDS["name"]) + ",", sentences[0])
    return " ".join(sentences)

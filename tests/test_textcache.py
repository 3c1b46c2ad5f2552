"""The per-text cache of embeddings and parses: each text is computed once per model, and a cache that
cannot be written changes nothing but speed."""

from __future__ import annotations

import numpy as np
import pytest

from crosstask import textcache
from crosstask.analysis import features


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSTASK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / textcache.FILE_NAME


def test_each_text_is_computed_once_per_kind(cache):
    calls = []

    def upper(texts):
        calls.append(list(texts))
        return [text.upper().encode() for text in texts]

    assert textcache.cached_per_text("upper", ["a", "b", "a"], upper) == [b"A", b"B", b"A"]
    assert calls == [["a", "b"]]  # distinct texts, first-seen order
    assert textcache.cached_per_text("upper", ["b", "c", "a"], upper) == [b"B", b"C", b"A"]
    assert calls[-1] == ["c"] and cache.is_file()
    assert textcache.cached_per_text("lower", ["a"], lambda texts: [t.encode() for t in texts]) == [b"a"]
    with pytest.raises(ValueError, match="returned 1 values for 2 texts"):
        textcache.cached_per_text("broken", ["x", "y"], lambda texts: [b"one"])


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("CROSSTASK_CACHE", str(blocker))
    calls = []

    def double(texts):
        calls.append(texts)
        return [text.encode() * 2 for text in texts]

    assert textcache.cached_per_text("double", ["ab"], double) == [b"abab"]
    assert textcache.cached_per_text("double", ["ab"], double) == [b"abab"] and len(calls) == 2


def test_cached_embeddings_and_parses_equal_fresh_ones(cache, monkeypatch):
    texts = ["The film was a delight from start to end.", "Revenue fell by 12 percent in May.",
             "The film was a delight from start to end."]
    fresh_vectors, fresh_labels = features.embed_texts(texts), features.dependency_labels(texts)
    assert fresh_vectors.shape == (3, 384) and np.allclose(np.linalg.norm(fresh_vectors, axis=1), 1, atol=1e-5)
    assert "ROOT" in fresh_labels[0] and fresh_labels[0] == fresh_labels[2]

    def must_not_run(*args, **kwargs):
        raise AssertionError("cached values were computed again")

    # The cache's name for these embeddings says the dtype the encoder really has, without loading it.
    assert features._encoder_kind().endswith(f"|{next(features.sentence_encoder().parameters()).dtype}")
    monkeypatch.setattr(features, "sentence_encoder", must_not_run)
    monkeypatch.setattr(features, "spacy_pipeline", must_not_run)
    np.testing.assert_array_equal(features.embed_texts(texts), fresh_vectors)
    assert features.dependency_labels(texts) == fresh_labels


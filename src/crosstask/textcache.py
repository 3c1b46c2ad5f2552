"""A per-text cache of what the analyses compute from a text (sentence embeddings, dependency labels).

One `crosstask analyze` describes the same texts in several analyses (similarity and prediction embed
the same prompts; a second call re-reads the same run), and a text's embedding or parse depends only
on the text and the model that made it. Each value is stored under ``(kind, sha256(text))`` in one
SQLite file in crosstask's cache folder (``CROSSTASK_CACHE``, default ``~/.cache/crosstask``), where
``kind`` names the model, its version and its dtype, so a new model never reads an old one's values.
A cache that cannot be opened or written (a read-only home, a full disk) is skipped: values are
computed as if it were empty.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence

from .models import cache_dir

FILE_NAME = "text_features.sqlite"


def cached_per_text(kind: str, texts: Sequence[str], compute: Callable[[list[str]], list[bytes]]) -> list[bytes]:
    """The value of every text: from the cache where stored, else from ``compute`` (called once, on the
    distinct texts not stored yet, in first-seen order), which are then stored."""
    keys = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    found = _read(kind, set(keys))
    missing = list(dict.fromkeys(text for text, key in zip(texts, keys) if key not in found))
    if missing:
        values = compute(missing)
        if len(values) != len(missing):
            raise ValueError(f"{kind}: compute returned {len(values)} values for {len(missing)} texts")
        fresh = {hashlib.sha256(text.encode()).hexdigest(): value for text, value in zip(missing, values)}
        _write(kind, fresh)
        found |= fresh
    return [found[key] for key in keys]


def _connect() -> sqlite3.Connection:
    path = cache_dir() / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30)
    connection.execute("CREATE TABLE IF NOT EXISTS features (kind TEXT NOT NULL, key TEXT NOT NULL, "
                       "value BLOB NOT NULL, PRIMARY KEY (kind, key))")
    return connection


def _read(kind: str, keys: set[str]) -> dict[str, bytes]:
    try:
        connection = _connect()
    except (OSError, sqlite3.Error):
        return {}
    try:
        found = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):  # SQLite caps the parameters of one statement
            chunk = ordered[start:start + 500]
            query = f"SELECT key, value FROM features WHERE kind = ? AND key IN ({','.join('?' * len(chunk))})"
            found.update(connection.execute(query, (kind, *chunk)).fetchall())
        return found
    except sqlite3.Error:
        return {}
    finally:
        connection.close()


def _write(kind: str, values: dict[str, bytes]) -> None:
    try:
        connection = _connect()
    except (OSError, sqlite3.Error):
        return
    try:
        with connection:
            connection.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?)",
                                   [(kind, key, value) for key, value in values.items()])
    except sqlite3.Error:
        pass  # a full or read-only disk: the values were computed and are returned all the same
    finally:
        connection.close()

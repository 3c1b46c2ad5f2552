"""The results store: one SQLite file per run directory, the only place a run's results live.

Tables: ``runs`` (the settings of each invocation), ``adapters``, ``cells`` with their ``items``,
head activation ``patterns`` and pattern ``dynamics``. Experiments, ``crosstask heads`` and mixing
studies all write here, and only the driver process writes (jobs return results, the driver commits
them). A cell is written in one transaction together with all its items, so a run killed at any
moment leaves either the whole cell or none of it. Every adapter, cell and pattern carries the
content key of the work that produced it (:mod:`crosstask.keys`); work whose key changed is done again,
and committing a result whose key is already stored changes nothing.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from .errors import CrosstaskError
from .evaluation import ItemResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    experiment TEXT NOT NULL,      -- the validated experiment, as JSON
    base_model TEXT NOT NULL,
    model_key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS adapters (
    name TEXT PRIMARY KEY,         -- the source's label, also the row name in the matrix
    key TEXT NOT NULL,
    task TEXT NOT NULL,
    path TEXT NOT NULL,            -- relative to the run directory
    metrics TEXT NOT NULL,         -- training metrics, as JSON
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    model TEXT NOT NULL,           -- 'base' or an adapter name
    target TEXT NOT NULL,
    key TEXT NOT NULL,
    task TEXT NOT NULL,
    answer_type TEXT NOT NULL,
    n_items INTEGER NOT NULL,
    score REAL NOT NULL,           -- the primary metric: acc (choice) or exact match (generate)
    score_norm REAL,               -- choice: acc_norm
    seconds REAL NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model, target)
);
CREATE TABLE IF NOT EXISTS items (
    model TEXT NOT NULL,
    target TEXT NOT NULL,
    item INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    gold TEXT NOT NULL,
    prediction TEXT NOT NULL,
    correct INTEGER NOT NULL,
    prediction_norm TEXT,
    correct_norm INTEGER,
    logliks TEXT,                  -- choice: {label: summed log-likelihood}, as JSON
    generated TEXT,                -- generate: the model's text
    generated_tokens INTEGER,
    PRIMARY KEY (model, target, item)
);
CREATE TABLE IF NOT EXISTS patterns (
    model TEXT NOT NULL,           -- 'base' or an adapter name
    task TEXT NOT NULL,            -- the target (or probe task) the pattern was measured on
    key TEXT NOT NULL,
    items INTEGER NOT NULL,
    mode TEXT NOT NULL,
    normalize TEXT,
    pattern BLOB NOT NULL,         -- the layers x heads array, in .npy format
    seconds REAL NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model, task)
);
CREATE TABLE IF NOT EXISTS dynamics (
    source TEXT NOT NULL,          -- the adapter retrained with snapshots
    task TEXT NOT NULL,            -- the probe task
    key TEXT NOT NULL,
    curve TEXT NOT NULL,           -- step, examples_seen, probe_loss, distances to final and base, as CSV
    snapshots BLOB NOT NULL,       -- snapshots x layers x heads, in .npy format
    seconds REAL NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (source, task)
);
"""
# Columns added after the first release; older stores gain them (empty) when opened.
ADDED_COLUMNS = {"cells": {"backend": "TEXT", "device": "TEXT"},
                 "runs": {"base_dir": "TEXT"}}  # the experiment file's folder: data paths resolve against it


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        with closing(self._connect()) as connection, connection:
            connection.executescript(SCHEMA)
            for table, columns in ADDED_COLUMNS.items():
                present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
                for column, kind in columns.items():
                    if column not in present:
                        connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=60)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        return connection

    # --- runs -------------------------------------------------------------------------------
    def start_run(self, experiment_json: str, base_model: str, model_key: str, base_dir: str = "") -> int:
        with closing(self._connect()) as connection, connection:
            cursor = connection.execute(
                "INSERT INTO runs (started, experiment, base_model, model_key, base_dir) VALUES (?, ?, ?, ?, ?)",
                (time.time(), experiment_json, base_model, model_key, base_dir),
            )
            return int(cursor.lastrowid)

    def finish_run(self, run_id: int) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute("UPDATE runs SET finished = ? WHERE id = ?", (time.time(), run_id))

    def latest_run(self) -> Optional[dict]:
        with closing(self._connect()) as connection:
            connection.row_factory = sqlite3.Row
            row = connection.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return dict(row) if row else None

    @staticmethod
    def peek_latest_run(path: Path) -> Optional[dict]:
        """The latest run of the store at ``path`` (None if there is none), read without writing anything:
        not even the schema upgrade or the WAL files an ordinary connection makes."""
        path = Path(path)
        if not path.is_file():
            return None
        # A -wal file left by a killed run may hold the latest rows: read-only mode reads it, immutable would not.
        mode = "mode=ro" if path.with_name(path.name + "-wal").exists() else "immutable=1"
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)) as connection:
            connection.row_factory = sqlite3.Row
            try:
                row = connection.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
            except sqlite3.DatabaseError:
                return None
        return dict(row) if row else None

    # --- adapters ---------------------------------------------------------------------------
    def adapter_key(self, name: str) -> Optional[str]:
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT key FROM adapters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def put_adapter(self, name: str, key: str, task: str, path: str, metrics: dict) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute(
                "INSERT OR REPLACE INTO adapters (name, key, task, path, metrics, created) VALUES (?, ?, ?, ?, ?, ?)",
                (name, key, task, path, json.dumps(metrics), time.time()),
            )

    def adapters(self) -> pd.DataFrame:
        with closing(self._connect()) as connection:
            return pd.read_sql_query("SELECT * FROM adapters ORDER BY name", connection)

    # --- cells and items --------------------------------------------------------------------
    def cell_key(self, model: str, target: str) -> Optional[str]:
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT key FROM cells WHERE model = ? AND target = ?", (model, target)).fetchone()
        return row[0] if row else None

    def put_cell(self, model: str, target: str, key: str, task: str, answer_type: str,
                 results: Iterable[ItemResult], seconds: float, backend: str = "", device: str = "") -> bool:
        """Store a cell with all its items; False (and nothing written) when this key is already stored."""
        results = list(results)
        score = sum(result.correct for result in results) / len(results)
        norms = [result.correct_norm for result in results if result.correct_norm is not None]
        score_norm = sum(norms) / len(norms) if norms else None
        with closing(self._connect()) as connection, connection:  # one transaction: all or nothing
            stored = connection.execute("SELECT key FROM cells WHERE model = ? AND target = ?",
                                        (model, target)).fetchone()
            if stored and stored[0] == key:
                return False
            connection.execute("DELETE FROM items WHERE model = ? AND target = ?", (model, target))
            connection.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (model, target, r.index, r.prompt, r.gold, r.prediction, int(r.correct), r.prediction_norm,
                     None if r.correct_norm is None else int(r.correct_norm),
                     json.dumps(r.logliks) if r.logliks else None, r.generated, r.generated_tokens)
                    for r in results
                ],
            )
            connection.execute(
                "INSERT OR REPLACE INTO cells (model, target, key, task, answer_type, n_items, score, score_norm, "
                "seconds, created, backend, device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (model, target, key, task, answer_type, len(results), score, score_norm, seconds, time.time(),
                 backend, device),
            )
        return True

    def cells(self) -> pd.DataFrame:
        with closing(self._connect()) as connection:
            return pd.read_sql_query("SELECT * FROM cells", connection)

    def items(self, models: Optional[list[str]] = None, targets: Optional[list[str]] = None,
              parse_logliks: bool = False) -> pd.DataFrame:
        """Every item, optionally of some models/targets; ``parse_logliks`` turns the JSON column into dicts."""
        with closing(self._connect()) as connection:
            frame = pd.read_sql_query("SELECT * FROM items ORDER BY model, target, item", connection)
        if models is not None:
            frame = frame[frame["model"].isin(models)]
        if targets is not None:
            frame = frame[frame["target"].isin(targets)]
        if parse_logliks:
            frame["logliks"] = frame["logliks"].map(lambda text: json.loads(text) if isinstance(text, str) else None)
        return frame.reset_index(drop=True)

    def matrix(self, rows: list[str], columns: list[str]) -> pd.DataFrame:
        """Scores of these models (rows) on these targets (columns); every cell must be stored."""
        table = self.cells().pivot(index="model", columns="target", values="score")
        missing = [(r, c) for r in rows for c in columns if r not in table.index or c not in table.columns]
        if missing:
            model, target = missing[0]
            raise CrosstaskError(f"the store has no result for {model!r} on {target!r}; run the experiment first")
        matrix = table.loc[rows, columns]
        matrix.index.name, matrix.columns.name = "model", None
        return matrix

    # --- head patterns and their dynamics ---------------------------------------------------------
    def pattern_key(self, model: str, task: str) -> Optional[str]:
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT key FROM patterns WHERE model = ? AND task = ?", (model, task)).fetchone()
        return row[0] if row else None

    def put_pattern(self, model: str, task: str, key: str, pattern: np.ndarray, items: int, mode: str,
                    normalize: Optional[str], seconds: float) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute("INSERT OR REPLACE INTO patterns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               (model, task, key, items, mode, normalize, _npy(pattern), seconds, time.time()))

    def pattern(self, model: str, task: str) -> np.ndarray:
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT pattern FROM patterns WHERE model = ? AND task = ?",
                                     (model, task)).fetchone()
        if row is None:
            raise CrosstaskError(f"the store has no head pattern of {model!r} on {task!r}; run crosstask heads first")
        return np.load(io.BytesIO(row[0]))

    def patterns(self) -> pd.DataFrame:
        """One row per stored pattern (without the arrays)."""
        with closing(self._connect()) as connection:
            return pd.read_sql_query("SELECT model, task, key, items, mode, normalize, seconds, created "
                                     "FROM patterns ORDER BY model, task", connection)

    def dynamics_key(self, source: str, task: str) -> Optional[str]:
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT key FROM dynamics WHERE source = ? AND task = ?",
                                     (source, task)).fetchone()
        return row[0] if row else None

    def put_dynamics(self, source: str, task: str, key: str, curve: pd.DataFrame, snapshots: np.ndarray,
                     seconds: float) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute("INSERT OR REPLACE INTO dynamics VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (source, task, key, curve.to_csv(index=False), _npy(snapshots), seconds, time.time()))

    def dynamics(self) -> list[tuple[str, str, pd.DataFrame, np.ndarray]]:
        """Every stored dynamics: (source, task, curve, snapshots)."""
        with closing(self._connect()) as connection:
            rows = connection.execute("SELECT source, task, curve, snapshots FROM dynamics ORDER BY source, task")
            return [(source, task, pd.read_csv(io.StringIO(curve)), np.load(io.BytesIO(blob)))
                    for source, task, curve, blob in rows.fetchall()]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()

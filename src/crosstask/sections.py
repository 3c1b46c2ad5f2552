"""Report sections: what an analysis hands to the report, and how a run directory records them.

A :class:`Section` is one analysis's reading with its tables and figures. ``crosstask analyze`` records
the sections in ``analysis/sections.json`` together with a digest of the content keys of the cells
they read; the report shows them only while those keys still match, so a rerun with changed settings
marks them stale instead of showing readings of other results.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .files import write_atomically

SECTIONS_FILE = "sections.json"


@dataclass(frozen=True)
class Figure:
    title: str
    caption: str
    path: Path

    @property
    def data_uri(self) -> str:
        """The PNG inlined, so the HTML report opens with nothing beside it."""
        return "data:image/png;base64," + base64.b64encode(self.path.read_bytes()).decode("ascii")


@dataclass
class Section:
    name: str  # the key of ``crosstask analyze --only`` and of the report anchor
    title: str
    reading: str  # one plain-language sentence computed from this run
    tables: list[Path] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    skipped: str = ""  # why the analysis has nothing to say for this run (e.g. no generate targets)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "title": self.title, "reading": self.reading, "skipped": self.skipped,
            "tables": [path.name for path in self.tables],
            "figures": [{"title": f.title, "caption": f.caption, "path": f.path.name} for f in self.figures],
        }

    @classmethod
    def from_dict(cls, data: dict, folder: Path) -> Section:
        return cls(
            name=data["name"], title=data["title"], reading=data["reading"], skipped=data.get("skipped", ""),
            tables=[folder / name for name in data["tables"]],
            figures=[Figure(f["title"], f["caption"], folder / f["path"]) for f in data["figures"]],
        )


def cells_key(cells, models: list[str], targets: list[str]) -> str:
    """A digest of the content keys of the cells (a ``Store.cells()`` frame) of these models and targets."""
    cells = cells[cells["model"].isin(models) & cells["target"].isin(targets)]
    keys = sorted(f"{row.model}/{row.target}/{row.key}" for row in cells.itertuples())
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]


def write_sections(folder: Path, key: str, sections: dict[str, Section]) -> None:
    payload = {"cells_key": key, "sections": [section.to_dict() for section in sections.values()]}
    write_atomically(Path(folder) / SECTIONS_FILE, json.dumps(payload, indent=2))


def read_sections(root: Path, key: str) -> dict[str, Section]:
    """The recorded sections of a run whose cells still have content digest ``key`` (else none: they are stale)."""
    path = Path(root) / "analysis" / SECTIONS_FILE
    if not path.is_file():
        return {}
    payload = json.loads(path.read_text())
    if payload.get("cells_key") != key:
        return {}
    return {entry["name"]: Section.from_dict(entry, path.parent) for entry in payload["sections"]}


def recorded_sections_exist(root: Path) -> bool:
    return (Path(root) / "analysis" / SECTIONS_FILE).is_file()
